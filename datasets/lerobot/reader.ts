/**
 * Reader of local LeRobot datasets, codebase v2.0/v2.1 (one parquet file per episode, JSON-lines
 * metadata) and v3.0 (many episodes per parquet file, parquet metadata). Videos are listed among the
 * features and located ({@link LeRobotDataset.videoFile}) but never opened here: a dataset downloaded
 * without its videos reads fine. `datasets/video/frames.ts` decodes them.
 *
 * Usage: `const ds = await openLeRobot(dir); const ep = await ds.readEpisode(0, ["action"]);`
 * Only the asked columns (and, for v3.0, only the episode's row range) are decoded.
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { readJsonFile, readJsonLinesFile } from "../../policy/io/json.ts";
import type { FeatureStats } from "../../policy/normalize.ts";
import { aggregateStats } from "../stats/aggregate.ts";
import type { ColumnArray, EpisodeInfo, FeatureInfo, ShapedColumn } from "./layout.ts";
import {
  V2_DATA_PATH,
  V2_VIDEO_PATH,
  V3_DATA_PATH,
  V3_VIDEO_PATH,
  DEFAULT_CHUNK_SIZE,
  formatPath,
  isVideo,
  parseFeature,
} from "./layout.ts";
import { ParquetFile, packColumn } from "./parquet.ts";
import { pathExists } from "../../policy/io/files.ts";

export type { ColumnArray, EpisodeInfo, FeatureInfo, ShapedColumn } from "./layout.ts";

/** Where one episode's frames live: a file and a row range in it. */
interface EpisodeLocation {
  file: string;
  rowStart: number;
  rowEnd: number;
  /** Rows the file must have: the summed lengths of the episodes it holds. */
  fileRows: number;
}

/** Where one episode's frames of one camera live in a video file (v2.x: the whole file). */
export interface VideoLocation {
  /** The mp4 path (it may be missing: datasets are often downloaded without videos). */
  file: string;
  /** Start of the episode on the file's timeline, seconds (v3.0 `videos/<key>/from_timestamp`; v2.x 0). */
  fromTimestamp: number;
  /** End of the episode on the file's timeline, seconds, or null when the metadata does not say (v2.x). */
  toTimestamp: number | null;
}

/** A LeRobot dataset opened by {@link openLeRobot}; metadata is loaded, frames are read on demand. */
export class LeRobotDataset {
  /** The dataset folder. */
  readonly dir: string;
  /** `codebase_version` of info.json, e.g. "v2.1" or "v3.0". */
  readonly codebaseVersion: string;
  /** Frames per second (Hz). */
  readonly fps: number;
  /** `robot_type` of info.json, or null. */
  readonly robotType: string | null;
  /** Features by name (video features included, with dtype "video"). */
  readonly features: Record<string, FeatureInfo>;
  /** Frames over all episodes. */
  readonly totalFrames: number;
  /** Episodes in dataset order, with their global frame ranges. */
  readonly episodes: EpisodeInfo[];
  /** Task strings by task index. */
  readonly tasks: string[];
  /** The raw meta/info.json. */
  readonly info: Record<string, unknown>;
  private readonly globalStats: Record<string, FeatureStats>;
  private readonly perEpisodeStats: Map<number, Record<string, FeatureStats>>;
  private readonly locations: Map<number, EpisodeLocation>;
  private readonly videoLocations: Map<number, Record<string, VideoLocation>>;
  private readonly byIndex: Map<number, EpisodeInfo>;
  private readonly files = new Map<string, Promise<ParquetFile>>();
  private closed = false;

