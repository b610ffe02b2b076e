/**
 * Writer of LeRobot v3.0 datasets, used by the simulator's recorder and by the converter:
 *
 * ```ts
 * const w = await LeRobotWriter.create(dir, { fps: 30, robotType: "panda", features: { action: { dtype: "float32",
 * shape: [7] } } });
 * await w.addEpisode({ task: "pick", frames: { action: new Float32Array(length * 7) }, length });
 * await w.finish();
 * ```
 *
 * Layout (as LeRobot 3.0 writes it): `data/chunk-XXX/file-YYY.parquet` hold whole episodes back to
 * back, one list column per feature plus `timestamp` (float32) and `frame_index`, `episode_index`,
 * `index`, `task_index` (int64); a new file starts when the next episode would take the current one
 * past `dataFilesSizeInMb` (in-memory size, LeRobot's rule). `finish()` writes
 * `meta/episodes/chunk-000/file-000.parquet` (one row per episode with its file, frame range and
 * flattened `stats/{feature}/{stat}`), `meta/tasks.parquet`, `meta/stats.json` and, last,
 * `meta/info.json`. Every file is written atomically. Statistics come from `datasets/stats`
 * (exact min/max/mean/std; histogram quantiles, error <= 0.05% of the range).
 *
 * Camera features (`dtype: "video"`, shape `[H, W, 3]`, frames uint8 RGB) are not parquet columns:
 * each camera's frames stream into one ffmpeg encoder per file,
 * `videos/<key>/chunk-XXX/file-YYY.mp4` (AV1 through libsvtav1 with LeRobot's yuv420p, GOP 2,
 * CRF 30, or H.264), episodes back to back, so frame i of an episode is at `from_timestamp + i/fps`;
 * a new file starts once one reaches `videoFilesSizeInMb`. The episode rows get
 * `videos/<key>/{chunk_index,file_index,from_timestamp,to_timestamp}`, info.json the feature's
 * `info` (`video.codec`, `video.pix_fmt`, ...), and the statistics are per channel on [0, 1]
 * (shape `[3, 1, 1]`), as LeRobot computes them.
 *
 * For live recording, `durable: true` puts every episode on disk as `addEpisode` returns (its own
 * data file, then the metadata), so a killed recorder keeps every finished episode, and
 * {@link LeRobotWriter.resume} appends to an existing v3.0 dataset.
 *
 * Callers must wait for each method's promise before calling another.
 */
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic, writeJsonAtomic } from "../../policy/io/atomic.ts";
import type { FeatureStats } from "../../policy/normalize.ts";
import { QUANTILE_KEYS } from "../stats/aggregate.ts";
import { RunningStats } from "../stats/running.ts";
import { VideoEncoder, probeVideo } from "../video/ffmpeg.ts";
import type { VideoCodec } from "../video/ffmpeg.ts";
import type { FeatureInfo } from "./layout.ts";
import {
  DEFAULT_CHUNK_SIZE,
  DEFAULT_DATA_FILE_SIZE_IN_MB,
  DEFAULT_FEATURES,
  DEFAULT_VIDEO_FILE_SIZE_IN_MB,
  V3_DATA_PATH,
  V3_EPISODES_PATH,
  V3_VIDEO_PATH,
  formatPath,
  frameSize,
} from "./layout.ts";
import type { LeafType, OutColumn } from "./parquet.ts";
import { ParquetFile } from "./parquet.ts";
import { openLeRobot } from "./reader.ts";
import { encodeParquet, nestedRows } from "./parquet.ts";

/** Dtypes the writer stores: numeric parquet columns, or "video" (a camera, uint8 RGB `[H, W, 3]` frames). */
export type WriterDtype = "float32" | "float64" | "int64" | "video";

/** A feature to write: dtype, per-frame shape (`[D]`, `[N, D]`, scalars `[1]`; video `[H, W, 3]`) and optional names. */
export interface WriterFeature {
  dtype: WriterDtype;
  shape: number[];
  names?: string[] | null;
}

/** Options of {@link LeRobotWriter.create}. */
export interface LeRobotWriterOptions {
  /** Frames per second (Hz); timestamps default to `frame_index / fps` seconds. */
  fps: number;
  robotType?: string | null;
  /** Features by name (no '/' in names); the default per-frame columns are added. */
  features: Record<string, WriterFeature>;
  /** Data file size limit in MB (default 100, LeRobot's). */
  dataFilesSizeInMb?: number;
  /** Files per chunk folder (default 1000). */
  chunksSize?: number;
  /** Name of the task string column in tasks.parquet (pandas index): "task" (default) or "__index_level_0__". */
  tasksIndexColumn?: "task" | "__index_level_0__";
  /** Histogram bins of the quantile statistics (default 8192). */
  statsBins?: number;
  /** Video codec of camera features: "av1" (libsvtav1, LeRobot's default) or "h264" (libx264). */
  vcodec?: VideoCodec;
  /** Video file size limit in MB (default 500, LeRobot's). */
  videoFilesSizeInMb?: number;
  /**
   * Every episode is on disk when {@link LeRobotWriter.addEpisode} resolves (live recording): each
   * episode gets its own data file (and video files), then the metadata is rewritten, every file
   * atomically, the episode metadata last but for stats.json and info.json. A process killed at any
   * moment leaves a dataset whose metadata lists exactly the episodes completed (a data file
   * written just before the kill and not yet listed is removed by {@link LeRobotWriter.resume}).
   */
  durable?: boolean;
}

