/**
 * `bench infer`: latency of one action chunk (H=50, A=32, batch 1, 10 Euler steps) for the default
 * transformer head and the mlp head, served by onnxruntime (the exported graph) and by tfjs (the
 * reference sampler), with the parity of the two on the same noise. For the transformer also the
 * ONNX latency of the few-step graphs a distilled (ReFlow) policy runs with: 1 and 2 Euler steps
 * (`fewStep`), against the target of a 1-step p50 <= 1.5 ms on 2 cores, and the same for the
 * transformer as a MeanFlow head (`meanflow`: 1 and 2 average-velocity jumps).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
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
import type { ExportResult } from "../policy/onnx/export.ts";
import { OnnxPolicy } from "../policy/runtime/onnx-policy.ts";
import { sampleChunkTfjs, tidyRead } from "../policy/sampling/tfjs.ts";
import { Rng } from "../policy/random.ts";
import { useBackend } from "../training/backend/registry.ts";
import { percentiles } from "../policy/stats/quantiles.ts";
import { referenceGflops } from "./reference.ts";

const STEPS = 10;
/** Few-step graphs timed for the transformer (ReFlow students run 1 or 2 steps). */
const FEW_STEPS = [1, 2] as const;
/** Target p50 of a 1-step chunk of the default transformer on 2 cores. */
export const ONE_STEP_TARGET_MS = 1.5;

/** Random feature statistics of `dim` dims (means ~N(0, 0.25), spreads 0.2..1.2). */
export function stats(dim: number, rng: Rng): FeatureStats {
  const mean = Array.from({ length: dim }, () => rng.normal() * 0.5);
  const std = Array.from({ length: dim }, () => 0.2 + rng.uniform());
  return { mean, std, min: mean.map((m, i) => m - 3 * std[i]!), max: mean.map((m, i) => m + 3 * std[i]!), count: 1000 };
}

/**
 * Initial weights of `config` with the zero-initialised layers (adaLN gates, output) perturbed, so
 * every layer contributes as in a trained model and parity is measured on a non-trivial output.
 */
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

export function benchWeights(config: HeadConfig, seed: number): Map<string, { shape: number[]; data: Float32Array }> {
  const head = buildHead(config);
  const ops = new TfjsOps({ seed, mode: "frozen" });
  tf.tidy(() => {
    const obs = Object.fromEntries(config.obs.map((f) => [f.name, tf.zeros([1, ...f.shape])]));
    head.velocity(
      ops,
      head.encode(ops, obs),
      tf.zeros([1, config.horizon, config.actionDim]),
      tf.zeros([1, config.horizon]),
    );
  });
  const w = ops.snapshot();
  ops.dispose();
  const rng = new Rng(seed + 1);
  for (const a of w.values())
    if (a.data.every((x) => x === 0)) for (let i = 0; i < a.data.length; i++) a.data[i] = 0.02 * rng.normal();
  return w;
}

/** Measures one head; returns its JSON record. */
async function benchHead(
  arch: "transformer" | "mlp",
  o: { runs: number; tfjsRuns: number; threads: number; fewSteps: readonly number[] },
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
    const { horizon: H, actionDim: A } = config;
    const state = rng.normalArray(32);
    await policy.warmup({ runs: 5 });
    const ortMs: number[] = [];
    for (let i = 0; i < o.runs; i++) {
      const t0 = performance.now();
      await policy.sampleChunk({ "observation.state": state }, { seed: i });
      ortMs.push(performance.now() - t0);
    }
    // tfjs reference on the same noise.
    const noise = new Rng(7).normalArray(H * A);
    const ortOut = await policy.sampleChunk({ "observation.state": state }, { noise });
    await policy.release();
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
    const flops = headFlops(head, 1, { time: "constant" });
    const chunkFlops = flops.encode + STEPS * flops.velocity;
    return {
      ort,
      tfjs: percentiles(tfMs),
      speedup: percentiles(tfMs).p50Ms / ort.p50Ms,
      gflops: chunkFlops / (ort.p50Ms / 1000) / 1e9,
      gflopPerChunk: chunkFlops / 1e9,
      parityMaxAbs: parity,
      outputMaxAbs: scale,
      onnxBytes: exported.bytes,
      ...(o.fewSteps.length > 0 ? { fewStep } : {}),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
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

/** Runs the inference benchmark for both heads. */
export async function benchInfer(o: {
  runs: number;
  tfjsRuns: number;
  threads: number;
}): Promise<Record<string, unknown>> {
  const backend = await useBackend("wasm");
  const transformer = await benchHead("transformer", { ...o, fewSteps: FEW_STEPS });
  const mlp = await benchHead("mlp", { ...o, fewSteps: [] });
  const meanflow = await benchMeanflow({ ...o, steps: FEW_STEPS });
  const fewStep = transformer["fewStep"] as Record<string, { p50Ms: number }>;
  const oneStepP50 = fewStep["1"]!.p50Ms;
  const reference = await referenceGflops();
  return {
    transformer: { ...transformer, referenceGflops: reference },
    mlp: { ...mlp, referenceGflops: reference },
    // The default transformer as a MeanFlow head (`--objective meanflow`), by steps (1 and 2 jumps).
    meanflow,
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