  private constructor(init: {
    dir: string;
    info: Record<string, unknown>;
    features: Record<string, FeatureInfo>;
    episodes: EpisodeInfo[];
    tasks: string[];
    globalStats: Record<string, FeatureStats>;
    perEpisodeStats: Map<number, Record<string, FeatureStats>>;
    locations: Map<number, EpisodeLocation>;
    videoLocations: Map<number, Record<string, VideoLocation>>;
  }) {
    this.dir = init.dir;
    this.info = init.info;
    this.codebaseVersion = String(init.info.codebase_version);
    this.fps = Number(init.info.fps);
    this.robotType = typeof init.info.robot_type === "string" ? init.info.robot_type : null;
    this.features = init.features;
    this.episodes = init.episodes;
    this.tasks = init.tasks;
    this.totalFrames = init.episodes.reduce((s, e) => s + e.length, 0);
    this.globalStats = init.globalStats;
    this.perEpisodeStats = init.perEpisodeStats;
    this.locations = init.locations;
    this.videoLocations = init.videoLocations;
    this.byIndex = new Map(init.episodes.map((e) => [e.index, e]));
  }

  /** @internal Builds the dataset; use {@link openLeRobot}. */
  static async load(dir: string): Promise<LeRobotDataset> {
    const info = await readJson(join(dir, "meta/info.json"));
    const version = String(info.codebase_version ?? "");
    const major = /^v(\d+)\./.exec(version)?.[1];
    if (major !== "2" && major !== "3") {
      throw new Error(
        `${join(dir, "meta/info.json")}: codebase_version '${version}' is not supported (v2.0, v2.1 or v3.x)`,
      );
    }
    if (!(Number(info.fps) > 0))
      throw new Error(
        `${join(dir, "meta/info.json")}: 'fps' must be a positive number, got ${JSON.stringify(info.fps)}`,
      );
    const rawFeatures = info.features;
    if (rawFeatures === null || typeof rawFeatures !== "object")
      throw new Error(`${join(dir, "meta/info.json")}: 'features' missing`);
    const features: Record<string, FeatureInfo> = {};
    for (const [name, raw] of Object.entries(rawFeatures))
      features[name] = parseFeature(raw, `${join(dir, "meta/info.json")}: feature '${name}'`);
    const videoKeys = Object.keys(features).filter((k) => isVideo(features[k]!));
    const parts = major === "2" ? await loadV2(dir, info, videoKeys) : await loadV3(dir, info, videoKeys);
    return new LeRobotDataset({ dir, info, features, ...parts });
  }

  /** Global statistics per feature (v3.0: meta/stats.json; v2.x: aggregated from episodes_stats.jsonl). */
  stats(): Record<string, FeatureStats> {
    return this.globalStats;
  }

  /** Statistics of one episode per feature, by episode index; throws if the dataset has none. */
  episodeStats(index: number): Record<string, FeatureStats> {
    const s = this.perEpisodeStats.get(index);
    if (!s) throw new Error(`${this.dir}: no per-episode stats for episode ${index}`);
    return s;
  }

  /** The episode with this index (`episodes[k].index`); throws naming the valid range. */
  episode(index: number): EpisodeInfo {
    const e = this.byIndex.get(index);
    if (!e) throw new RangeError(`${this.dir}: no episode ${index} (the dataset has ${this.episodes.length} episodes)`);
    return e;
  }

  /** Keys of the camera features: `video` (in mp4 files) and `image` (in the parquet data), in info.json order. */
  get cameraKeys(): string[] {
    return Object.keys(this.features).filter((k) => ["video", "image"].includes(this.features[k]!.dtype));
  }

  /**
   * Where episode `index`'s frames of video feature `key` live: the mp4 path (from `video_path`)
   * and the episode's time range in it. Throws naming the key when it is not a video feature, or
   * when a v3.0 dataset's episode metadata has no `videos/<key>/...` columns for the episode.
   */
  videoFile(index: number, key: string): VideoLocation {
    this.episode(index);
    const f = this.features[key];
    if (!f || !isVideo(f))
      throw new Error(
        `${this.dir}: '${key}' is not a video feature (video features: ${this.cameraKeys.filter((k) => isVideo(this.features[k]!)).join(", ") || "none"})`,
      );
    const loc = this.videoLocations.get(index)?.[key];
    if (!loc)
      throw new Error(`${this.dir}: the episode metadata gives no videos/${key}/... location for episode ${index}`);
    return loc;
  }