/** One episode to add: `frames[feature]` is flat `[length, ...shape]`. */
export interface EpisodeInput {
  /** The episode's task (natural-language instruction). */
  task: string;
  /** Per-frame tasks overriding `task` (length `length`), for episodes with several tasks. */
  frameTasks?: readonly string[];
  frames: Record<string, ArrayLike<number> | BigInt64Array>;
  length: number;
  /** Per-frame timestamps in seconds (stored as float32); default `frame_index / fps`. */
  timestamps?: ArrayLike<number>;
}

/** What {@link LeRobotWriter.addEpisode} returns. */
export interface AddedEpisode {
  index: number;
  /** Global index of the first frame. */
  from: number;
  /** One past the last frame. */
  to: number;
  /** Data file (relative to the dataset folder) that will hold the episode. */
  dataFile: string;
}

/** What {@link LeRobotWriter.finish} returns. */
export interface FinishedDataset {
  dir: string;
  episodes: number;
  frames: number;
  tasks: number;
  dataFiles: string[];
  /** Video files written (relative to the dataset folder). */
  videoFiles: string[];
}

type Stored = Float32Array | Float64Array | BigInt64Array;

/** The open video file of one camera. */
interface VideoState {
  chunk: number;
  file: number;
  /** Frames already in the file. */
  frames: number;
  encoder: VideoEncoder;
  /** Where ffmpeg writes until the file is complete (then renamed to `rel`). */
  tmp: string;
  rel: string;
}

/** Where an episode's frames of one camera went. */
interface VideoMeta {
  chunk: number;
  file: number;
  from: number;
  to: number;
}

interface PendingEpisode {
  index: number;
  from: number;
  length: number;
  frames: Record<string, Stored>;
  timestamps: Float32Array;
  taskIndex: BigInt64Array;
}

interface EpisodeMeta {
  index: number;
  tasks: string[];
  length: number;
  chunk: number;
  file: number;
  from: number;
  to: number;
  stats: Record<string, FeatureStats>;
  videos: Record<string, VideoMeta>;
}

/** Streams episodes into a new LeRobot v3.0 dataset folder. */
export class LeRobotWriter {
  /** The dataset folder. */
  readonly dir: string;
  private readonly fps: number;
  private readonly robotType: string | null;
  private readonly features: Record<string, WriterFeature>;
  private readonly limitBytes: number;
  private readonly limitMb: number;
  private readonly chunksSize: number;
  private readonly tasksIndexColumn: "task" | "__index_level_0__";
  private readonly statsBins: number;
  private readonly bytesPerFrame: number;
  private readonly taskIndex = new Map<string, number>();
  private readonly episodesMeta: EpisodeMeta[] = [];
  private readonly global: Record<string, RunningStats> = {};
  private pending: PendingEpisode[] = [];
  private pendingBytes = 0;
  private chunk = 0;
  private file = 0;
  private frames = 0;
  private readonly dataFiles: string[] = [];
  private state: "open" | "busy" | "finished" = "open";
  private readonly vcodec: VideoCodec;
  private readonly videoLimitMb: number;
  private readonly videos = new Map<string, VideoState>();
  private readonly videoFiles: string[] = [];
  private readonly videoProbe = new Map<string, { codec: string; pixFmt: string }>();
  private readonly durable: boolean;
  private resumedInfo?: { episodes: number; frames: number; removedFiles: string[] };

  private constructor(dir: string, opts: LeRobotWriterOptions) {
    this.dir = dir;
    this.fps = opts.fps;
    this.robotType = opts.robotType ?? null;
    this.features = opts.features;
    this.limitMb = opts.dataFilesSizeInMb ?? DEFAULT_DATA_FILE_SIZE_IN_MB;
    this.limitBytes = this.limitMb * 1024 * 1024;
    this.chunksSize = opts.chunksSize ?? DEFAULT_CHUNK_SIZE;
    this.tasksIndexColumn = opts.tasksIndexColumn ?? "task";
    this.statsBins = opts.statsBins ?? 8192;
    this.vcodec = opts.vcodec ?? "av1";
    this.videoLimitMb = opts.videoFilesSizeInMb ?? DEFAULT_VIDEO_FILE_SIZE_IN_MB;
    this.durable = opts.durable ?? false;
    let bytes = 4 + 4 * 8; // timestamp + four int64 columns
    for (const f of Object.values(opts.features))
      if (f.dtype !== "video") bytes += frameSize(f.shape) * (f.dtype === "float32" ? 4 : 8);
    this.bytesPerFrame = bytes;
  }

  /**
   * Starts a dataset in `dir`, which must not exist or be empty. Throws on a bad fps, a feature
   * name with '/' or clashing with a default column, or a bad shape/dtype.
   */
  static async create(dir: string, opts: LeRobotWriterOptions): Promise<LeRobotWriter> {
    checkOptions(dir, opts);
    const entries = await folderEntries(dir);
    if (entries.length > 0) throw new Error(`LeRobotWriter ${dir}: folder exists and is not empty`);
    await mkdir(dir, { recursive: true });
    return new LeRobotWriter(dir, opts);
  }

