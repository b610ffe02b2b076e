/**
 * `bench train`: training throughput of the default transformer head (H=50, A=32) on the chosen
 * tfjs backend, as samples/s and model GFLOP/s (3x the forward matMul FLOPs), against the
 * reference fp32 matMul throughput of onnxruntime measured in the same run. Gradients are computed
 * by `workers` threads (data parallel, `training/parallel/`). `--backend ort` measures the same
 * step through the onnxruntime training graph instead (`training/ort/`, `benchTrainOrt`).
 */
import * as tf from "@tensorflow/tfjs";
import { parseHeadConfig } from "../policy/net/config.ts";
import { buildHead } from "../policy/net/network.ts";
import { headFlops } from "../policy/net/flops.ts";
import { Rng } from "../policy/random.ts";
import type { BackendName, TrainBackendName } from "../training/backend/registry.ts";
import { useBackend } from "../training/backend/registry.ts";
import { Trainer, defaultWorkers } from "../training/trainer.ts";
import type { Batch } from "../training/batch.ts";
import { median } from "../policy/stats/quantiles.ts";
import { referenceGflops } from "./reference.ts";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OrtTrainer } from "../training/ort/trainer.ts";
import { lossDenominator } from "../training/loss.ts";
import { stepRng } from "../training/trainer.ts";

/** Options of `benchTrain`. */
export interface BenchTrainOptions {
  arch: "transformer" | "mlp";
  batch: number;
  steps: number;
  /** A tfjs backend, or `ort`: the onnxruntime training graph (`training/ort/`). */
  backend: BackendName | "ort";
  /** Gradient threads (see `TrainerOptions.workers`); default `defaultWorkers(head, batch)`. */
  workers?: number;
  /** Also time every kernel of one single-thread step on this thread (`profile` in the record). */
  profile?: boolean;
}

/** Time and calls per kernel of one step (see {@link profileStep}). */
export interface StepProfile {
  /** Wall time of the profiled step, ms. */
  stepMs: number;
  /** Wall time inside kernels, ms (the rest is JS: batch building, tape, optimizer bookkeeping). */
  kernelMs: number;
  /** Per kernel name: total ms and calls, slowest first. */
  kernels: Record<string, { ms: number; calls: number }>;
}

/**
 * Runs one `trainStep` of a single-thread trainer with every kernel call timed, by wrapping the tfjs
 * engine's `runKernel` for that step (each call's time includes the engine's own per-call work:
 * tape recording, tensor tracking). A diagnostic: says where a step's time goes.
 */
export function profileStep(trainer: Trainer, batch: Batch): StepProfile {
  const engine = tf.engine() as unknown as { runKernel: (name: string, inputs: unknown, attrs: unknown) => unknown };
  const original = engine.runKernel;
  const kernels = new Map<string, { ms: number; calls: number }>();
  engine.runKernel = function (this: unknown, name: string, inputs: unknown, attrs: unknown): unknown {
    const t0 = performance.now();
    try {
      return original.call(this, name, inputs, attrs);
    } finally {
      const k = kernels.get(name) ?? { ms: 0, calls: 0 };
      k.ms += performance.now() - t0;
      k.calls++;
      kernels.set(name, k);
    }
  };
  const t0 = performance.now();
  try {
    trainer.trainStep(batch);
  } finally {
    engine.runKernel = original;
  }
  const stepMs = performance.now() - t0;
  const sorted = [...kernels].sort((a, b) => b[1].ms - a[1].ms);
  return { stepMs, kernelMs: sorted.reduce((a, [, k]) => a + k.ms, 0), kernels: Object.fromEntries(sorted) };
}