  /** Path of the parquet file holding an episode's frames. */
  dataFile(index: number): string {
    this.episode(index);
    return this.locations.get(index)!.file;
  }

  /**
   * Reads `columns` of episode `index`, each flat `[length, ...shape]`: float32 features as
   * Float32Array, float64 (and int32) as Float64Array, int64 as BigInt64Array. Reads only these
   * columns (and only this episode's rows of a shared v3.0 file). Throws naming file, episode and
   * column on a missing column, a shape that disagrees with info.json, a corrupt file or a NaN.
   */
  async readEpisode(index: number, columns: readonly string[]): Promise<Record<string, ColumnArray>> {
    const shaped = await this.readEpisodeShaped(index, columns);
    const out: Record<string, ColumnArray> = {};
    for (const [k, v] of Object.entries(shaped)) out[k] = v.data;
    return out;
  }

  /** {@link readEpisode} with each column's shape `[length, ...featureShape]`. */
  async readEpisodeShaped(index: number, columns: readonly string[]): Promise<Record<string, ShapedColumn>> {
    if (this.closed) throw new Error(`${this.dir}: dataset is closed`);
    const ep = this.episode(index);
    for (const c of columns) {
      const f = this.features[c];
      if (!f)
        throw new Error(
          `${this.dir}: feature '${c}' not in meta/info.json (features: ${Object.keys(this.features).join(", ")})`,
        );
      if (isVideo(f)) throw new Error(`${this.dir}: feature '${c}' is a video; reading video frames is not supported`);
      if (f.dtype === "image" || f.dtype === "string")
        throw new Error(
          `${this.dir}: feature '${c}' has dtype ${f.dtype}, not numeric${f.dtype === "image" ? " (decode it with loadEpisodeFrames)" : ""}`,
        );
    }
    const loc = this.locations.get(index)!;
    const context = `episode ${index}`;
    const file = await this.openFile(loc.file, context);
    if (file.numRows !== loc.fileRows) {
      throw new Error(
        `${loc.file} (${context}): file has ${file.numRows} rows, the episode metadata gives its episodes ${loc.fileRows} frames`,
      );
    }
    const rows = await file.readRows(columns, loc.rowStart, loc.rowEnd, context);
    const out: Record<string, ShapedColumn> = {};
    for (const c of columns) {
      const f = this.features[c]!;
      const data = packColumn(rows, f, { file: loc.file, column: c, episode: index });
      const shape = f.shape.length === 1 && f.shape[0] === 1 ? [ep.length] : [ep.length, ...f.shape];
      out[c] = { data, shape };
    }
    return out;
  }

  /**
   * Each frame's task string of episode `index` (its `task_index` looked up in `meta/tasks`), in
   * frame order. Throws naming the episode and frame when a task index has no task string.
   */
  async readTasks(index: number): Promise<string[]> {
    const { task_index: col } = await this.readEpisode(index, ["task_index"]);
    return Array.from({ length: col!.length }, (_, i) => {
      const v = col![i]!;
      const t = this.tasks[Number(v)];
      if (typeof t !== "string")
        throw new Error(
          `${this.dir}: episode ${index} frame ${i}: task_index ${Number(v)} is not in meta/tasks (${this.tasks.length} tasks)`,
        );
      return t;
    });
  }