  /**
   * Opens the LeRobot v3.0 dataset in `dir` to append episodes (a folder that does not exist, is
   * empty, or holds only the data files of a durable recording killed before its first episode
   * was listed, starts a new dataset). The dataset's fps and features (names, dtypes, shapes) must
   * equal `opts`'; a mismatch is refused naming it. Existing data files are left as they are and
   * new episodes go to new files; the statistics are recomputed from the existing frames, so they
   * come out exactly as if every episode had been written in one go. Data files the metadata does
   * not list (written by a durable writer killed before it listed them) are removed and named in
   * {@link resumed}. Datasets with video features cannot be resumed yet.
   */
  static async resume(dir: string, opts: LeRobotWriterOptions): Promise<LeRobotWriter> {
    checkOptions(dir, opts);
    const entries = await folderEntries(dir);
    const hasInfo = await stat(join(dir, "meta/info.json")).then(
      () => true,
      () => false,
    );
    if (!hasInfo) {
      const foreign = entries.filter((e) => !["data", "meta", "videos"].includes(e));
      if (foreign.length > 0)
        throw new Error(
          `LeRobotWriter ${dir}: cannot resume: no meta/info.json, and the folder holds ${foreign.join(", ")} (not a dataset being recorded)`,
        );
      // a durable recording killed before its first episode was listed: nothing to keep
      const removed = await listFiles(dir, ["data", "videos"]);
      for (const e of entries) await rm(join(dir, e), { recursive: true, force: true });
      const w = await LeRobotWriter.create(dir, opts);
      w.resumedInfo = { episodes: 0, frames: 0, removedFiles: removed };
      return w;
    }
    const ds = await openLeRobot(dir);
    try {
      const where = `LeRobotWriter ${dir}: cannot resume`;
      if (!ds.codebaseVersion.startsWith("v3."))
        throw new Error(`${where}: it is LeRobot ${ds.codebaseVersion}; only v3.0 datasets can be appended to`);
      if (Math.abs(ds.fps - opts.fps) > 1e-9)
        throw new Error(`${where}: it is recorded at ${ds.fps} fps, not ${opts.fps}`);
      const theirs = Object.keys(ds.features).filter((k) => !(k in DEFAULT_FEATURES));
      const ours = Object.keys(opts.features);
      const missing = ours.filter((k) => !theirs.includes(k));
      const extra = theirs.filter((k) => !ours.includes(k));
      if (missing.length > 0 || extra.length > 0)
        throw new Error(
          `${where}: its features differ${missing.length ? `; not in the dataset: ${missing.join(", ")}` : ""}${extra.length ? `; only in the dataset: ${extra.join(", ")}` : ""}`,
        );
      for (const k of ours) {
        const a = opts.features[k]!;
        const b = ds.features[k]!;
        if (a.dtype === "video" || b.dtype === "video")
          throw new Error(`${where}: feature '${k}' is a video; datasets with videos cannot be appended to yet`);
        if (a.dtype !== b.dtype || a.shape.join(",") !== b.shape.join(","))
          throw new Error(
            `${where}: feature '${k}' is ${b.dtype} [${b.shape.join(", ")}] in the dataset, ${a.dtype} [${a.shape.join(", ")}] here`,
          );
        if (a.names && b.names && a.names.join(",") !== b.names.join(","))
          throw new Error(
            `${where}: feature '${k}' names ${b.names.join(", ")} in the dataset, ${a.names.join(", ")} here`,
          );
      }
      const w = new LeRobotWriter(dir, opts);
      ds.tasks.forEach((t, k) => w.taskIndex.set(t, k));
      const fileOf = await episodeFiles(dir);
      const numeric = ours.filter((k) => opts.features[k]!.dtype !== "video");
      for (const [pos, ep] of ds.episodes.entries()) {
        if (ep.index !== pos)
          throw new Error(`${where}: episode ${pos} has index ${ep.index} (episodes must be numbered 0, 1, 2, ...)`);
        const loc = fileOf.get(ep.index);
        if (!loc) throw new Error(`${where}: episode ${ep.index} has no data/chunk_index or data/file_index`);
        const cols = await ds.readEpisode(ep.index, [...numeric, "timestamp", "task_index"]);
        const later: (() => void)[] = [];
        const stats: Record<string, FeatureStats> = {};
        const at = `LeRobotWriter ${dir}: episode ${ep.index}`;
        for (const k of numeric) {
          const c = cols[k]!;
          stats[k] = w.accumulate(k, frameSize(opts.features[k]!.shape), asNumbers(c), at, later);
        }
        const taskIndex = cols.task_index as BigInt64Array;
        w.defaultStats(stats, ep.index, ep.from, asNumbers(cols.timestamp!), taskIndex, at, later);
        for (const update of later) update();
        w.episodesMeta.push({
          index: ep.index,
          tasks: [...ep.tasks],
          length: ep.length,
          ...loc,
          from: ep.from,
          to: ep.to,
          stats,
          videos: {},
        });
        w.frames += ep.length;
      }
      const listed = [...new Set(w.episodesMeta.map((e) => `${e.chunk}/${e.file}`))].map(
        (k) => k.split("/").map(Number) as [number, number],
      );
      listed.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      for (const [chunk, file] of listed)
        w.dataFiles.push(formatPath(V3_DATA_PATH, { chunk_index: chunk, file_index: file }));
      const last = listed[listed.length - 1];
      if (last) {
        [w.chunk, w.file] = last;
        w.advanceFile();
      }
      const removed = (await listFiles(dir, ["data"])).filter((f) => !w.dataFiles.includes(f));
      for (const f of removed) await rm(join(dir, f), { force: true });
      w.resumedInfo = { episodes: ds.episodes.length, frames: w.frames, removedFiles: removed };
      return w;
    } finally {
      ds.close();
    }
  }

