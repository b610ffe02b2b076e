/**
 * The normalisation of a run: one mode per dataset column, the stats (from the dataset's metadata
 * when it has every number the mode needs, else computed from the training episodes' frames), guarded
 * against (nearly) constant dims, and the affine maps the windows apply. See `training/run.ts`.
 */
import { z } from "zod";
import type { EpisodeDataset } from "../../datasets/episodes.ts";
import { datasetStats } from "../../datasets/stats/dataset.ts";
import type { FeatureNorm, NormalizationSpec } from "../../policy/checkpoint/checkpoint.ts";
import { normsFor, promptNorm } from "../../policy/checkpoint/checkpoint.ts";
import type { HeadConfig } from "../../policy/net/config.ts";
import type { AffineNorm, FeatureStats, NormMode } from "../../policy/normalize.ts";
import { affineFor } from "../../policy/normalize.ts";
import type { RunInput } from "./settings.ts";

/** Where a run's stats came from: the dataset's metadata (`meta`) or its training frames (`data`). */
export const StatsSourceSchema = z.enum(["meta", "data"]);
/** See {@link StatsSourceSchema}. */
export type StatsSource = z.infer<typeof StatsSourceSchema>;

/** What {@link runNormalization} needs. */
export interface RunNormalizationOptions {
  ds: EpisodeDataset;
  /** For error messages. */
  datasetPath: string;
  input: RunInput;
  head: HeadConfig;
  /** The dataset's own stats by column (LeRobot metadata), if any. */
  metaStats?: Record<string, FeatureStats> | undefined;
  /** Episodes whose frames give the stats the metadata lacks. */
  trainEpisodes: number[];
  /** Per-channel stats of pixel / 255 of a camera column over the training episodes (see `training/images.ts`). */
  cameraStats?: (key: string) => Promise<FeatureStats>;
}

/** The normalisation of a run: saved with every checkpoint, applied by the windows, reported in run.json. */
export interface RunNormalization {
  /** What `stats.json` holds (guarded stats). */
  normalization: NormalizationSpec;
  /** The affine map per dataset column (unpadded). */
  norms: Record<string, AffineNorm>;
  /** Dims whose stats were guarded, per dataset column. */
  guardedDims: Record<string, number[]>;
  statsSource: StatsSource;
}

/**
 * Builds a run's normalisation (see the module comment). Throws when a column is normalised with two
 * modes, has no frames to compute stats from, or its stats do not fit the head.
 */
export async function runNormalization(opts: RunNormalizationOptions): Promise<RunNormalization> {
  const { ds, datasetPath, input, head } = opts;
  const columns = new Map<string, NormMode>();
  const claim = (key: string, m: NormMode, who: string): void => {
    const prev = columns.get(key);
    if (prev && prev !== m)
      throw new Error(`column '${key}' is normalised as ${prev} and as ${m} (${who}); use one mode per column`);
    columns.set(key, m);
  };
  claim(input.action, input.normalization.action, "action");
  for (const o of input.obs)
    if (o.prompts === undefined) claim(o.key, input.normalization.obs[o.name]!, `obs '${o.name}'`);
  const rawStats: Record<string, FeatureStats> = {};
  const missing: string[] = [];
  const cameras = new Set(input.obs.filter((o) => o.image !== undefined).map((o) => o.key));
  for (const [key, m] of columns) {
    const s = opts.metaStats?.[key];
    const dim = cameras.has(key) ? 3 : ds.features[key]!.shape.at(-1)!;
    if (hasAll(s, m, dim)) rawStats[key] = s;
    else if (cameras.has(key)) {
      if (!opts.cameraStats)
        throw new Error(`${datasetPath}: no statistics of camera '${key}' and no frames to compute them`);
      rawStats[key] = await opts.cameraStats(key);
    } else missing.push(key);
  }
  let statsSource: StatsSource = "meta";
  if (missing.length) {
    statsSource = "data";
    const computed = await datasetStats(ds, missing, { episodes: opts.trainEpisodes });
    for (const key of missing) {
      const s = computed[key];
      if (!s) throw new Error(`${datasetPath}: no frames to compute stats of column '${key}'`);
      rawStats[key] = perLastDim(s, ds.features[key]!.shape);
    }
  }
  const guardedDims: Record<string, number[]> = {};
  const saved: Record<string, FeatureStats> = {};
  const norms: Record<string, AffineNorm> = {};
  const obsKeys = new Set(input.obs.filter((o) => o.prompts === undefined).map((o) => o.key));
  for (const [key, m] of columns) {
    const g = guardStats(rawStats[key]!, m, { constantAction: key === input.action && !obsKeys.has(key) });
    saved[key] = g.stats;
    if (g.guarded.length) guardedDims[key] = g.guarded;
    norms[key] = affineFor(g.stats, m, key);
  }
  const normalization: NormalizationSpec = {
    obs: Object.fromEntries(
      input.obs.map((o) => [
        o.name,
        o.prompts !== undefined
          ? promptNorm(o.prompts.length, o.key, o.promptEmbedding?.vectors)
          : ({ key: o.key, mode: input.normalization.obs[o.name]!, stats: saved[o.key]! } satisfies FeatureNorm),
      ]),
    ),
    action: { key: input.action, mode: input.normalization.action, stats: saved[input.action]! },
  };
  normsFor(normalization, head); // validates dims against the head
  return { normalization, norms, guardedDims, statsSource };
}