  /**
   * The encoded images (PNG/JPEG bytes) of `image` feature `key` for every frame of episode `index`,
   * as LeRobot stores them (a struct `{bytes, path}` per row). Throws naming file, episode, key and
   * frame on a row without bytes.
   */
  async readImageBytes(index: number, key: string): Promise<Uint8Array[]> {
    if (this.closed) throw new Error(`${this.dir}: dataset is closed`);
    this.episode(index);
    const f = this.features[key];
    if (!f || f.dtype !== "image") throw new Error(`${this.dir}: '${key}' is not an image feature`);
    const loc = this.locations.get(index)!;
    const context = `episode ${index}`;
    const file = await this.openFile(loc.file, context);
    const rows = await file.readRows([key], loc.rowStart, loc.rowEnd, context, { binary: "bytes" });
    return rows.map((r, i) => {
      const v = r[key] as unknown;
      const bytes = v instanceof Uint8Array ? v : (v as { bytes?: unknown } | null)?.bytes;
      if (bytes instanceof Uint8Array) return bytes;
      throw new Error(`${loc.file}: column '${key}' (episode ${index}, frame ${i}): no image bytes`);
    });
  }

  /** Drops the cached parquet footers; reads after it fail. Files are opened per read, so none stay open. */
  close(): void {
    this.closed = true;
    this.files.clear();
  }

  private openFile(path: string, context: string): Promise<ParquetFile> {
    let p = this.files.get(path);
    if (!p) {
      p = ParquetFile.open(path, context);
      this.files.set(path, p);
      p.catch(() => this.files.delete(path));
    }
    return p;
  }
}

/** Opens a local LeRobot dataset (v2.0, v2.1 or v3.0) at `dir`, loading its metadata. */
export async function openLeRobot(dir: string): Promise<LeRobotDataset> {
  return LeRobotDataset.load(dir);
}

interface LoadedParts {
  episodes: EpisodeInfo[];
  tasks: string[];
  globalStats: Record<string, FeatureStats>;
  perEpisodeStats: Map<number, Record<string, FeatureStats>>;
  locations: Map<number, EpisodeLocation>;
  videoLocations: Map<number, Record<string, VideoLocation>>;
}

async function loadV2(dir: string, info: Record<string, unknown>, videoKeys: string[]): Promise<LoadedParts> {
  const episodesPath = join(dir, "meta/episodes.jsonl");
  const rawEpisodes = await readJsonl(episodesPath);
  const chunksSize = Number(info.chunks_size ?? DEFAULT_CHUNK_SIZE);
  const template = typeof info.data_path === "string" ? info.data_path : V2_DATA_PATH;
  const episodes: EpisodeInfo[] = [];
  const locations = new Map<number, EpisodeLocation>();
  const videoLocations = new Map<number, Record<string, VideoLocation>>();
  const videoTemplate = typeof info.video_path === "string" ? info.video_path : V2_VIDEO_PATH;
  let from = 0;
  for (const [line, raw] of rawEpisodes.entries()) {
    const index = Number(raw.episode_index);
    const length = Number(raw.length);
    if (!Number.isInteger(index) || index < 0 || !Number.isInteger(length) || length < 0) {
      throw new Error(
        `${episodesPath}: line ${line + 1}: needs integer 'episode_index' and 'length', got ${JSON.stringify(raw)}`,
      );
    }
    const tasks = Array.isArray(raw.tasks) ? raw.tasks.map(String) : [];
    episodes.push({ index, length, tasks, from, to: from + length });
    from += length;
    const file = join(
      dir,
      formatPath(template, { episode_chunk: Math.floor(index / chunksSize), episode_index: index }),
    );
    locations.set(index, { file, rowStart: 0, rowEnd: length, fileRows: length });
    const videos: Record<string, VideoLocation> = {};
    for (const key of videoKeys) {
      const rel = formatPath(videoTemplate, {
        episode_chunk: Math.floor(index / chunksSize),
        episode_index: index,
        video_key: key,
      });
      videos[key] = { file: join(dir, rel), fromTimestamp: 0, toTimestamp: null };
    }
    videoLocations.set(index, videos);
  }
  const tasksPath = join(dir, "meta/tasks.jsonl");
  const tasks: string[] = [];
  for (const [line, raw] of (await readJsonl(tasksPath)).entries()) {
    const k = Number(raw.task_index);
    if (!Number.isInteger(k) || typeof raw.task !== "string")
      throw new Error(`${tasksPath}: line ${line + 1}: needs 'task_index' and 'task'`);
    tasks[k] = raw.task;
  }
  const perEpisodeStats = new Map<number, Record<string, FeatureStats>>();
  const statsPath = join(dir, "meta/episodes_stats.jsonl");
  let globalStats: Record<string, FeatureStats> = {};
  if (await pathExists(statsPath)) {
    for (const [line, raw] of (await readJsonl(statsPath)).entries()) {
      const index = Number(raw.episode_index);
      const stats = raw.stats;
      if (!Number.isInteger(index) || stats === null || typeof stats !== "object") {
        throw new Error(`${statsPath}: line ${line + 1}: needs 'episode_index' and 'stats'`);
      }
      perEpisodeStats.set(index, parseStatsRecord(stats as Record<string, unknown>, `${statsPath}: episode ${index}`));
    }
    globalStats = aggregateStats(
      episodes.flatMap((e) => (perEpisodeStats.has(e.index) ? [perEpisodeStats.get(e.index)!] : [])),
    );
  } else if (await pathExists(join(dir, "meta/stats.json"))) {
    globalStats = parseStatsRecord(await readJson(join(dir, "meta/stats.json")), join(dir, "meta/stats.json"));
  }
  return { episodes, tasks, globalStats, perEpisodeStats, locations, videoLocations };
}