  /** After {@link resume}: the episodes and frames found, and the unlisted data files removed (relative paths). */
  get resumed(): { episodes: number; frames: number; removedFiles: string[] } | undefined {
    return this.resumedInfo;
  }

  /** Episodes added so far. */
  get episodeCount(): number {
    return this.episodesMeta.length;
  }

  /** Frames added so far. */
  get frameCount(): number {
    return this.frames;
  }

  /**
   * Adds one episode (copied; the caller may reuse its arrays). May write the previous data file
   * when this episode would overflow it. Throws naming the episode and feature on a missing,
   * extra or wrongly sized feature, or a NaN/infinite value.
   */
  async addEpisode(ep: EpisodeInput): Promise<AddedEpisode> {
    this.enter("addEpisode");
    try {
      return await this.add(ep);
    } finally {
      this.state = "open";
    }
  }

  /** Writes the last data file and the metadata; the dataset is complete once this resolves. */
  async finish(): Promise<FinishedDataset> {
    this.enter("finish");
    try {
      if (this.episodesMeta.length === 0) throw new Error(`LeRobotWriter ${this.dir}: no episodes added`);
      await this.flushData();
      for (const key of [...this.videos.keys()]) await this.closeVideo(key);
      await this.writeMeta();
      this.state = "finished";
      return {
        dir: this.dir,
        episodes: this.episodesMeta.length,
        frames: this.frames,
        tasks: this.taskIndex.size,
        dataFiles: [...this.dataFiles],
        videoFiles: [...this.videoFiles],
      };
    } finally {
      if (this.state === "busy") this.state = "open";
    }
  }

  private enter(method: string): void {
    if (this.state === "finished") throw new Error(`LeRobotWriter ${this.dir}: ${method} after finish()`);
    if (this.state === "busy")
      throw new Error(`LeRobotWriter ${this.dir}: ${method} called before the previous call completed`);
    this.state = "busy";
  }

  private async add(ep: EpisodeInput): Promise<AddedEpisode> {
    const index = this.episodesMeta.length;
    const where = `LeRobotWriter ${this.dir}: episode ${index}`;
    const length = ep.length;
    if (!Number.isInteger(length) || length <= 0)
      throw new RangeError(`${where}: length must be a positive integer, got ${length}`);
    for (const name of Object.keys(ep.frames))
      if (!(name in this.features)) throw new Error(`${where}: feature '${name}' was not declared`);
    if (typeof ep.task !== "string") throw new TypeError(`${where}: task must be a string`);
    if (ep.frameTasks && ep.frameTasks.length !== length)
      throw new Error(`${where}: frameTasks has ${ep.frameTasks.length} entries for ${length} frames`);
    if (ep.timestamps && ep.timestamps.length !== length)
      throw new Error(`${where}: timestamps has ${ep.timestamps.length} entries for ${length} frames`);

    const later: (() => void)[] = [];
    const frames: Record<string, Stored> = {};
    const epStats: Record<string, FeatureStats> = {};
    for (const [name, f] of Object.entries(this.features)) {
      const src = ep.frames[name];
      const per = frameSize(f.shape);
      if (!src) throw new Error(`${where}: feature '${name}' missing`);
      if (src.length !== length * per) {
        throw new Error(
          `${where}: feature '${name}' has ${src.length} values, ${length} frames of shape [${f.shape.join(", ")}] need ${length * per}`,
        );
      }
      if (f.dtype === "video") {
        if (!(src instanceof Uint8Array))
          throw new TypeError(`${where}: video feature '${name}' needs uint8 RGB frames (a Uint8Array)`);
        epStats[name] = this.accumulateImages(name, src, where, later);
        continue;
      }
      const stored = toStored(src, f.dtype);
      frames[name] = stored;
      const asNumbers = stored instanceof BigInt64Array ? Float64Array.from(stored, Number) : stored;
      epStats[name] = this.accumulate(name, per, asNumbers, where, later);
    }
    const videoKeys = Object.keys(this.features).filter((k) => this.features[k]!.dtype === "video");
    if (videoKeys.length > 0 && ep.timestamps) {
      for (let i = 0; i < length; i++)
        if (Math.abs(ep.timestamps[i]! - i / this.fps) > 1e-4)
          throw new Error(
            `${where}: timestamp ${ep.timestamps[i]} of frame ${i} is not frame_index / fps (${i / this.fps}); a dataset with videos needs evenly spaced frames`,
          );
    }

    const timestamps = new Float32Array(length);
    for (let i = 0; i < length; i++) timestamps[i] = ep.timestamps ? ep.timestamps[i]! : i / this.fps;
    const taskIndex = new BigInt64Array(length);
    const epTasks: string[] = [];
    for (let i = 0; i < length; i++) {
      const t = ep.frameTasks ? ep.frameTasks[i]! : ep.task;
      let k = this.taskIndex.get(t);
      if (k === undefined) {
        k = this.taskIndex.size;
        this.taskIndex.set(t, k);
      }
      if (!epTasks.includes(t)) epTasks.push(t);
      taskIndex[i] = BigInt(k);
    }
    const from = this.frames;
    this.defaultStats(epStats, index, from, timestamps, taskIndex, where, later);

    for (const update of later) update(); // only once the whole episode is valid
    const videos: Record<string, VideoMeta> = {};
    for (const key of videoKeys) videos[key] = await this.writeVideo(key, ep.frames[key] as Uint8Array, length);
    const bytes = length * this.bytesPerFrame;
    if (this.pending.length > 0 && this.pendingBytes + bytes >= this.limitBytes) {
      await this.flushData();
      this.advanceFile();
    }
    this.pending.push({ index, from, length, frames, timestamps, taskIndex });
    this.pendingBytes += bytes;
    this.frames += length;
    this.episodesMeta.push({
      index,
      tasks: epTasks,
      length,
      chunk: this.chunk,
      file: this.file,
      from,
      to: from + length,
      stats: epStats,
      videos,
    });
    const dataFile = formatPath(V3_DATA_PATH, { chunk_index: this.chunk, file_index: this.file });
    if (this.durable) {
      // this episode's own files, then the metadata listing it
      for (const key of [...this.videos.keys()]) await this.closeVideo(key);
      await this.flushData();
      this.advanceFile();
      await this.writeMeta();
    }
    return {
      index,
      from,
      to: from + length,
      dataFile,
    };
  }