/**
 * Spread (metres or radians) given to an action dim that never varies in the data: the head's output
 * there is multiplied by this on the way back, so the dim comes out as its constant (to ~1e-6 of
 * the head's error) instead of the constant plus the head's unit-scale error.
 */
export const CONSTANT_ACTION_SPREAD = 1e-6;

/**
 * Guards stats against (nearly) constant dims, which would otherwise get a scale of ~1e8
 * (see `training/run.ts`): such a dim gets a unit spread about its mean. With `constantAction` (the
 * action column, not also an observation), a dim with exactly zero spread (min == max) gets
 * {@link CONSTANT_ACTION_SPREAD} instead, so denormalisation maps whatever the head outputs there
 * back to the constant. Returns the stats to save and the guarded dims.
 */
export function guardStats(
  stats: FeatureStats,
  mode: NormMode,
  opts: { constantAction?: boolean } = {},
): { stats: FeatureStats; guarded: number[] } {
  const out: FeatureStats = {
    ...stats,
    mean: [...stats.mean],
    std: [...stats.std],
    min: [...stats.min],
    max: [...stats.max],
  };
  if (stats.q01) out.q01 = [...stats.q01];
  if (stats.q99) out.q99 = [...stats.q99];
  const guarded: number[] = [];
  const dim = stats.mean.length;
  for (let i = 0; i < dim; i++) {
    const mean = stats.mean[i]!;
    const half = opts.constantAction && stats.max[i] === stats.min[i] ? CONSTANT_ACTION_SPREAD : 1;
    switch (mode) {
      case "identity":
        break;
      case "mean_std":
        if (!(stats.std[i]! >= 1e-3)) {
          out.std[i] = half;
          guarded.push(i);
        }
        break;
      case "min_max":
        if (!(stats.max[i]! - stats.min[i]! >= 2e-3)) {
          out.min[i] = mean - half;
          out.max[i] = mean + half;
          guarded.push(i);
        }
        break;
      case "quantiles": {
        if (out.q01 && out.q99 && !(out.q99[i]! - out.q01[i]! >= 2e-3)) {
          out.q01[i] = mean - half;
          out.q99[i] = mean + half;
          guarded.push(i);
        }
        break;
      }
    }
  }
  return { stats: out, guarded };
}

const NEEDS: Record<NormMode, (keyof FeatureStats)[]> = {
  identity: ["mean"],
  mean_std: ["mean", "std"],
  min_max: ["mean", "min", "max"],
  quantiles: ["mean", "q01", "q99"],
};

function hasAll(s: FeatureStats | undefined, mode: NormMode, dim: number): s is FeatureStats {
  if (!s) return false;
  return [...NEEDS[mode], "min", "max", "std"].every((k) => {
    const v = s[k as keyof FeatureStats];
    return Array.isArray(v) && v.length === dim && v.every((x) => Number.isFinite(x));
  });
}

/**
 * Stats of an `[N, D]` column come back per element (N*D); the head normalises the last axis, so
 * fold them to D dims (count-weighted mean/std over the rows, min/max envelope). Vectors pass through.
 */
function perLastDim(s: FeatureStats, shape: readonly number[]): FeatureStats {
  if (shape.length !== 2) return s;
  const [n, d] = [shape[0]!, shape[1]!];
  const mean = new Array<number>(d).fill(0);
  const sq = new Array<number>(d).fill(0);
  const min = new Array<number>(d).fill(Infinity);
  const max = new Array<number>(d).fill(-Infinity);
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < d; j++) {
      const k = r * d + j;
      mean[j]! += s.mean[k]! / n;
      sq[j]! += (s.std[k]! ** 2 + s.mean[k]! ** 2) / n;
      min[j] = Math.min(min[j]!, s.min[k]!);
      max[j] = Math.max(max[j]!, s.max[k]!);
    }
  }
  const std = mean.map((m, j) => Math.sqrt(Math.max(0, sq[j]! - m * m)));
  const folded: FeatureStats = { mean, std, min, max, count: s.count * n };
  // Quantiles cannot be pooled exactly; take the envelope over the rows (through a two-argument
  // callback: reduce(Math.min) would pass the index and the array too, and give NaN).
  const envelope = (q: number[] | undefined, f: (a: number, b: number) => number): number[] | undefined =>
    q &&
    Array.from({ length: d }, (_, j) => Array.from({ length: n }, (_, r) => q[r * d + j]!).reduce((a, b) => f(a, b)));
  const q01 = envelope(s.q01, Math.min);
  const q99 = envelope(s.q99, Math.max);
  if (q01) folded.q01 = q01;
  if (q99) folded.q99 = q99;
  return folded;
}
