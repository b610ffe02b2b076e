/**
 * What `actionflow dataset info` and `dataset stats` report about an opened dataset (LeRobot v2.x,
 * v3.0 or robomimic): its description (format, episodes, frames, fps, features, tasks, robot), and
 * per-dimension statistics of its float features, computed from the frames or read from the
 * metadata the dataset stores.
 */
import type { FeatureStats } from "../policy/normalize.ts";
import { isNumeric } from "./lerobot/layout.ts";
import type { FeatureInfo } from "./lerobot/layout.ts";
import type { OpenedDataset } from "./open.ts";
import { datasetStats } from "./stats/dataset.ts";
import { describeCameras } from "./video/frames.ts";
import type { CameraInfo } from "./video/frames.ts";

/** A dataset's description (`dataset info`). */
export interface DatasetInfo {
  format: "lerobot" | "robomimic";
  /** LeRobot's `codebase_version` (`v2.1`, `v3.0`); null for robomimic. */
  codebaseVersion: string | null;
  episodes: number;
  frames: number;
  /** Frames per second, when the dataset says. */
  fps: number | null;
  features: Record<string, { dtype: string; shape: number[] }>;
  /** LeRobot's task strings; robomimic: the environment name. */
  tasks: string[];
  robotType: string | null;
  /** robomimic masks: name -> number of demos. */
  masks?: Record<string, number>;
  /** Camera features (LeRobot video/image) and which episodes have their video. */
  cameras: CameraInfo[];
}

/** Describes an opened dataset (see {@link DatasetInfo}). */
export async function describeDataset(o: OpenedDataset): Promise<DatasetInfo> {
  const features: Record<string, { dtype: string; shape: number[] }> = {};
  for (const [n, f] of Object.entries(o.dataset.features)) features[n] = { dtype: f.dtype, shape: [...f.shape] };
  if (o.format === "lerobot") {
    const ds = o.dataset;
    return {
      format: "lerobot",
      codebaseVersion: ds.codebaseVersion,
      episodes: ds.episodes.length,
      frames: ds.totalFrames,
      fps: ds.fps,
      features,
      tasks: ds.tasks.filter((t) => t !== undefined),
      robotType: ds.robotType,
      cameras: await describeCameras(ds),
    };
  }
  const ds = o.dataset;
  const masks: Record<string, number> = {};
  for (const [k, v] of Object.entries(ds.masks)) masks[k] = v.length;
  return {
    format: "robomimic",
    codebaseVersion: null,
    episodes: ds.episodes.length,
    frames: ds.totalFrames,
    fps: ds.fps,
    features,
    tasks: ds.envName ? [ds.envName] : [],
    robotType: ds.robotType,
    masks,
    cameras: [],
  };
}

/** Statistics of a dataset's float features (`dataset stats`). */
export interface DatasetStatsSummary {
  /** "data": computed from the frames; "meta": as stored in the dataset's metadata. */
  source: "data" | "meta";
  episodes: number;
  frames: number;
  /** Per feature, per dimension: min, max, mean, std, count, q01..q99. */
  features: Record<string, FeatureStats>;
}

/** Options of {@link summarizeStats}. */
export interface SummarizeStatsOptions {
  /** `data` (default): computed from the frames; `meta`: as the dataset stores them (LeRobot only). */
  source?: "data" | "meta";
  /** These features only (each must be a float feature); default: every float feature. */
  features?: readonly string[];
  /** Histogram bins per dimension for the quantiles, a power of two (default 8192). */
  bins?: number;
  /** Called after each episode when computing from the frames. */
  onEpisode?: (done: number, total: number) => void;
}

/** The float features of `features`, or `only` after checking each is one (the error names `--features`). */
export function floatFeatures(features: Record<string, FeatureInfo>, only?: readonly string[]): string[] {
  const names = Object.entries(features)
    .filter(([, f]) => isNumeric(f) && f.dtype.startsWith("float"))
    .map(([n]) => n);
  if (!only) return names;
  for (const n of only)
    if (!names.includes(n)) throw new Error(`--features: '${n}' is not a float feature (have: ${names.join(", ")})`);
  return [...only];
}

/**
 * Statistics of the float features of `o` (see {@link SummarizeStatsOptions}); `path` names the
 * dataset in errors. From the metadata, only the features it has statistics for.
 */
export async function summarizeStats(
  o: OpenedDataset,
  path: string,
  opts: SummarizeStatsOptions = {},
): Promise<DatasetStatsSummary> {
  const eps = o.dataset.episodes;
  if (opts.source === "meta") {
    if (o.format !== "lerobot")
      throw new Error(`${path}: --from-meta needs a LeRobot dataset (robomimic files store no statistics)`);
    const names = floatFeatures(o.dataset.features, opts.features);
    const stored = o.dataset.stats();
    const features: Record<string, FeatureStats> = {};
    for (const n of names.filter((n) => stored[n])) features[n] = stored[n]!;
    return { source: "meta", episodes: eps.length, frames: o.dataset.totalFrames, features };
  }
  const features = await datasetStats(o.dataset, floatFeatures(o.dataset.features, opts.features), {
    ...(opts.bins ? { bins: opts.bins } : {}),
    ...(opts.onEpisode ? { onEpisode: opts.onEpisode } : {}),
  });
  return { source: "data", episodes: eps.length, frames: eps.reduce((s, e) => s + e.length, 0), features };
}
