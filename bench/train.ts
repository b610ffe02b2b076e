/**
 * `bench train`: training throughput of the default transformer head (H=50, A=32) on the chosen
 * tfjs backend, as samples/s and model GFLOP/s (3x the forward matMul FLOPs), against the
 * reference fp32 matMul throughput of onnxruntime measured in the same run. Gradients are computed
 * by `workers` threads (data parallel, `training/parallel/`).
 */
import { parseHeadConfig } from "../policy/net/config.ts";
import { buildHead } from "../policy/net/network.ts";
import { headFlops } from "../policy/net/flops.ts";
import { Rng } from "../policy/random.ts";
import type { BackendName } from "../training/backend/registry.ts";
import { useBackend } from "../training/backend/registry.ts";
import { Trainer, defaultWorkers } from "../training/trainer.ts";
import type { Batch } from "../training/batch.ts";
import { referenceGflops } from "./reference.ts";

/** Options of `benchTrain`. */
export interface BenchTrainOptions {
  arch: "transformer" | "mlp";
  batch: number;
  steps: number;
  backend: BackendName;
  /** Gradient threads (see `TrainerOptions.workers`); default `defaultWorkers(head, batch)`. */
  workers?: number;
}

/** Runs the training benchmark; returns the JSON record. */
export async function benchTrain(o: BenchTrainOptions): Promise<Record<string, unknown>> {
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
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)]! / 1000;
  const flops = headFlops(head, o.batch);
  const trainFlops = 3 * (flops.encode + flops.velocity);
  const trainGflops = trainFlops / median / 1e9;
  const parameters = trainer.parameterCount();
  trainer.dispose();
  const reference = await referenceGflops();
  return {
    samplesPerSec: o.batch / median,
    stepMs: median * 1000,
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
  };
}