  /** The statistics of the default columns of one episode (into `epStats`). */
  private defaultStats(
    epStats: Record<string, FeatureStats>,
    index: number,
    from: number,
    timestamps: ArrayLike<number>,
    taskIndex: BigInt64Array,
    where: string,
    later: (() => void)[],
  ): void {
    const length = timestamps.length;
    epStats.timestamp = this.accumulate("timestamp", 1, timestamps, where, later);
    const frameIndex = Float64Array.from({ length }, (_, i) => i);
    epStats.frame_index = this.accumulate("frame_index", 1, frameIndex, where, later);
    epStats.episode_index = this.accumulate("episode_index", 1, new Float64Array(length).fill(index), where, later);
    epStats.index = this.accumulate(
      "index",
      1,
      Float64Array.from(frameIndex, (i) => from + i),
      where,
      later,
    );
    epStats.task_index = this.accumulate("task_index", 1, Float64Array.from(taskIndex, Number), where, later);
  }

  /** Moves to the next data file (the next chunk folder after `chunksSize` files). */
  private advanceFile(): void {
    [this.chunk, this.file] = this.file === this.chunksSize - 1 ? [this.chunk + 1, 0] : [this.chunk, this.file + 1];
  }

  /** Per-channel stats on [0, 1] of uint8 RGB frames (LeRobot's image statistics, shape [3, 1, 1]). */
  private accumulateImages(name: string, rgb: Uint8Array, where: string, later: (() => void)[]): FeatureStats {
    // every 4th pixel: exact enough for normalisation, a quarter of the work
    const n = Math.floor(rgb.length / 12);
    const values = new Float32Array(3 * n);
    for (let i = 0; i < n; i++) {
      values[3 * i] = rgb[12 * i]! / 255;
      values[3 * i + 1] = rgb[12 * i + 1]! / 255;
      values[3 * i + 2] = rgb[12 * i + 2]! / 255;
    }
    return this.accumulate(name, 3, values, where, later);
  }

  /** Streams one episode's frames of a camera into its open video file (starting one when needed). */
  private async writeVideo(key: string, rgb: Uint8Array, length: number): Promise<VideoMeta> {
    const f = this.features[key]!;
    const [height, width] = f.shape as [number, number, number];
    let v = this.videos.get(key);
    if (!v) {
      const last = this.videoFiles.filter((p) => p.startsWith(`videos/${key}/`)).length;
      const chunk = Math.floor(last / this.chunksSize);
      const file = last % this.chunksSize;
      const rel = formatPath(V3_VIDEO_PATH, { video_key: key, chunk_index: chunk, file_index: file });
      const tmp = join(this.dir, `${rel}.partial`);
      await mkdir(join(tmp, ".."), { recursive: true });
      const encoder = VideoEncoder.start(tmp, { width, height, fps: this.fps, codec: this.vcodec });
      v = { chunk, file, frames: 0, encoder, tmp, rel };
      this.videos.set(key, v);
    }
    await v.encoder.write(rgb);
    const meta: VideoMeta = {
      chunk: v.chunk,
      file: v.file,
      from: v.frames / this.fps,
      to: (v.frames + length) / this.fps,
    };
    v.frames += length;
    let size = 0;
    try {
      size = (await stat(v.tmp)).size;
    } catch {
      // ffmpeg may not have flushed anything yet
    }
    if (size >= this.videoLimitMb * 1024 * 1024) await this.closeVideo(key);
    return meta;
  }

  /** Finishes a camera's open video file and moves it into place. */
  private async closeVideo(key: string): Promise<void> {
    const v = this.videos.get(key);
    if (!v) return;
    this.videos.delete(key);
    await v.encoder.close();
    await rename(v.tmp, join(this.dir, v.rel));
    this.videoFiles.push(v.rel);
    if (!this.videoProbe.has(key)) {
      const p = await probeVideo(join(this.dir, v.rel));
      this.videoProbe.set(key, { codec: p.codec, pixFmt: p.pixFmt });
    }
  }

  /** Stops every encoder and removes partial video files (after a failed recording). */
  async abort(): Promise<void> {
    for (const [key, v] of [...this.videos]) {
      this.videos.delete(key);
      await v.encoder.abort();
      await rm(v.tmp, { force: true });
    }
    this.state = "finished";
  }