/** Runs the training benchmark; returns the JSON record. */
export async function benchTrain(o: BenchTrainOptions): Promise<Record<string, unknown>> {
  if (o.backend === "ort") return benchTrainOrt({ ...o, backend: "ort" });
  const backend = await useBackend(o.backend);
  const config = parseHeadConfig({ arch: o.arch, obs: [{ name: "state", key: "observation.state", shape: [32] }] });
  const head = buildHead(config);
  const workers = o.workers ?? defaultWorkers(head, o.batch);
  const trainer = new Trainer({ head, seed: 0, workers });
  const { horizon: H, actionDim: A } = config;
  const rng = new Rng(0);
  const batch: Batch = {
    size: o.batch,
    obs: { state: rng.normalArray(o.batch * 32) },
    actions: rng.normalArray(o.batch * H * A),
    isPad: new Uint8Array(o.batch * H),
  };
  for (let i = 0; i < 2; i++) await trainer.trainStepAsync(batch);
  const times: number[] = [];
  for (let i = 0; i < o.steps; i++) {
    const t0 = performance.now();
    await trainer.trainStepAsync(batch);
    times.push(performance.now() - t0);
  }
  const stepS = median(times) / 1000;
  const flops = headFlops(head, o.batch);
  const trainFlops = 3 * (flops.encode + flops.velocity);
  const trainGflops = trainFlops / stepS / 1e9;
  const parameters = trainer.parameterCount();
  trainer.dispose();
  let profile: StepProfile | undefined;
  if (o.profile) {
    const single = new Trainer({ head, seed: 0, workers: 1 });
    try {
      single.trainStep(batch);
      profile = profileStep(single, batch);
    } finally {
      single.dispose();
    }
  }
  const reference = await referenceGflops();
  return {
    samplesPerSec: o.batch / stepS,
    stepMs: stepS * 1000,
    trainGflops,
    referenceGflops: reference,
    ratio: trainGflops / reference,
    backend,
    workers,
    arch: o.arch,
    batch: o.batch,
    horizon: H,
    actionDim: A,
    parameters,
    gflopPerStep: trainFlops / 1e9,
    ...(profile ? { profile } : {}),
  };
}

/** Per onnxruntime op type: total ms and node runs in one profiled step, slowest first. */
export interface OrtStepProfile {
  /** Wall time of the profiled session run, ms. */
  runMs: number;
  /** Time inside node kernels, ms. */
  kernelMs: number;
  ops: Record<string, { ms: number; calls: number }>;
}

/** Sums an onnxruntime profile (Chrome trace JSON) by op type, for the last `session.run` in it. */
export function summarizeOrtProfile(events: unknown): OrtStepProfile {
  if (!Array.isArray(events)) throw new TypeError("onnxruntime profile: expected a JSON array of trace events");
  type Ev = { cat?: string; name?: string; dur?: number; ts?: number; args?: { op_name?: string } };
  const evs = events as Ev[];
  const runs = evs.filter((e) => e.cat === "Session" && e.name === "model_run");
  const last = runs[runs.length - 1];
  if (!last || last.ts === undefined || last.dur === undefined)
    throw new Error("onnxruntime profile: no model_run event");
  const from = last.ts;
  const to = last.ts + last.dur;
  const ops = new Map<string, { ms: number; calls: number }>();
  for (const e of evs) {
    if (e.cat !== "Node" || !e.name?.endsWith("_kernel_time") || e.ts === undefined || e.ts < from || e.ts > to)
      continue;
    const op = e.args?.op_name ?? "?";
    const k = ops.get(op) ?? { ms: 0, calls: 0 };
    k.ms += (e.dur ?? 0) / 1000;
    k.calls++;
    ops.set(op, k);
  }
  const sorted = [...ops].sort((a, b) => b[1].ms - a[1].ms);
  return {
    runMs: last.dur / 1000,
    kernelMs: sorted.reduce((a, [, k]) => a + k.ms, 0),
    ops: Object.fromEntries(sorted.map(([k, v]) => [k, { ms: +v.ms.toFixed(3), calls: v.calls }])),
  };
}

/**
 * `bench train --backend ort`: the same measurement through the onnxruntime training graph and the
 * Float32Array AdamW (`OrtTrainer`, all cores unless `workers` gives the intra-op threads). Also
 * reports the onnxruntime training graph's run alone (`gradMs`) so the optimizer and feed overhead shows, and with
 * `profile` the per-op time of one step from onnxruntime's profiler.
 */