async function loadV3(dir: string, info: Record<string, unknown>, videoKeys: string[]): Promise<LoadedParts> {
  const template = typeof info.data_path === "string" ? info.data_path : V3_DATA_PATH;
  // tasks.parquet: task_index plus the task string, stored as the pandas index column
  const tasksPath = join(dir, "meta/tasks.parquet");
  const tasksFile = await ParquetFile.open(tasksPath);
  const taskColumn = ["task", "__index_level_0__"].find((c) => tasksFile.columns.includes(c));
  if (!taskColumn)
    throw new Error(
      `${tasksPath}: no task string column ('task' or '__index_level_0__'; file has: ${tasksFile.columns.join(", ")})`,
    );
  const tasks: string[] = [];
  for (const row of await tasksFile.readRows(["task_index", taskColumn])) {
    const k = Number(row.task_index);
    if (!Number.isInteger(k) || typeof row[taskColumn] !== "string")
      throw new Error(`${tasksPath}: bad row ${JSON.stringify(row, bigintJson)}`);
    tasks[k] = row[taskColumn];
  }

  const episodesDir = join(dir, "meta/episodes");
  const files = await listParquet(episodesDir);
  if (files.length === 0) throw new Error(`${episodesDir}: no episode metadata parquet files`);
  type Row = {
    episode: EpisodeInfo;
    chunk: number;
    file: number;
    stats: Record<string, FeatureStats>;
    path: string;
    videos: Record<string, VideoLocation>;
  };
  const videoTemplate = typeof info.video_path === "string" ? info.video_path : V3_VIDEO_PATH;
  const rows: Row[] = [];
  for (const path of files) {
    const pf = await ParquetFile.open(path);
    const required = [
      "episode_index",
      "length",
      "data/chunk_index",
      "data/file_index",
      "dataset_from_index",
      "dataset_to_index",
    ];
    for (const c of required) if (!pf.columns.includes(c)) throw new Error(`${path}: column '${c}' missing`);
    const statColumns = pf.columns.filter((c) => c.startsWith("stats/"));
    const videoColumns = videoKeys.flatMap((k) =>
      ["chunk_index", "file_index", "from_timestamp", "to_timestamp"].map((c) => `videos/${k}/${c}`),
    );
    const presentVideoColumns = videoColumns.filter((c) => pf.columns.includes(c));
    const wanted = [
      ...required,
      ...(pf.columns.includes("tasks") ? ["tasks"] : []),
      ...statColumns,
      ...presentVideoColumns,
    ];
    for (const r of await pf.readRows(wanted)) {
      const index = Number(r.episode_index);
      const length = Number(r.length);
      const from = Number(r.dataset_from_index);
      const to = Number(r.dataset_to_index);
      if (!Number.isInteger(index) || !Number.isInteger(length) || to - from !== length) {
        throw new Error(
          `${path}: episode ${index}: length ${length} disagrees with dataset_from_index ${from} / dataset_to_index ${to}`,
        );
      }
      const tasksValue = r.tasks;
      const epTasks = Array.isArray(tasksValue)
        ? tasksValue.map(String)
        : typeof tasksValue === "string"
          ? [tasksValue]
          : [];
      rows.push({
        episode: { index, length, tasks: epTasks, from, to },
        chunk: Number(r["data/chunk_index"]),
        file: Number(r["data/file_index"]),
        stats: parseFlatStats(r, statColumns, `${path}: episode ${index}`),
        path,
        videos: videoLocationsOf(r, videoKeys, dir, videoTemplate, `${path}: episode ${index}`),
      });
    }
  }
  rows.sort((a, b) => a.episode.index - b.episode.index);
  // Episodes of one data file are stored back to back: the file's first row is the smallest
  // dataset_from_index among its episodes, and its row count is the sum of their lengths.
  const byFile = new Map<string, Row[]>();
  for (const r of rows) {
    const file = join(dir, formatPath(template, { chunk_index: r.chunk, file_index: r.file }));
    byFile.set(file, [...(byFile.get(file) ?? []), r]);
  }
  const locations = new Map<number, EpisodeLocation>();
  for (const [file, eps] of byFile) {
    const start = Math.min(...eps.map((r) => r.episode.from));
    const fileRows = eps.reduce((s, r) => s + r.episode.length, 0);
    for (const r of eps)
      locations.set(r.episode.index, {
        file,
        rowStart: r.episode.from - start,
        rowEnd: r.episode.to - start,
        fileRows,
      });
  }
  const perEpisodeStats = new Map<number, Record<string, FeatureStats>>();
  for (const r of rows) if (Object.keys(r.stats).length > 0) perEpisodeStats.set(r.episode.index, r.stats);
  const statsPath = join(dir, "meta/stats.json");
  let globalStats: Record<string, FeatureStats>;
  if (await pathExists(statsPath)) globalStats = parseStatsRecord(await readJson(statsPath), statsPath);
  else globalStats = aggregateStats([...perEpisodeStats.values()]);
  const videoLocations = new Map(rows.map((r) => [r.episode.index, r.videos]));
  return { episodes: rows.map((r) => r.episode), tasks, globalStats, perEpisodeStats, locations, videoLocations };
}

