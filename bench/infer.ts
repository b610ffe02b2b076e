/**
 * `bench infer`: latency of one action chunk (H=50, A=32, batch 1, 10 Euler steps) for the default
 * transformer head and the mlp head, served by onnxruntime (the exported graph) and by tfjs (the
 * reference sampler), with the parity of the two on the same noise. For the transformer also the
 * ONNX latency of the few-step graphs a distilled (ReFlow) policy runs with: 1 and 2 Euler steps
 * (`fewStep`), against the target of a 1-step p50 <= 0.7 ms on 2 cores, and the same for the
 * transformer as a MeanFlow head (`meanflow`: 1 and 2 average-velocity jumps). The transformer is
 * also timed as its int8 export (`transformer.int8`: `export --quantize int8`, in blocks alternating
 * with the fp32 graph), with the parity of the int8 chunk against the fp32 one on the same noise.
 * The same transformer network is also exported as a prefix-trained head (`train --rtc-max-delay`,
 * `transformer.prefix`: a clean committed prefix in every evaluation) and timed in the same blocks as
 * the plain export, with its p50 against the plain one (`transformer.prefixRatio`) and the two
 * compared at 1 and 10 steps, batch 1 and 32 (`transformer.prefix.cases`).
 * The default export uses onnxruntime's fused contrib kernels (`transformer.ort`); the same head
 * exported with standard operators only (`export --kernels plain`, `transformer.plain`) is timed
 * in the same blocks, each with its ratio to the matmul reference measured in the same run
 * (`referenceRatio`).
 * `--profile` adds onnxruntime's profile of the transformer's chunk, fp32, plain, int8 and prefix, at
 * batch 1 and 32 (`transformer.profile`): kernel time per op type against the wall time, kernels per run
 * and the cost of dispatching one node, so the time per node can be told from the time in matrix
 * products.
 */
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import * as ort from "onnxruntime-node";
import { parseHeadConfig } from "../policy/net/config.ts";
import type { HeadConfig } from "../policy/net/config.ts";
import { buildHead } from "../policy/net/network.ts";
import { headFlops } from "../policy/net/flops.ts";
import { TfjsOps } from "../policy/net/tfjs-ops.ts";
import { saveCheckpoint, normsFor } from "../policy/checkpoint/checkpoint.ts";
import type { NormalizationSpec } from "../policy/checkpoint/checkpoint.ts";
import type { FeatureStats } from "../policy/normalize.ts";
import { denormalize, normalize } from "../policy/normalize.ts";
import { exportOnnx } from "../policy/onnx/export.ts";
import type { ExportResult, QuantizedExportResult } from "../policy/onnx/export.ts";
import { OnnxPolicy } from "../policy/runtime/onnx-policy.ts";
import { sampleChunkTfjs, tidyRead } from "../policy/sampling/tfjs.ts";
import { Rng } from "../policy/random.ts";
import { useBackend } from "../training/backend/registry.ts";
import { median, percentiles } from "../policy/stats/quantiles.ts";
import { decodeModel } from "../policy/onnx/proto.ts";
import { OnnxOps } from "../policy/onnx/ops.ts";
import { benchModel, referenceGflops } from "./reference.ts";
import { benchWeights, stats } from "./weights.ts";
import { benchImagePolicy } from "./image-policy.ts";

export { benchWeights, stats } from "./weights.ts";

const STEPS = 10;
/** Few-step graphs timed for the transformer (ReFlow students run 1 or 2 steps). */
const FEW_STEPS = [1, 2] as const;
/** Batches the transformer's chunk is profiled at (`--profile`). */
const PROFILE_BATCHES = [1, 32] as const;
/** Runs of one graph before the other takes its turn when fp32 and int8 are timed together. */
const INTERLEAVE = 10;
/** Profiled runs per batch (after 3 warmup runs). */
const PROFILE_RUNS = 10;
/** Target speed-up of the int8 export over the fp32 one (p50, same run). */
export const INT8_TARGET_SPEEDUP = 1.5;
/** Target p50 of a 1-step chunk of the default transformer on 2 cores. */
export const ONE_STEP_TARGET_MS = 0.7;
/** Largest prefix of the prefix-trained transformer export (`rtcMaxDelay`); chunks are timed with half of it committed. */
export const PREFIX_DELAY = 10;
/** Target p50 of the prefix-trained export over the plain export of the same network (same run). */
export const PREFIX_TARGET_RATIO = 1.1;
/** Steps and batches the prefix-trained export is compared to the plain one at (`transformer.prefix.cases`). */
const PREFIX_CASES = { steps: [1, STEPS], batches: [1, 32] } as const;

