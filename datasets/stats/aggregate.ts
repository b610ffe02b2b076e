/**
 * Combining per-episode statistics into dataset statistics, exactly as LeRobot's
 * `aggregate_stats` does (lerobot/datasets/compute_stats.py):
 *
 * - `min` / `max`: element-wise min of the mins, max of the maxes;
 * - `mean`: count-weighted mean;
 * - `std`: pooled (parallel-algorithm) population std, `sqrt(sum(n_i (var_i + (mean_i - mean)^2)) / N)`;
 * - `count`: the sum;
 * - quantiles (`q01`..`q99`), when every part has them: the count-weighted mean of the parts'
 *   quantiles. That is LeRobot's approximation, not a true quantile of the union.
 */
import type { FeatureStats } from "../../policy/normalize.ts";

/** The quantile keys LeRobot stores, with their probabilities. */
export const QUANTILE_KEYS = ["q01", "q10", "q50", "q90", "q99"] as const;

/** One of {@link QUANTILE_KEYS}. */
export type QuantileKey = (typeof QUANTILE_KEYS)[number];

/** Probability of each quantile key (`q01` -> 0.01). */
export const QUANTILE_PROBS: Record<QuantileKey, number> = { q01: 0.01, q10: 0.1, q50: 0.5, q90: 0.9, q99: 0.99 };

/**
 * Aggregates the statistics of disjoint parts (episodes) of one feature into the statistics of the
 * whole; `what` names the feature in errors. Every part must have the same dimension.
 */
export function aggregateFeatureStats(parts: readonly FeatureStats[], what = "feature"): FeatureStats {
  const first = parts[0];
  if (!first) throw new Error(`cannot aggregate stats of ${what}: no parts`);
  const dim = first.mean.length;
  for (const [k, p] of parts.entries()) {
    for (const key of ["min", "max", "mean", "std"] as const) {
      if (p[key].length !== dim) {
        throw new Error(
          `cannot aggregate stats of ${what}: part ${k} has '${key}' of length ${p[key].length}, part 0 has ${dim}`,
        );
      }
    }
    if (!(p.count >= 0)) throw new Error(`cannot aggregate stats of ${what}: part ${k} has count ${p.count}`);
  }
  const total = parts.reduce((s, p) => s + p.count, 0);
  const min = new Array<number>(dim).fill(Infinity);
  const max = new Array<number>(dim).fill(-Infinity);
  const mean = new Array<number>(dim).fill(0);
  const variance = new Array<number>(dim).fill(0);
  for (const p of parts) {
    for (let d = 0; d < dim; d++) {
      min[d] = Math.min(min[d]!, p.min[d]!);
      max[d] = Math.max(max[d]!, p.max[d]!);
      mean[d] = mean[d]! + p.mean[d]! * p.count;
    }
  }
  for (let d = 0; d < dim; d++) mean[d] = mean[d]! / total;
  for (const p of parts) {
    for (let d = 0; d < dim; d++) {
      const delta = p.mean[d]! - mean[d]!;
      variance[d] = variance[d]! + (p.std[d]! * p.std[d]! + delta * delta) * p.count;
    }
  }
  const out: FeatureStats = { min, max, mean, std: variance.map((v) => Math.sqrt(v / total)), count: total };
  for (const q of QUANTILE_KEYS) {
    if (!parts.every((p) => p[q]?.length === dim)) continue;
    const acc = new Array<number>(dim).fill(0);
    for (const p of parts) {
      const values = p[q]!;
      for (let d = 0; d < dim; d++) acc[d] = acc[d]! + values[d]! * p.count;
    }
    out[q] = acc.map((v) => v / total);
  }
  return out;
}

/**
 * Aggregates per-episode stats (feature -> stats) into dataset stats; the result has the union of
 * the features, each aggregated over the episodes that have it (as LeRobot does).
 */
export function aggregateStats(perEpisode: readonly Record<string, FeatureStats>[]): Record<string, FeatureStats> {
  const names = new Set<string>();
  for (const ep of perEpisode) for (const name of Object.keys(ep)) names.add(name);
  const out: Record<string, FeatureStats> = {};
  for (const name of names) {
    const parts = perEpisode.flatMap((ep) => (ep[name] ? [ep[name]] : []));
    out[name] = aggregateFeatureStats(parts, name);
  }
  return out;
}