/** The `videos/<key>/{chunk_index,file_index,from_timestamp,to_timestamp}` of a v3.0 episode row. */
function videoLocationsOf(
  row: Record<string, unknown>,
  keys: readonly string[],
  dir: string,
  template: string,
  where: string,
): Record<string, VideoLocation> {
  const out: Record<string, VideoLocation> = {};
  for (const key of keys) {
    const get = (c: string): unknown => row[`videos/${key}/${c}`];
    if (get("chunk_index") === undefined || get("chunk_index") === null) continue;
    const chunk = Number(get("chunk_index"));
    const file = Number(get("file_index"));
    const from = Number(get("from_timestamp"));
    const to = get("to_timestamp") === null || get("to_timestamp") === undefined ? null : Number(get("to_timestamp"));
    if (!Number.isInteger(chunk) || !Number.isInteger(file) || !Number.isFinite(from) || (to !== null && !(to >= from)))
      throw new Error(
        `${where}: bad videos/${key}/... location (chunk ${String(get("chunk_index"))}, file ${String(get("file_index"))}, from ${String(get("from_timestamp"))}, to ${String(get("to_timestamp"))})`,
      );
    out[key] = {
      file: join(dir, formatPath(template, { video_key: key, chunk_index: chunk, file_index: file })),
      fromTimestamp: from,
      toTimestamp: to,
    };
  }
  return out;
}