/**
 * Writes the default transformer head, untrained (seeded weights and stats), with one `[stateDim]`
 * state feature as a checkpoint in `dir` and exports it (euler, 10 steps): the policy the serve and
 * loop benches run. Resolves to the export's result (`onnx` is the sample graph's path).
 */
export async function exportDefaultHead(dir: string, stateDim: number): Promise<ExportResult> {
  const config = parseHeadConfig({
    arch: "transformer",
    obs: [{ name: "state", key: "observation.state", shape: [stateDim] }],
  });
  const rng = new Rng(42);
  const normalization: NormalizationSpec = {
    obs: { state: { key: "observation.state", mode: "mean_std", stats: stats(stateDim, rng) } },
    action: { key: "action", mode: "mean_std", stats: stats(config.actionDim, rng) },
  };
  await saveCheckpoint(dir, 0, { config, weights: benchWeights(config, 3), normalization });
  return exportOnnx(dir, { steps: 10, solver: "euler" });
}

/** Measures one head; returns its JSON record. */
async function benchHead(
  arch: "transformer" | "mlp",
  o: {
    runs: number;
    tfjsRuns: number;
    threads: number;
    fewSteps: readonly number[];
    /** Batches to profile the chunk at (`profileChunk`); none: no profile. */
    profileBatches: readonly number[];
    /** Also time the int8 export (`export --quantize int8`) against the fp32 one, interleaved. */
    int8: boolean;
    /** Also time the network exported as a prefix-trained head (`rtcMaxDelay` > 0), interleaved. */
    prefix: boolean;
    /** Also time the plain-operator export (`kernels: "plain"`) against the default fused one, interleaved. */
    plain: boolean;
  },
): Promise<Record<string, unknown>> {
  const config = parseHeadConfig({ arch, obs: [{ name: "state", key: "observation.state", shape: [32] }] });
  const rng = new Rng(42);
  const normalization: NormalizationSpec = {
    obs: { state: { key: "observation.state", mode: "mean_std", stats: stats(32, rng) } },
    action: { key: "action", mode: "mean_std", stats: stats(32, rng) },
  };
  const weights = benchWeights(config, 3);
  const dir = await mkdtemp(join(tmpdir(), `actionflow-bench-${arch}-`));
  try {
    await saveCheckpoint(dir, 0, { config, weights, normalization });
    const exported = await exportOnnx(dir, { steps: STEPS, solver: "euler" });
    const policy = await OnnxPolicy.load(exported.onnx, { threads: o.threads });
    const quantized = o.int8
      ? await exportOnnx(dir, { steps: STEPS, solver: "euler", quantization: "int8" })
      : undefined;
    const int8 = quantized ? await OnnxPolicy.load(quantized.onnx, { threads: o.threads }) : undefined;
    const plainExport = o.plain
      ? await exportOnnx(dir, { steps: STEPS, solver: "euler", kernels: "plain", out: join(dir, "policy.plain.onnx") })
      : undefined;
    const plain = plainExport ? await OnnxPolicy.load(plainExport.onnx, { threads: o.threads }) : undefined;
    // The same network and weights trained with a prefix: its own checkpoint, exported alike.
    const prefixDir = join(dir, "prefix");
    if (o.prefix)
      await saveCheckpoint(prefixDir, 0, { config: { ...config, rtcMaxDelay: PREFIX_DELAY }, weights, normalization });
    const prefixExport = o.prefix ? await exportOnnx(prefixDir, { steps: STEPS, solver: "euler" }) : undefined;
    const prefixPolicy = prefixExport ? await OnnxPolicy.load(prefixExport.onnx, { threads: o.threads }) : undefined;
    const { horizon: H, actionDim: A } = config;
    const state = rng.normalArray(32);
    await policy.warmup({ runs: 5 });
    await int8?.warmup({ runs: 5 });
    await plain?.warmup({ runs: 5 });
    await prefixPolicy?.warmup({ runs: 5 });
    // The prefix export's chunks continue a committed prefix: the first steps of a plain chunk.
    const committed = (await policy.sampleChunk({ "observation.state": state }, { seed: o.runs })).slice(
      0,
      (PREFIX_DELAY / 2) * policy.actionDim,
    );
    const ortMs: number[] = [];
    const int8Ms: number[] = [];
    const plainMs: number[] = [];
    const prefixMs: number[] = [];
    const timed = [
      { p: policy, ms: ortMs, req: {} },
      ...(int8 ? [{ p: int8, ms: int8Ms, req: {} }] : []),
      ...(plain ? [{ p: plain, ms: plainMs, req: {} }] : []),
      ...(prefixPolicy ? [{ p: prefixPolicy, ms: prefixMs, req: { prefix: committed } }] : []),
    ];
    // With several graphs, they alternate in blocks, so a change in the machine's load hits all.
    const block = timed.length > 1 ? INTERLEAVE : o.runs;
    for (let start = 0; start < o.runs; start += block) {
      for (const { p, ms, req } of timed) {
        for (let i = start; i < Math.min(o.runs, start + block); i++) {
          const t0 = performance.now();
          await p.sampleChunk({ "observation.state": state }, { ...req, seed: i });
          ms.push(performance.now() - t0);
        }
      }
    }
    // tfjs reference on the same noise.
    const noise = new Rng(7).normalArray(H * A);
    const ortOut = await policy.sampleChunk({ "observation.state": state }, { noise });
    await policy.release();
    const int8Out = int8 ? await int8.sampleChunk({ "observation.state": state }, { noise }) : undefined;
    await int8?.release();
    const plainOut = plain ? await plain.sampleChunk({ "observation.state": state }, { noise }) : undefined;
    await plain?.release();
    // Without a committed prefix, the prefix export computes what the plain one does.
    const prefixOut = prefixPolicy
      ? await prefixPolicy.sampleChunk({ "observation.state": state }, { noise })
      : undefined;
    await prefixPolicy?.release();
    const head = buildHead(config);
    const ops = new TfjsOps({ seed: 0, weights, mode: "frozen" });
    const norms = normsFor(normalization, config);
    const obsN = normalize(state, norms.obs["state"]!);
    const run = (): Float32Array =>
      tidyRead(() =>
        sampleChunkTfjs(head, ops, { state: tf.tensor(obsN, [1, 32]) }, tf.tensor(noise, [1, H, A]), { steps: STEPS }),
      );
    const tfOut = denormalize(run(), norms.action);
    const tfMs: number[] = [];
    for (let i = 0; i < o.tfjsRuns; i++) {
      const t0 = performance.now();
      run();
      tfMs.push(performance.now() - t0);
    }
    ops.dispose();
    let parity = 0;
    let scale = 0;
    for (let i = 0; i < tfOut.length; i++) {
      parity = Math.max(parity, Math.abs(tfOut[i]! - ortOut[i]!));
      scale = Math.max(scale, Math.abs(tfOut[i]!));
    }
    const ort = percentiles(ortMs);
    // The same head at few steps: its own graph, the same warmup and observation.
    const fewStep: Record<string, ReturnType<typeof percentiles> & { nfe: number }> = {};
    for (const steps of o.fewSteps) {
      const few = await exportOnnx(dir, { steps, solver: "euler", out: join(dir, `policy-${steps}.onnx`) });
      fewStep[String(steps)] = { ...(await chunkLatency(few.onnx, state, o)), nfe: few.nfe };
    }
    const profile: Record<string, Record<string, ChunkProfile>> = {};
    const dispatchUsPerNode = o.profileBatches.length > 0 ? await nodeDispatchUs({ threads: o.threads }) : Number.NaN;
    const profiled = [
      ["fp32", exported.onnx],
      ...(plainExport ? [["plain", plainExport.onnx]] : []),
      ...(quantized ? [["int8", quantized.onnx]] : []),
      ...(prefixExport ? [["prefix", prefixExport.onnx]] : []),
    ];
    for (const [name, onnx] of profiled) {
      const byBatch: Record<string, ChunkProfile> = {};
      for (const batch of o.profileBatches)
        byBatch[`batch${batch}`] = await profileChunk(onnx!, {
          batch,
          runs: PROFILE_RUNS,
          threads: o.threads,
          dispatchUsPerNode,
        });
      profile[name!] = byBatch;
    }
    const flops = headFlops(head, 1, { time: "constant" });
    const chunkFlops = flops.encode + STEPS * flops.velocity;
    return {
      ort,
      kernels: exported.kernels,
      tfjs: percentiles(tfMs),
      speedup: percentiles(tfMs).p50Ms / ort.p50Ms,
      gflops: chunkFlops / (ort.p50Ms / 1000) / 1e9,
      gflopPerChunk: chunkFlops / 1e9,
      parityMaxAbs: parity,
      outputMaxAbs: scale,
      onnxBytes: exported.bytes,
      ...(plainOut && plainExport
        ? {
            plain: {
              ...percentiles(plainMs),
              kernels: plainExport.kernels,
              gflops: chunkFlops / (percentiles(plainMs).p50Ms / 1000) / 1e9,
              // The plain export against the tfjs reference, and against the fused one, on the same noise.
              parityMaxAbs: maxAbs(tfOut, plainOut),
              fusedParityMaxAbs: maxAbs(ortOut, plainOut),
              onnxBytes: plainExport.bytes,
              // p50 of the fused export over the plain one, timed in the same blocks.
              fusedRatio: ort.p50Ms / percentiles(plainMs).p50Ms,
            },
          }
        : {}),
      ...(o.fewSteps.length > 0 ? { fewStep } : {}),
      ...(int8Out && quantized ? { int8: int8Record(int8Ms, ort, ortOut, int8Out, quantized) } : {}),
      ...(prefixOut && prefixExport
        ? {
            prefix: {
              ...percentiles(prefixMs),
              ratio: percentiles(prefixMs).p50Ms / ort.p50Ms,
              targetRatio: PREFIX_TARGET_RATIO,
              meetsTarget: percentiles(prefixMs).p50Ms / ort.p50Ms <= PREFIX_TARGET_RATIO,
              rtcMaxDelay: PREFIX_DELAY,
              committedSteps: PREFIX_DELAY / 2,
              // Both exports on the same noise, no committed prefix: the same chunk.
              parityMaxAbs: maxAbs(ortOut, prefixOut),
              onnxBytes: prefixExport.bytes,
              cases: await prefixCases(dir, prefixDir, o),
            },
            prefixRatio: percentiles(prefixMs).p50Ms / ort.p50Ms,
          }
        : {}),
      ...(o.profileBatches.length > 0 ? { profile } : {}),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Max |a - b| over two equally long arrays. */
function maxAbs(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** One case of `prefixCases`: both exports' p50 and their ratio. */
export interface PrefixCase {
  steps: number;
  batch: number;
  runs: number;
  plainP50Ms: number;
  prefixP50Ms: number;
  /** `prefixP50Ms / plainP50Ms`, the two timed in alternating blocks. */
  ratio: number;
}

/**
 * The prefix-trained export (checkpoint `prefixDir`) against the plain one (`plainDir`) of the same
 * network at each of `PREFIX_CASES`' steps and batches: one session each (intra-op `threads`), the
 * same seeded feeds (a committed prefix of `PREFIX_DELAY / 2` steps), runs alternating in blocks
 * of `INTERLEAVE`; `runs` chunks at batch 1, a tenth (at least 10) at larger batches.
 */
async function prefixCases(
  plainDir: string,
  prefixDir: string,
  o: { runs: number; threads: number },
): Promise<Record<string, PrefixCase>> {
  const out: Record<string, PrefixCase> = {};
  for (const steps of PREFIX_CASES.steps) {
    const sessions: ort.InferenceSession[] = [];
    try {
      for (const d of [plainDir, prefixDir]) {
        const e = await exportOnnx(d, { steps, solver: "euler", out: join(d, `policy-case-${steps}.onnx`) });
        sessions.push(
          await ort.InferenceSession.create(e.onnx, {
            graphOptimizationLevel: "all",
            logSeverityLevel: 3,
            intraOpNumThreads: o.threads,
            interOpNumThreads: 1,
          }),
        );
      }
      for (const batch of PREFIX_CASES.batches) {
        const feeds = feedsFor(sessions[0]!, batch, new Rng(13));
        feeds["prefix_len"] = new ort.Tensor("int64", new BigInt64Array(batch).fill(BigInt(PREFIX_DELAY / 2)), [batch]);
        const runs = batch === 1 ? o.runs : Math.max(10, Math.round(o.runs / 10));
        const ms: number[][] = [[], []];
        for (const s of sessions) for (let i = 0; i < 3; i++) await s.run(feeds);
        for (let start = 0; start < runs; start += INTERLEAVE)
          for (const [k, s] of sessions.entries())
            for (let i = start; i < Math.min(runs, start + INTERLEAVE); i++) {
              const t0 = performance.now();
              await s.run(feeds);
              ms[k]!.push(performance.now() - t0);
            }
        const plainP50Ms = median(ms[0]!);
        const prefixP50Ms = median(ms[1]!);
        out[`steps${steps}.batch${batch}`] = {
          steps,
          batch,
          runs,
          plainP50Ms,
          prefixP50Ms,
          ratio: prefixP50Ms / plainP50Ms,
        };
      }
    } finally {
      for (const s of sessions) await s.release();
    }
  }
  return out;
}

/**
 * The int8 record of the transformer: its latency, its speed-up over the fp32 graph timed in the
 * same blocks, and the parity of its chunk with the fp32 chunk on the same noise and observation.
 */
function int8Record(
  int8Ms: readonly number[],
  ort: ReturnType<typeof percentiles>,
  fp32Out: Float32Array,
  int8Out: Float32Array,
  q: QuantizedExportResult,
): Record<string, unknown> {
  const p = percentiles(int8Ms);
  let maxAbs = 0;
  let se = 0;
  for (let i = 0; i < fp32Out.length; i++) {
    const d = fp32Out[i]! - int8Out[i]!;
    maxAbs = Math.max(maxAbs, Math.abs(d));
    se += d * d;
  }
  return {
    ...p,
    speedup: ort.p50Ms / p.p50Ms,
    targetSpeedup: INT8_TARGET_SPEEDUP,
    meetsTarget: ort.p50Ms / p.p50Ms >= INT8_TARGET_SPEEDUP,
    parityMaxAbs: maxAbs,
    parityMse: se / fp32Out.length,
    onnxBytes: q.bytes,
    matmuls: q.quantized.matmuls,
    weights: q.quantized.weights,
  };
}

/** Latency percentiles of `runs` seeded chunks of one exported policy (after 5 warmup runs), batch 1. */
async function chunkLatency(
  onnx: string,
  state: Float32Array,
  o: { runs: number; threads: number },
): Promise<ReturnType<typeof percentiles>> {
  const p = await OnnxPolicy.load(onnx, { threads: o.threads });
  try {
    await p.warmup({ runs: 5 });
    const ms: number[] = [];
    for (let i = 0; i < o.runs; i++) {
      const t0 = performance.now();
      await p.sampleChunk({ "observation.state": state }, { seed: i });
      ms.push(performance.now() - t0);
    }
    return percentiles(ms);
  } finally {
    await p.release();
  }
}

/**
 * ONNX latency of a MeanFlow head (default transformer sizes, `--objective meanflow`) at `steps`
 * average-velocity jumps each: the few-step graphs such a policy is exported with.
 */
async function benchMeanflow(o: {
  runs: number;
  threads: number;
  steps: readonly number[];
}): Promise<Record<string, ReturnType<typeof percentiles> & { nfe: number }>> {
  const config = parseHeadConfig({
    objective: "meanflow",
    obs: [{ name: "state", key: "observation.state", shape: [32] }],
  });
  const rng = new Rng(43);
  const normalization: NormalizationSpec = {
    obs: { state: { key: "observation.state", mode: "mean_std", stats: stats(32, rng) } },
    action: { key: "action", mode: "mean_std", stats: stats(32, rng) },
  };
  const dir = await mkdtemp(join(tmpdir(), "actionflow-bench-meanflow-"));
  try {
    await saveCheckpoint(dir, 0, { config, weights: benchWeights(config, 3), normalization });
    const state = rng.normalArray(32);
    const out: Record<string, ReturnType<typeof percentiles> & { nfe: number }> = {};
    for (const steps of o.steps) {
      const exported = await exportOnnx(dir, { steps, out: join(dir, `policy-${steps}.onnx`) });
      out[String(steps)] = { ...(await chunkLatency(exported.onnx, state, o)), nfe: exported.nfe };
    }
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Runs the inference benchmark for both heads, the transformer also as its plain-operator export
 * (`transformer.plain`), its int8 export (`transformer.int8`) and as a prefix-trained export
 * (`transformer.prefix`, `transformer.prefixRatio`); with `profile`, also the onnxruntime profile of
 * the transformer's 10-step chunk, fp32, plain, int8 and prefix, at batch 1 and 32
 * (`transformer.profile.fp32|plain|int8|prefix.batch1|batch32`).
 */
export async function benchInfer(o: {
  runs: number;
  tfjsRuns: number;
  threads: number;
  profile?: boolean;
}): Promise<Record<string, unknown>> {
  const backend = await useBackend("wasm");
  const transformer = await benchHead("transformer", {
    ...o,
    fewSteps: FEW_STEPS,
    profileBatches: o.profile ? PROFILE_BATCHES : [],
    int8: true,
    prefix: true,
    plain: true,
  });
  const mlp = await benchHead("mlp", {
    ...o,
    fewSteps: [],
    profileBatches: [],
    int8: false,
    prefix: false,
    plain: false,
  });
  const meanflow = await benchMeanflow({ ...o, steps: FEW_STEPS });
  const fewStep = transformer["fewStep"] as Record<string, { p50Ms: number }>;
  const oneStepP50 = fewStep["1"]!.p50Ms;
  const reference = await referenceGflops();
  // The share of the matmul reference a chunk reaches (GFLOP/s over the reference's, same run).
  const withRatio = (r: Record<string, unknown>): Record<string, unknown> => ({
    ...r,
    referenceGflops: reference,
    referenceRatio: (r["gflops"] as number) / reference,
  });
  const plainRecord = transformer["plain"] as Record<string, unknown> | undefined;
  return {
    transformer: { ...withRatio(transformer), ...(plainRecord ? { plain: withRatio(plainRecord) } : {}) },
    mlp: withRatio(mlp),
    // The default transformer as a MeanFlow head (`--objective meanflow`), by steps (1 and 2 jumps).
    meanflow,
    // The default transformer with one 96x96 camera and its image encoder (bench/image-policy.ts).
    image: await benchImagePolicy(o),
    referenceGflops: reference,
    horizon: 50,
    actionDim: 32,
    batch: 1,
    steps: STEPS,
    oneStep: { p50Ms: oneStepP50, targetMs: ONE_STEP_TARGET_MS, meetsTarget: oneStepP50 <= ONE_STEP_TARGET_MS },
    threads: o.threads,
    tfjsBackend: backend,
  };
}

/** Time of one onnxruntime op type in a profiled chunk, per run. */
export interface OpTime {
  op: string;
  /** Kernel time of all nodes of this type, ms per run. */
  ms: number;
  /** Nodes of this type run per chunk. */
  kernels: number;
  /** Share of the kernel time per run. */
  share: number;
}

/** Where the time of one chunk goes, from onnxruntime's profiler (`profileChunk`). */
export interface ChunkProfile {
  batch: number;
  /** Profiled runs averaged (after the warmup runs). */
  runs: number;
  /** Nodes in the ONNX file. */
  graphNodes: number;
  /** Kernels onnxruntime runs per chunk, after its own graph optimisations (fusions). */
  kernelsPerRun: number;
  /** p50 wall time of `session.run` without the profiler (same session options), ms. */
  wallP50Ms: number;
  /** Mean `model_run` time under the profiler (which adds its own per-node cost), ms. */
  profiledRunMs: number;
  /**
   * Mean summed kernel time per run under the profiler, ms. The profiler adds its own cost to every
   * kernel it times, so on a busy machine this can exceed `wallP50Ms`: read the shares, not the sum.
   */
  kernelMs: number;
  /**
   * onnxruntime's cost of dispatching one node that does (almost) nothing, us: measured on a chain
   * of 1000 Add nodes on `[1, 64]` (`nodeDispatchUs`), unprofiled.
   */
  dispatchUsPerNode: number;
  /** `kernelsPerRun * dispatchUsPerNode`: the part of a chunk that is pure per-node dispatch, ms. */
  dispatchMs: number;
  /** Share of the kernel time spent in matrix products (MatMul, Gemm, FusedMatMul and the int8 forms). */
  matmulShare: number;
  /** Median kernel time, us. */
  medianKernelUs: number;
  /** Kernels of at most 5 us (the time of a node that does almost nothing) and their ms per run. */
  tinyKernels: { kernels: number; ms: number };
  /** Op types by kernel time per run, slowest first (the first `top`). */
  topOps: OpTime[];
}

/** onnxruntime op types (after its fusions) that are matrix products, fp32 or int8. */
const MATMUL_OPS = new Set([
  "MatMul",
  "Gemm",
  "FusedMatMul",
  "FusedGemm",
  "MatMulInteger",
  "MatMulIntegerToFloat",
  "DynamicQuantizeMatMul",
  "QGemm",
]);

type TraceEvent = { cat?: unknown; name?: unknown; ts?: unknown; dur?: unknown; args?: { op_name?: unknown } };

/**
 * Sums an onnxruntime profile (its Chrome-trace JSON array) over the `model_run` events after the
 * first `skipRuns`: kernel time per op type and per run. `source` names the file in errors.
 */
export function summarizeChunkProfile(
  events: unknown,
  o: { skipRuns: number; top: number; source: string },
): Omit<ChunkProfile, "batch" | "graphNodes" | "wallP50Ms" | "dispatchUsPerNode" | "dispatchMs"> {
  if (!Array.isArray(events)) throw new TypeError(`${o.source}: expected a JSON array of trace events`);
  const evs = events as TraceEvent[];
  const num = (x: unknown): number => (typeof x === "number" && Number.isFinite(x) ? x : Number.NaN);
  const runs = evs
    .filter((e) => e.cat === "Session" && e.name === "model_run")
    .map((e) => ({ from: num(e.ts), to: num(e.ts) + num(e.dur), dur: num(e.dur) }))
    .filter((r) => Number.isFinite(r.to))
    .sort((a, b) => a.from - b.from)
    .slice(o.skipRuns);
  if (runs.length === 0)
    throw new Error(`${o.source}: no model_run event after the first ${o.skipRuns} (the profile has no timed run)`);
  const byOp = new Map<string, { us: number; kernels: number }>();
  const durs: number[] = [];
  for (const e of evs) {
    if (e.cat !== "Node" || typeof e.name !== "string" || !e.name.endsWith("_kernel_time")) continue;
    const ts = num(e.ts);
    const dur = num(e.dur);
    if (!Number.isFinite(dur) || !runs.some((r) => ts >= r.from && ts <= r.to)) continue;
    const op = typeof e.args?.op_name === "string" ? e.args.op_name : "?";
    const k = byOp.get(op) ?? { us: 0, kernels: 0 };
    k.us += dur;
    k.kernels++;
    byOp.set(op, k);
    durs.push(dur);
  }
  const n = runs.length;
  const kernelUs = durs.reduce((a, b) => a + b, 0) / n;
  const tiny = durs.filter((d) => d <= 5);
  const matmulUs = [...byOp].filter(([op]) => MATMUL_OPS.has(op)).reduce((a, [, k]) => a + k.us, 0) / n;
  return {
    runs: n,
    kernelsPerRun: durs.length / n,
    profiledRunMs: runs.reduce((a, r) => a + r.dur, 0) / n / 1000,
    kernelMs: kernelUs / 1000,
    medianKernelUs: durs.length > 0 ? median(durs) : Number.NaN,
    tinyKernels: { kernels: tiny.length / n, ms: tiny.reduce((a, b) => a + b, 0) / n / 1000 },
    matmulShare: kernelUs > 0 ? matmulUs / kernelUs : Number.NaN,
    topOps: [...byOp]
      .sort((a, b) => b[1].us - a[1].us)
      .slice(0, o.top)
      .map(([op, k]) => ({ op, ms: k.us / n / 1000, kernels: k.kernels / n, share: k.us / n / kernelUs })),
  };
}

/** Seeded feeds for every input of a session at `batch` (float inputs normal, int64 inputs 0). */
function feedsFor(session: ort.InferenceSession, batch: number, rng: Rng): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const m of session.inputMetadata) {
    if (!m.isTensor) throw new Error(`input '${m.name}' is not a tensor`);
    const dims = m.shape.map((d) => (typeof d === "number" ? d : batch));
    const n = dims.reduce((a, b) => a * b, 1);
    if (m.type === "float32") feeds[m.name] = new ort.Tensor("float32", rng.normalArray(n), dims);
    else if (m.type === "int64") feeds[m.name] = new ort.Tensor("int64", new BigInt64Array(n), dims);
    else throw new Error(`input '${m.name}' has type ${m.type}; the profile feeds float32 and int64 only`);
  }
  return feeds;
}

/**
 * Profiles one exported sample graph at `batch` with onnxruntime's profiler (`enableProfiling`):
 * kernel time per op type and per run against the unprofiled wall time of the same graph and
 * session options (intra-op `threads`, all graph optimisations), so the per-node overhead shows.
 */
export async function profileChunk(
  onnx: string,
  o: { batch: number; runs: number; threads: number; dispatchUsPerNode: number; top?: number },
): Promise<ChunkProfile> {
  const bytes = new Uint8Array(await readFile(onnx));
  const graphNodes = decodeModel(bytes, onnx).graph.node.length;
  const options: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: "all",
    logSeverityLevel: 3,
    intraOpNumThreads: o.threads,
    interOpNumThreads: 1,
  };
  const warm = 3;
  const plain = await ort.InferenceSession.create(bytes, options);
  const wall: number[] = [];
  try {
    const feeds = feedsFor(plain, o.batch, new Rng(11));
    for (let i = 0; i < warm; i++) await plain.run(feeds);
    for (let i = 0; i < o.runs; i++) {
      const t0 = performance.now();
      await plain.run(feeds);
      wall.push(performance.now() - t0);
    }
  } finally {
    await plain.release();
  }
  const dir = await mkdtemp(join(tmpdir(), "actionflow-infer-profile-"));
  try {
    const profiled = await ort.InferenceSession.create(bytes, {
      ...options,
      enableProfiling: true,
      profileFilePrefix: join(dir, "chunk"),
    });
    try {
      const feeds = feedsFor(profiled, o.batch, new Rng(11));
      for (let i = 0; i < warm + o.runs; i++) await profiled.run(feeds);
      profiled.endProfiling();
    } finally {
      await profiled.release();
    }
    const file = (await readdir(dir)).find((f) => f.endsWith(".json"));
    if (!file) throw new Error(`onnxruntime wrote no profile into ${dir}`);
    const path = join(dir, file);
    const summary = summarizeChunkProfile(JSON.parse(await readFile(path, "utf8")), {
      skipRuns: warm,
      top: o.top ?? 8,
      source: path,
    });
    return {
      batch: o.batch,
      graphNodes,
      wallP50Ms: median(wall),
      dispatchUsPerNode: o.dispatchUsPerNode,
      dispatchMs: (summary.kernelsPerRun * o.dispatchUsPerNode) / 1000,
      ...summary,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * onnxruntime's cost per node of a node that does almost nothing, us: the p50 time of a chain of
 * `nodes` Add nodes on `[1, 64]` minus that of one Add, over `nodes - 1` (same session options as
 * the policy: all graph optimisations, intra-op `threads`).
 */
export async function nodeDispatchUs(o: { threads: number; nodes?: number; runs?: number }): Promise<number> {
  const chainP50 = async (n: number): Promise<number> => {
    const ops = new OnnxOps({});
    let x = ops.input("x", [1, 64]);
    const c = ops.constant(new Float32Array(64).fill(0.5), [64]);
    for (let i = 0; i < n; i++) x = ops.add(x, c);
    ops.output(x, "y");
    const bytes = benchModel(ops, "chain");
    const session = await ort.InferenceSession.create(bytes, {
      graphOptimizationLevel: "all",
      logSeverityLevel: 3,
      intraOpNumThreads: o.threads,
      interOpNumThreads: 1,
    });
    try {
      const feeds = { x: new ort.Tensor("float32", new Float32Array(64), [1, 64]) };
      for (let i = 0; i < 10; i++) await session.run(feeds);
      const ms: number[] = [];
      for (let i = 0; i < (o.runs ?? 50); i++) {
        const t0 = performance.now();
        await session.run(feeds);
        ms.push(performance.now() - t0);
      }
      return median(ms);
    } finally {
      await session.release();
    }
  };
  const nodes = o.nodes ?? 1001;
  const one = await chainP50(1);
  const many = await chainP50(nodes);
  return ((many - one) * 1000) / (nodes - 1);
}
