/** Tiny heads with random (all non-zero) weights and stats, for export and runtime tests. */
import * as tf from "@tensorflow/tfjs";
import { parseHeadConfig, type HeadConfig, type HeadConfigInput, type Objective } from "../../../policy/net/config.ts";
import { buildHead } from "../../../policy/net/network.ts";
import { type ActionHead } from "../../../policy/net/head.ts";
import { TfjsOps } from "../../../policy/net/tfjs-ops.ts";
import { affineFor, padAffine, type AffineNorm, type FeatureStats } from "../../../policy/normalize.ts";
import { Rng } from "../../../policy/random.ts";
import type { FeatureIO, GraphNorms } from "../../../policy/onnx/graphs.ts";
import type { NamedArray } from "../../../policy/onnx/ops.ts";

/** A tiny head of `arch`: H=4, model action dim 5 (raw 3), features state [6] (raw 4) and emb [2, 3]. */
export function tinyConfig(
  arch: "transformer" | "mlp",
  objective: Objective = "flow",
  features: "state" | "state+emb" = "state+emb",
): HeadConfig {
  const input: HeadConfigInput = {
    arch,
    objective,
    horizon: 4,
    actionDim: 5,
    obs: [
      { name: "state", key: "observation.state", shape: [6] },
      ...(features === "state+emb" ? [{ name: "emb", key: "observation.embedding", shape: [2, 3] }] : []),
    ],
    transformer: { width: 16, depth: 2, heads: 2, mlpRatio: 2, timeEmbedDim: 8 },
    mlp: { width: 24, depth: 2, timeEmbedDim: 4 },
  };
  return parseHeadConfig(input);
}

/** Raw dims of the tiny heads' features and action. */
export const RAW = { state: 4, emb: 3, action: 3 } as const;

/** Statistics of a `dim`-dimensional feature with means and spreads drawn from `rng`. */
export function randomStats(dim: number, rng: Rng): FeatureStats {
  const mean = Array.from({ length: dim }, () => rng.normal());
  const std = Array.from({ length: dim }, () => 0.5 + rng.uniform());
  return {
    mean,
    std,
    min: mean.map((m, i) => m - 2 * std[i]!),
    max: mean.map((m, i) => m + 2 * std[i]!),
    count: 100,
  };
}

/** Weights for every parameter of `head`, all drawn from N(0, 0.3^2) (zero-initialised layers included). */
export function randomWeights(head: ActionHead, seed: number): Map<string, NamedArray> {
  const ops = new TfjsOps({ seed, mode: "frozen" });
  const rng = new Rng(seed + 1);
  tf.tidy(() => {
    const obs: Record<string, tf.Tensor> = {};
    for (const f of head.config.obs) obs[f.name] = tf.zeros([1, ...f.shape]);
    const { horizon: H, actionDim: A } = head.config;
    head.velocity(ops, head.encode(ops, obs), tf.zeros([1, H, A]), tf.zeros([1, H]));
  });
  const out = new Map<string, NamedArray>();
  for (const [name, w] of ops.snapshot()) {
    const data = new Float32Array(w.data.length);
    for (let i = 0; i < data.length; i++) data[i] = 0.3 * rng.normal();
    out.set(name, { shape: w.shape, data });
  }
  ops.dispose();
  return out;
}

/** Everything an export needs for a tiny head. */
export interface TinyModel {
  config: HeadConfig;
  head: ActionHead;
  weights: Map<string, NamedArray>;
  stats: { obs: { state: FeatureStats; emb: FeatureStats }; action: FeatureStats };
  features: FeatureIO[];
  norms: GraphNorms;
}

/** A tiny head with random weights and stats (mean_std obs, min_max action). */
export function tinyModel(
  arch: "transformer" | "mlp",
  opts: { objective?: Objective; seed?: number; features?: "state" | "state+emb" } = {},
): TinyModel {
  const withEmb = (opts.features ?? "state+emb") === "state+emb";
  const config = tinyConfig(arch, opts.objective ?? "flow", withEmb ? "state+emb" : "state");
  const head = buildHead(config);
  const seed = opts.seed ?? 7;
  const rng = new Rng(seed + 100);
  const stats = {
    obs: { state: randomStats(RAW.state, rng), emb: randomStats(RAW.emb, rng) },
    action: randomStats(RAW.action, rng),
  };
  const obsNorms: Record<string, AffineNorm> = {
    state: padAffine(affineFor(stats.obs.state, "mean_std", "state"), 6),
    emb: padAffine(affineFor(stats.obs.emb, "mean_std", "emb"), 3),
  };
  return {
    config,
    head,
    weights: randomWeights(head, seed),
    stats,
    features: [
      { name: "state", key: "observation.state", shape: [6], rawShape: [RAW.state] },
      ...(withEmb ? [{ name: "emb", key: "observation.embedding", shape: [2, 3], rawShape: [2, RAW.emb] }] : []),
    ],
    norms: {
      obs: obsNorms,
      action: padAffine(affineFor(stats.action, "min_max", "action"), 5),
      rawActionDim: RAW.action,
    },
  };
}

/** Seeded raw observations for a batch: `{state: [batch*4], emb: [batch*2*3]}`. */
export function randomObs(batch: number, seed: number): Record<string, Float32Array> {
  const rng = new Rng(seed);
  return {
    state: Float32Array.from({ length: batch * RAW.state }, () => rng.normal() * 2),
    emb: Float32Array.from({ length: batch * 2 * RAW.emb }, () => rng.normal()),
  };
}

/** Writes `m` as a checkpoint of a run under `runDir` (mean_std observations, min_max action). */
export async function writeTinyCheckpoint(runDir: string, m: TinyModel, step = 10): Promise<string> {
  const { saveCheckpoint } = await import("../../../policy/checkpoint/checkpoint.ts");
  return saveCheckpoint(runDir, step, {
    config: m.config,
    weights: m.weights,
    normalization: {
      obs: {
        state: { key: "observation.state", mode: "mean_std", stats: m.stats.obs.state },
        emb: { key: "observation.embedding", mode: "mean_std", stats: m.stats.obs.emb },
      },
      action: { key: "action", mode: "min_max", stats: m.stats.action },
    },
  });
}
