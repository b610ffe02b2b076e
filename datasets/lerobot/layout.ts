/**
 * The LeRobot dataset layout shared by the reader and the writer: file paths of v2.1 and v3.0, the
 * per-frame default features, feature descriptions and the lenient parsing of `names`.
 * Formats as in huggingface/lerobot `lerobot/datasets/utils.py`.
 */

/** v3.0 data files (many episodes per file). */
export const V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet";
/** v3.0 episode metadata files. */
export const V3_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet";
/** v3.0 video files. */
export const V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4";
/** v2.x data files (one episode per file). */
export const V2_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet";
/** v2.x video files (one mp4 per episode and camera). */
export const V2_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4";
/** Files per chunk folder (LeRobot's DEFAULT_CHUNK_SIZE). */
export const DEFAULT_CHUNK_SIZE = 1000;
/** Size limit of one v3.0 data file in MB (LeRobot's DEFAULT_DATA_FILE_SIZE_IN_MB). */
export const DEFAULT_DATA_FILE_SIZE_IN_MB = 100;
/** Size limit of one v3.0 video file in MB (LeRobot's DEFAULT_VIDEO_FILE_SIZE_IN_MB). */
export const DEFAULT_VIDEO_FILE_SIZE_IN_MB = 500;

/** A feature as described by `meta/info.json`; `names` normalised to a flat list or null. */
export interface FeatureInfo {
  /** "float32", "float64", "int64", ..., "bool", "string", "image" or "video". */
  dtype: string;
  /** Per-frame shape, e.g. `[26]`; scalars are `[1]`. */
  shape: number[];
  /** One name per element (flattened), or null when the dataset gives none. */
  names: string[] | null;
}

/** The per-frame bookkeeping columns every LeRobot dataset has. */
export const DEFAULT_FEATURES: Readonly<Record<string, FeatureInfo>> = {
  timestamp: { dtype: "float32", shape: [1], names: null },
  frame_index: { dtype: "int64", shape: [1], names: null },
  episode_index: { dtype: "int64", shape: [1], names: null },
  index: { dtype: "int64", shape: [1], names: null },
  task_index: { dtype: "int64", shape: [1], names: null },
};

/** One episode: its index, frame count, tasks and global frame range `[from, to)`. */
export interface EpisodeInfo {
  index: number;
  length: number;
  tasks: string[];
  /** Global index of the first frame. */
  from: number;
  /** Global index one past the last frame (`from + length`). */
  to: number;
}

/** A column of one episode, flat `[length, ...shape]`: float32, float64 or int64 (BigInt). */
export type ColumnArray = Float32Array | Float64Array | BigInt64Array;

/** A column with its shape `[length, ...featureShape]`. */
export interface ShapedColumn {
  data: ColumnArray;
  shape: number[];
}

/** Number of values per frame of a feature shape (`[1]` and `[]` give 1). */
export function frameSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Whether a feature is stored in video files rather than in the parquet data. */
export function isVideo(f: FeatureInfo): boolean {
  return f.dtype === "video";
}

/** Whether a feature is numeric (readable by `readEpisode`). */
export function isNumeric(f: FeatureInfo): boolean {
  return !["video", "image", "string"].includes(f.dtype);
}

/**
 * Fills a LeRobot path template (python format syntax, only `{name}` and `{name:0Nd}`), e.g.
 * `formatPath(V3_DATA_PATH, {chunk_index: 0, file_index: 3})` -> `data/chunk-000/file-003.parquet`.
 */
export function formatPath(template: string, values: Record<string, number | string>): string {
  return template.replace(/\{([A-Za-z_][A-Za-z0-9_]*)(?::0?(\d+)d)?\}/g, (_m, key: string, width?: string) => {
    const v = values[key];
    if (v === undefined) throw new Error(`path template '${template}': no value for '{${key}}'`);
    const s = String(v);
    return width ? s.padStart(Number(width), "0") : s;
  });
}

/**
 * Normalises the `names` of an info.json feature: a flat list, a nested list (flattened) or a dict
 * such as `{"motors": [...]}` (values flattened in order) become a flat string list; anything else
 * (null, missing) becomes null.
 */
export function normalizeNames(names: unknown): string[] | null {
  if (names === null || names === undefined) return null;
  const out: string[] = [];
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) for (const x of v) visit(x);
    else if (v !== null && typeof v === "object") for (const x of Object.values(v)) visit(x);
    else if (v !== null && v !== undefined) out.push(String(v));
  };
  visit(names);
  return out.length > 0 ? out : null;
}

/** Parses one info.json feature entry leniently; `where` names it in errors. */
export function parseFeature(raw: unknown, where: string): FeatureInfo {
  if (raw === null || typeof raw !== "object") throw new TypeError(`${where}: feature must be an object`);
  const r = raw as Record<string, unknown>;
  if (typeof r.dtype !== "string")
    throw new TypeError(`${where}: 'dtype' must be a string, got ${JSON.stringify(r.dtype)}`);
  let shape: number[];
  if (Array.isArray(r.shape) && r.shape.every((s) => Number.isInteger(s) && (s as number) >= 0))
    shape = r.shape as number[];
  else if (Number.isInteger(r.shape)) shape = [r.shape as number];
  else throw new TypeError(`${where}: 'shape' must be a list of integers, got ${JSON.stringify(r.shape)}`);
  return { dtype: r.dtype, shape, names: normalizeNames(r.names) };
}