export async function benchTrainOrt(o: BenchTrainOptions & { backend: "ort" }): Promise<Record<string, unknown>> {
  const config = parseHeadConfig({ arch: o.arch, obs: [{ name: "state", key: "observation.state", shape: [32] }] });
  const head = buildHead(config);
  const { horizon: H, actionDim: A } = config;
  const rng = new Rng(0);
  const batch: Batch = {
    size: o.batch,
    obs: { state: rng.normalArray(o.batch * 32) },
    actions: rng.normalArray(o.batch * H * A),
    isPad: new Uint8Array(o.batch * H),
  };
  const trainer = await OrtTrainer.create({ head, seed: 0, ...(o.workers ? { threads: o.workers } : {}) });
  const times: number[] = [];
  const gradTimes: number[] = [];
  let parameters: number;
  try {
    for (let i = 0; i < 2; i++) await trainer.trainStep(batch);
    for (let i = 0; i < o.steps; i++) {
      const t0 = performance.now();
      await trainer.trainStep(batch);
      times.push(performance.now() - t0);
    }
    const inputs = { size: batch.size, obs: batch.obs, ...trainer.prepare(batch, stepRng(0, 0)) };
    const den = lossDenominator(inputs.isPad, A);
    for (let i = 0; i < o.steps; i++) {
      const t0 = performance.now();
      await trainer.lossAndGradients(inputs, den);
      gradTimes.push(performance.now() - t0);
    }
    parameters = trainer.parameterCount();
  } finally {
    await trainer.release();
  }
  const stepS = median(times) / 1000;
  let profile: OrtStepProfile | undefined;
  if (o.profile) {
    const dir = mkdtempSync(join(tmpdir(), "actionflow-ort-profile-"));
    const prof = await OrtTrainer.create({
      head,
      seed: 0,
      profileFilePrefix: join(dir, "train"),
      ...(o.workers ? { threads: o.workers } : {}),
    });
    try {
      for (let i = 0; i < 3; i++) await prof.trainStep(batch);
      prof.endProfiling();
      const file = readdirSync(dir).find((f) => f.endsWith(".json"));
      if (!file) throw new Error(`onnxruntime wrote no profile into ${dir}`);
      profile = summarizeOrtProfile(JSON.parse(readFileSync(join(dir, file), "utf8")));
    } finally {
      await prof.release();
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const flops = headFlops(head, o.batch);
  const trainFlops = 3 * (flops.encode + flops.velocity);
  const trainGflops = trainFlops / stepS / 1e9;
  const reference = await referenceGflops();
  return {
    samplesPerSec: o.batch / stepS,
    stepMs: stepS * 1000,
    gradMs: median(gradTimes),
    trainGflops,
    referenceGflops: reference,
    ratio: trainGflops / reference,
    backend: "ort",
    workers: o.workers ?? "all cores (onnxruntime intra-op threads)",
    arch: o.arch,
    batch: o.batch,
    horizon: H,
    actionDim: A,
    parameters,
    gflopPerStep: trainFlops / 1e9,
    ...(profile ? { profile } : {}),
  };
}

/**
 * `bench train --backend a,b,...`: {@link benchTrain} for each backend in turn (same head, batch and
 * steps), in one object: `runs` by backend and, when both were measured, `ortOverWasm` (ort's
 * samples/s over wasm's).
 */
export async function benchTrainCompare(
  o: Omit<BenchTrainOptions, "backend"> & { backends: readonly TrainBackendName[] },
): Promise<Record<string, unknown>> {
  const runs: Record<string, Record<string, unknown>> = {};
  for (const backend of o.backends) runs[backend] = await benchTrain({ ...o, backend });
  const rate = (b: string): number | undefined => runs[b]?.["samplesPerSec"] as number | undefined;
  const ort = rate("ort");
  const wasm = rate("wasm");
  return {
    arch: o.arch,
    batch: o.batch,
    runs,
    ...(ort !== undefined && wasm !== undefined ? { ortOverWasm: ort / wasm } : {}),
  };
}