  /** Per-episode stats of one feature (validating it); `later` collects the global update. */
  private accumulate(
    name: string,
    dim: number,
    values: ArrayLike<number>,
    where: string,
    later: (() => void)[],
  ): FeatureStats {
    const local = new RunningStats(dim, { bins: this.statsBins, what: `${where}: feature '${name}'` });
    local.update(values);
    later.push(() =>
      (this.global[name] ??= new RunningStats(dim, { bins: this.statsBins, what: `feature '${name}'` })).update(values),
    );
    return local.result();
  }

  private async flushData(): Promise<void> {
    if (this.pending.length === 0) return;
    const eps = this.pending;
    const rows = eps.reduce((s, e) => s + e.length, 0);
    // the episode holding each row range, found by walking the pending list
    const gather = <T extends Stored>(pick: (e: PendingEpisode) => T, per: number, make: (n: number) => T) => {
      const out = make(rows * per);
      let at = 0;
      for (const e of eps) {
        out.set(pick(e) as never, at);
        at += e.length * per;
      }
      return out;
    };
    const columns: OutColumn[] = [];
    for (const [name, f] of Object.entries(this.features)) {
      if (f.dtype === "video") continue;
      const per = frameSize(f.shape);
      const make = (n: number): Stored =>
        f.dtype === "float32"
          ? new Float32Array(n)
          : f.dtype === "float64"
            ? new Float64Array(n)
            : new BigInt64Array(n);
      const data = gather((e) => e.frames[name]!, per, make);
      const scalar = f.shape.length === 1 && f.shape[0] === 1;
      const type: LeafType = f.dtype === "float32" ? "FLOAT" : f.dtype === "float64" ? "DOUBLE" : "INT64";
      columns.push({
        name,
        type,
        depth: scalar ? 0 : f.shape.length,
        slice: scalar ? (s, e) => data.subarray(s, e) : (s, e) => nestedRows(data, f.shape, s, e),
      });
    }
    const timestamps = gather(
      (e) => e.timestamps,
      1,
      (n) => new Float32Array(n),
    );
    const taskIdx = gather(
      (e) => e.taskIndex,
      1,
      (n) => new BigInt64Array(n),
    );
    const frameIndex = new BigInt64Array(rows);
    const episodeIndex = new BigInt64Array(rows);
    const globalIndex = new BigInt64Array(rows);
    let at = 0;
    for (const e of eps) {
      for (let i = 0; i < e.length; i++, at++) {
        frameIndex[at] = BigInt(i);
        episodeIndex[at] = BigInt(e.index);
        globalIndex[at] = BigInt(e.from + i);
      }
    }
    const int64 = (name: string, data: BigInt64Array): OutColumn => ({
      name,
      type: "INT64",
      depth: 0,
      slice: (s, e) => data.subarray(s, e),
    });
    columns.push({ name: "timestamp", type: "FLOAT", depth: 0, slice: (s, e) => timestamps.subarray(s, e) });
    columns.push(
      int64("frame_index", frameIndex),
      int64("episode_index", episodeIndex),
      int64("index", globalIndex),
      int64("task_index", taskIdx),
    );
    const rel = formatPath(V3_DATA_PATH, { chunk_index: this.chunk, file_index: this.file });
    const bytes = encodeParquet(columns, rows, {
      keyValue: { huggingface: JSON.stringify({ info: { features: this.hfFeatures() } }) },
    });
    await writeFileAtomic(join(this.dir, rel), bytes);
    this.dataFiles.push(rel);
    this.pending = [];
    this.pendingBytes = 0;
  }

  /** The `datasets` library's description of the data columns (footer key "huggingface"). */
  private hfFeatures(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const all: Record<string, { dtype: string; shape: number[] }> = { ...this.features, ...DEFAULT_FEATURES };
    for (const [name, f] of Object.entries(all)) {
      if (f.dtype === "video") continue; // in the mp4 files, not in the parquet data
      let t: Record<string, unknown> = { dtype: f.dtype, _type: "Value" };
      if (!(f.shape.length === 1 && f.shape[0] === 1)) {
        for (let d = f.shape.length - 1; d >= 0; d--) t = { feature: t, length: f.shape[d], _type: "Sequence" };
      }
      out[name] = t;
    }
    return out;
  }

  private allFeatures(): Record<string, FeatureInfo> {
    const out: Record<string, FeatureInfo> = {};
    for (const [name, f] of Object.entries(this.features))
      out[name] =
        f.dtype === "video"
          ? { dtype: "video", shape: [...f.shape], names: ["height", "width", "channels"] }
          : { dtype: f.dtype, shape: [...f.shape], names: f.names ?? null };
    for (const [name, f] of Object.entries(DEFAULT_FEATURES)) out[name] = { ...f, shape: [...f.shape] };
    return out;
  }

