/**
 * ReFlow (Liu et al. 2023): simulate a trained flow to couple each noise draw with the sample it
 * flows to, then fine-tune on those couplings. Straighter paths make few-step Euler sampling
 * accurate; one round is enough in practice.
 */
import * as tf from "@tensorflow/tfjs";
import type { Batch, BatchSource } from "./batch.ts";
import type { Trainer } from "./trainer.ts";
import { sampleChunkTfjs, tidyRead } from "../policy/sampling/tfjs.ts";
import type { SolverName } from "../policy/flow/solvers.ts";
import { Rng } from "../policy/random.ts";

/** Options of `reflowCouplings`. */
export interface ReflowOptions {
  /** Number of (noise, sample) pairs to simulate. */
  pairs: number;
  /** Observation batches to condition on: drawn from this source (its actions are ignored). */
  source: BatchSource;
  seed: number;
  /** Accurate integration of the teacher flow (default rk4, 16 steps). */
  solver?: SolverName;
  steps?: number;
  /** Pairs simulated per call (memory bound). */
  chunk?: number;
}

/**
 * Simulates the trainer's EMA flow from fresh noise and returns a `BatchSource` that replays the
 * resulting couplings: each batch carries its `noise` and the `actions` it flows to.
 */
export function reflowCouplings(trainer: Trainer, opts: ReflowOptions): BatchSource {
  const { horizon: H, actionDim: A, obs } = trainer.head.config;
  const rng = new Rng(opts.seed);
  const chunk = opts.chunk ?? 1000;
  const batches: Batch[] = [];
  for (let done = 0; done < opts.pairs; done += chunk) {
    const size = Math.min(chunk, opts.pairs - done);
    const cond = opts.source.next(size, rng);
    const noise = rng.normalArray(size * H * A);
    const actions = tidyRead(() => {
      const o: Record<string, tf.Tensor> = {};
      for (const f of obs) o[f.name] = tf.tensor(cond.obs[f.name]!, [size, ...f.shape]);
      return sampleChunkTfjs(trainer.head, trainer.emaOps, o, tf.tensor(noise, [size, H, A]), {
        solver: opts.solver ?? "rk4",
        steps: opts.steps ?? 16,
      });
    });
    batches.push({ size, obs: cond.obs, actions, isPad: new Uint8Array(size * H), noise });
  }
  const total = batches.reduce((n, b) => n + b.size, 0);
  return {
    next(size: number, r: Rng): Batch {
      const out: Batch = {
        size,
        obs: {},
        actions: new Float32Array(size * H * A),
        isPad: new Uint8Array(size * H),
        noise: new Float32Array(size * H * A),
      };
      for (const f of obs) out.obs[f.name] = new Float32Array(size * f.shape.reduce((a, b) => a * b, 1));
      for (let i = 0; i < size; i++) {
        let k = r.int(total);
        let b = 0;
        while (k >= batches[b]!.size) k -= batches[b++]!.size;
        const src = batches[b]!;
        out.actions.set(src.actions.subarray(k * H * A, (k + 1) * H * A), i * H * A);
        out.noise!.set(src.noise!.subarray(k * H * A, (k + 1) * H * A), i * H * A);
        for (const f of obs) {
          const d = f.shape.reduce((a, c) => a * c, 1);
          out.obs[f.name]!.set(src.obs[f.name]!.subarray(k * d, (k + 1) * d), i * d);
        }
      }
      return out;
    },
  };
}
