/** Seeded weights and statistics of untrained heads for the benchmarks. */
import * as tf from "@tensorflow/tfjs";
import type { HeadConfig } from "../policy/net/config.ts";
import { buildHead } from "../policy/net/network.ts";
import { TfjsOps } from "../policy/net/tfjs-ops.ts";
import type { FeatureStats } from "../policy/normalize.ts";
import { Rng } from "../policy/random.ts";

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