/** Parses `{feature: {min, max, mean, std, count, q01?...}}`, flattening nested arrays. */
function parseStatsRecord(raw: Record<string, unknown>, where: string): Record<string, FeatureStats> {
  const out: Record<string, FeatureStats> = {};
  for (const [feature, s] of Object.entries(raw)) {
    if (s === null || typeof s !== "object") throw new Error(`${where}: stats of '${feature}' must be an object`);
    out[feature] = toFeatureStats(s as Record<string, unknown>, `${where}: stats of '${feature}'`);
  }
  return out;
}

/** Parses the flattened `stats/{feature}/{stat}` columns of a v3.0 episode row. */
function parseFlatStats(
  row: Record<string, unknown>,
  columns: readonly string[],
  where: string,
): Record<string, FeatureStats> {
  const grouped: Record<string, Record<string, unknown>> = {};
  for (const c of columns) {
    const rest = c.slice("stats/".length);
    const cut = rest.lastIndexOf("/");
    if (cut <= 0) continue;
    const feature = rest.slice(0, cut);
    (grouped[feature] ??= {})[rest.slice(cut + 1)] = row[c];
  }
  const out: Record<string, FeatureStats> = {};
  for (const [feature, s] of Object.entries(grouped)) {
    if (["min", "max", "mean", "std"].some((k) => s[k] === null || s[k] === undefined)) continue;
    out[feature] = toFeatureStats(s, `${where}: stats of '${feature}'`);
  }
  return out;
}

function toFeatureStats(s: Record<string, unknown>, where: string): FeatureStats {
  const vec = (key: string): number[] => {
    const flat: number[] = [];
    const visit = (v: unknown): void => {
      if (Array.isArray(v)) for (const x of v) visit(x);
      else if (typeof v === "number" || typeof v === "bigint") flat.push(Number(v));
      else throw new Error(`${where}: '${key}' holds ${JSON.stringify(v)}, not a number`);
    };
    visit(s[key]);
    return flat;
  };
  for (const key of ["min", "max", "mean", "std"])
    if (s[key] === undefined) throw new Error(`${where}: '${key}' missing`);
  const count = vec("count")[0];
  const out: FeatureStats = { min: vec("min"), max: vec("max"), mean: vec("mean"), std: vec("std"), count: count ?? 0 };
  for (const q of ["q01", "q10", "q50", "q90", "q99"] as const)
    if (s[q] !== undefined && s[q] !== null) out[q] = vec(q);
  return out;
}

/** A JSON object (LeRobot metadata files and JSON Lines rows); fields are checked where they are used. */
const JsonObjectSchema = z.record(z.string(), z.unknown());

/** Reads a metadata JSON file that must hold an object; errors name the file. */
function readJson(path: string): Promise<Record<string, unknown>> {
  return readJsonFile(path, JsonObjectSchema, { missing: "not a LeRobot dataset?" });
}

/** Reads a metadata JSON Lines file, one object a line; errors name the file and line. */
function readJsonl(path: string): Promise<Record<string, unknown>[]> {
  return readJsonLinesFile(path, JsonObjectSchema);
}

async function listParquet(dir: string): Promise<string[]> {
  let chunks: string[];
  try {
    chunks = (await readdir(dir)).filter((c) => c.startsWith("chunk-")).sort();
  } catch (err) {
    throw new Error(`${dir}: cannot list episode metadata`, { cause: err });
  }
  const out: string[] = [];
  for (const c of chunks) {
    const files = (await readdir(join(dir, c))).filter((f) => f.endsWith(".parquet") && !f.startsWith(".")).sort();
    out.push(...files.map((f) => join(dir, c, f)));
  }
  return out;
}

function bigintJson(_key: string, v: unknown): unknown {
  return typeof v === "bigint" ? v.toString() : v;
}