  /** info.json's features: video features get LeRobot's `info` block (codec, pixel format, fps...). */
  private infoFeatures(features: Record<string, FeatureInfo>): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [name, f] of Object.entries(features)) {
      if (f.dtype !== "video") {
        out[name] = f;
        continue;
      }
      const probe = this.videoProbe.get(name);
      out[name] = {
        ...f,
        info: {
          "video.height": f.shape[0],
          "video.width": f.shape[1],
          "video.codec": probe?.codec ?? this.vcodec,
          "video.pix_fmt": probe?.pixFmt ?? "yuv420p",
          "video.is_depth_map": false,
          "video.fps": this.fps,
          "video.channels": 3,
          has_audio: false,
        },
      };
    }
    return out;
  }

  private async writeMeta(): Promise<void> {
    const features = this.allFeatures();
    const statNames = Object.keys(features);
    // statistics shapes: per channel [3, 1, 1] for cameras (LeRobot's), the feature shape otherwise
    const shapeOf = (name: string): number[] => (features[name]!.dtype === "video" ? [3, 1, 1] : features[name]!.shape);
    const videoKeys = statNames.filter((k) => features[k]!.dtype === "video");
    // meta/episodes/chunk-000/file-000.parquet
    const eps = this.episodesMeta;
    const n = eps.length;
    const intCol = (name: string, pick: (e: EpisodeMeta) => number): OutColumn => {
      const data = BigInt64Array.from(eps, (e) => BigInt(pick(e)));
      return { name, type: "INT64", depth: 0, slice: (s, e) => data.subarray(s, e) };
    };
    const columns: OutColumn[] = [
      intCol("episode_index", (e) => e.index),
      { name: "tasks", type: "STRING", depth: 1, slice: (s, e) => eps.slice(s, e).map((m) => m.tasks) },
      intCol("length", (e) => e.length),
      intCol("data/chunk_index", (e) => e.chunk),
      intCol("data/file_index", (e) => e.file),
      intCol("dataset_from_index", (e) => e.from),
      intCol("dataset_to_index", (e) => e.to),
      intCol("meta/episodes/chunk_index", () => 0),
      intCol("meta/episodes/file_index", () => 0),
    ];
    const dblCol = (name: string, pick: (e: EpisodeMeta) => number): OutColumn => {
      const data = Float64Array.from(eps, pick);
      return { name, type: "DOUBLE", depth: 0, slice: (s, e) => data.subarray(s, e) };
    };
    for (const key of videoKeys) {
      columns.push(
        intCol(`videos/${key}/chunk_index`, (e) => e.videos[key]!.chunk),
        intCol(`videos/${key}/file_index`, (e) => e.videos[key]!.file),
        dblCol(`videos/${key}/from_timestamp`, (e) => e.videos[key]!.from),
        dblCol(`videos/${key}/to_timestamp`, (e) => e.videos[key]!.to),
      );
    }
    for (const name of statNames) {
      const statShape = shapeOf(name);
      for (const stat of ["min", "max", "mean", "std", ...QUANTILE_KEYS] as const) {
        columns.push({
          name: `stats/${name}/${stat}`,
          type: "DOUBLE",
          depth: statShape.length,
          slice: (s, e) => eps.slice(s, e).map((m) => reshape(m.stats[name]![stat]!, statShape)),
        });
      }
      columns.push({
        name: `stats/${name}/count`,
        type: "INT64",
        depth: 1,
        slice: (s, e) => eps.slice(s, e).map((m) => [BigInt(m.stats[name]!.count)]),
      });
    }
    // meta/tasks.parquet: task_index plus the task string as the pandas index
    const tasks = [...this.taskIndex.entries()].sort((a, b) => a[1] - b[1]);
    const col = this.tasksIndexColumn;
    const taskIdx = BigInt64Array.from(tasks, ([, k]) => BigInt(k));
    const pandas = {
      index_columns: [col],
      column_indexes: [
        { name: null, field_name: null, pandas_type: "unicode", numpy_type: "object", metadata: { encoding: "UTF-8" } },
      ],
      columns: [
        { name: "task_index", field_name: "task_index", pandas_type: "int64", numpy_type: "int64", metadata: null },
        {
          name: col === "task" ? "task" : null,
          field_name: col,
          pandas_type: "unicode",
          numpy_type: "object",
          metadata: null,
        },
      ],
      creator: { library: "pyarrow", version: "21.0.0" },
      pandas_version: "2.2.3",
    };
    const taskColumns: OutColumn[] = [
      { name: "task_index", type: "INT64", depth: 0, slice: (s, e) => taskIdx.subarray(s, e) },
      { name: col, type: "STRING", depth: 0, slice: (s, e) => tasks.slice(s, e).map(([t]) => t) },
    ];
    await writeFileAtomic(
      join(this.dir, "meta/tasks.parquet"),
      encodeParquet(taskColumns, tasks.length, { keyValue: { pandas: JSON.stringify(pandas) } }),
    );

    await writeFileAtomic(
      join(this.dir, formatPath(V3_EPISODES_PATH, { chunk_index: 0, file_index: 0 })),
      encodeParquet(columns, n),
    );

    // meta/stats.json
    const stats: Record<string, Record<string, unknown>> = {};
    for (const name of statNames) {
      const s = this.global[name]!.result();
      const shape = shapeOf(name);
      const entry: Record<string, unknown> = {};
      for (const stat of ["min", "max", "mean", "std"] as const) entry[stat] = reshape(s[stat], shape);
      entry.count = [s.count];
      for (const q of QUANTILE_KEYS) entry[q] = reshape(s[q]!, shape);
      stats[name] = entry;
    }
    await writeJsonAtomic(join(this.dir, "meta/stats.json"), stats);

    // meta/info.json, last: its presence marks a complete dataset
    const info = {
      codebase_version: "v3.0",
      robot_type: this.robotType,
      total_episodes: n,
      total_frames: this.frames,
      total_tasks: tasks.length,
      chunks_size: this.chunksSize,
      data_files_size_in_mb: this.limitMb,
      video_files_size_in_mb: DEFAULT_VIDEO_FILE_SIZE_IN_MB,
      fps: this.fps,
      splits: { train: `0:${n}` },
      data_path: V3_DATA_PATH,
      video_path: videoKeys.length > 0 ? V3_VIDEO_PATH : null,
      features: this.infoFeatures(features),
    };
    await writeJsonAtomic(join(this.dir, "meta/info.json"), info);
  }
}

/** Copies `src` into the typed array of `dtype` (a numeric dtype). */
function toStored(src: ArrayLike<number> | BigInt64Array, dtype: Exclude<WriterDtype, "video">): Stored {
  if (dtype === "int64") {
    if (src instanceof BigInt64Array) return src.slice();
    const out = new BigInt64Array(src.length);
    for (let i = 0; i < src.length; i++) {
      const v = src[i]!;
      if (!Number.isInteger(v)) throw new TypeError(`int64 feature value ${v} at ${i} is not an integer`);
      out[i] = BigInt(v);
    }
    return out;
  }
  const vals: ArrayLike<number> = src instanceof BigInt64Array ? Array.from(src, Number) : src;
  return dtype === "float32" ? Float32Array.from(vals) : Float64Array.from(vals);
}

/** A flat list as nested lists of `shape` (a 1-D shape leaves it flat). */
function reshape(flat: readonly number[], shape: readonly number[]): unknown {
  if (shape.length <= 1) return [...flat];
  return nestedRows(flat, shape, 0, 1)[0];
}

/** Throws on a bad fps, a feature name with '/' or clashing with a default column, or a bad shape/dtype. */
function checkOptions(dir: string, opts: LeRobotWriterOptions): void {
  if (!(opts.fps > 0)) throw new RangeError(`LeRobotWriter ${dir}: fps must be > 0, got ${opts.fps}`);
  if (opts.dataFilesSizeInMb !== undefined && !(opts.dataFilesSizeInMb > 0)) {
    throw new RangeError(`LeRobotWriter ${dir}: dataFilesSizeInMb must be > 0, got ${opts.dataFilesSizeInMb}`);
  }
  const names = Object.keys(opts.features);
  if (names.length === 0) throw new Error(`LeRobotWriter ${dir}: no features`);
  for (const [name, f] of Object.entries(opts.features)) {
    if (name.includes("/")) throw new Error(`LeRobotWriter ${dir}: feature name '${name}' contains '/'`);
    if (name in DEFAULT_FEATURES)
      throw new Error(`LeRobotWriter ${dir}: feature '${name}' is a default column, written automatically`);
    if (!["float32", "float64", "int64", "video"].includes(f.dtype))
      throw new TypeError(
        `LeRobotWriter ${dir}: feature '${name}' has dtype ${f.dtype}, need float32, float64, int64 or video`,
      );
    if (f.dtype === "video" && (f.shape.length !== 3 || f.shape[2] !== 3 || f.shape[0]! % 2 || f.shape[1]! % 2))
      throw new TypeError(
        `LeRobotWriter ${dir}: video feature '${name}' shape ${JSON.stringify(f.shape)} must be [height, width, 3] with even height and width`,
      );
    if (!Array.isArray(f.shape) || f.shape.length === 0 || !f.shape.every((s) => Number.isInteger(s) && s > 0)) {
      throw new TypeError(
        `LeRobotWriter ${dir}: feature '${name}' shape ${JSON.stringify(f.shape)} must be a list of positive integers`,
      );
    }
    if (f.names && f.dtype !== "video" && f.names.length !== frameSize(f.shape)) {
      throw new Error(
        `LeRobotWriter ${dir}: feature '${name}' has ${f.names.length} names for shape [${f.shape.join(", ")}]`,
      );
    }
  }
}

/** The entries of folder `dir` (none when it does not exist). */
async function folderEntries(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new Error(`LeRobotWriter ${dir}: cannot list the folder`, { cause: err });
  }
}

/** A numeric column as numbers (int64 through Number). */
function asNumbers(c: Float32Array | Float64Array | BigInt64Array): Float32Array | Float64Array {
  return c instanceof BigInt64Array ? Float64Array.from(c, Number) : c;
}

/** Data chunk and file of each episode, from `meta/episodes/chunk-* /file-*.parquet`. */
async function episodeFiles(dir: string): Promise<Map<number, { chunk: number; file: number }>> {
  const out = new Map<number, { chunk: number; file: number }>();
  const root = join(dir, "meta/episodes");
  for (const c of (await readdir(root)).filter((x) => x.startsWith("chunk-")).sort()) {
    for (const f of (await readdir(join(root, c))).filter((x) => x.endsWith(".parquet") && !x.startsWith("."))) {
      const pf = await ParquetFile.open(join(root, c, f));
      for (const r of await pf.readRows(["episode_index", "data/chunk_index", "data/file_index"]))
        out.set(Number(r.episode_index), { chunk: Number(r["data/chunk_index"]), file: Number(r["data/file_index"]) });
    }
  }
  return out;
}

/** Files below `dir`'s `subdirs` (relative paths, sorted), skipping hidden temporaries. */
async function listFiles(dir: string, subdirs: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(join(dir, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const r = `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(r);
      else if (!e.name.startsWith(".")) out.push(r);
    }
  };
  for (const s of subdirs) await walk(s);
  return out.sort();
}
