/**
 * `dataset embed`: one camera of a LeRobot dataset through a frozen ONNX image encoder
 * (`datasets/embed/encoder.ts`), written as a new LeRobot v3.0 dataset with a float32 embedding
 * feature that trains like any vector feature (`[D]` is one token, `[T, D]` is T tokens):
 *
 * ```ts
 * const r = await embedDataset({ dataset: "D", encoder: "siglip.onnx", camera: "observation.images.front", out: "E" });
 * // E: every numeric column of D, its task strings, and observation.embeddings.front [D] with its statistics
 * ```
 *
 * Frames come from `loadEpisodeFrames` (ffmpeg's area filter to the encoder's size, cached) and go
 * through the encoder in batches. The output keeps every non-camera numeric column bit for bit, the
 * timestamps and the tasks. Camera videos are not copied: the writer only re-encodes frames (lossy),
 * so they are left out, and `meta/embedding.json` says so, with the encoder (file, SHA-256,
 * input, output, size, mean, std and where each came from) and which source episode each output
 * episode is. Episodes without their video are refused (`missingVideo: "error"`, naming the episode
 * and the file) or skipped (`"skip"`, named in the log and the result). The output folder is built
 * aside and moved into place, so a failure leaves nothing.
 */
import { readdir } from "node:fs/promises";
import { resolve } from "node:path";
import { writeDirAtomic, writeJsonAtomic } from "../../policy/io/atomic.ts";
import { pathExists } from "../../policy/io/files.ts";
import { DEFAULT_FEATURES, isNumeric } from "../lerobot/layout.ts";
import type { ColumnArray } from "../lerobot/layout.ts";
import type { LeRobotDataset } from "../lerobot/reader.ts";
import { LeRobotWriter } from "../lerobot/writer.ts";
import type { WriterDtype, WriterFeature } from "../lerobot/writer.ts";
import { openDataset } from "../open.ts";
import { episodesWithVideo, loadEpisodeFrames } from "../video/frames.ts";
import { ImageEncoder } from "./encoder.ts";
import type { EncoderDescription, ImageSize } from "./encoder.ts";

/** The metadata file `embedDataset` adds to the output's `meta/` folder. */
export const EMBEDDING_META = "embedding.json";

/** Options of {@link embedDataset}. */
export interface EmbedOptions {
  /** The source LeRobot dataset folder (v2.1 or v3.0). */
  dataset: string;
  /** The ONNX encoder file. */
  encoder: string;
  /** The camera feature to embed (`observation.images.front`). */
  camera: string;
  /** The new dataset folder (must not exist or be empty). */
  out: string;
  /** The new feature's key (default `observation.embeddings.<camera short name>`). */
  feature?: string;
  /** Encoder input size, mean and std (each wins over the model's; see `ImageEncoder`). */
  size?: ImageSize;
  mean?: readonly number[];
  std?: readonly number[];
  /** The encoder output to read, by name. */
  output?: string;
  /** Frames per encoder call (default 64; a graph with a static batch takes its own). */
  batch?: number;
  /** An episode without its video: "error" (default) throws naming it and the file; "skip" leaves it out. */
  missingVideo?: "error" | "skip";
  /** Decoded-frame cache root (see `datasets/video/cache.ts`); `cache: false` stores nothing. */
  cacheDir?: string;
  cache?: boolean;
  /** onnxruntime intra-op threads. */
  threads?: number;
  /** Called before the first episode (0) and after each one with the frames embedded so far and the total to embed. */
  onProgress?: (frames: number, total: number) => void;
  /** Messages (skipped episodes, the ImageNet default, the output chosen); default stderr. */
  log?: (message: string) => void;
}

/** An episode left out because its video is missing. */
export interface SkippedEpisode {
  episode: number;
  file: string;
}

/** What {@link embedDataset} did. */
export interface EmbedResult {
  /** The output folder. */
  out: string;
  /** The new feature's key and per-frame shape (`[D]` or `[T, D]`). */
  feature: string;
  shape: number[];
  /** D, the embedding width. */
  dim: number;
  /** Frames and episodes written. */
  frames: number;
  episodes: number;
  /** Episodes left out for a missing video (`missingVideo: "skip"`). */
  skipped: SkippedEpisode[];
  /** Wall-clock seconds of the whole run, of decoding frames (ffmpeg or the cache), and of the encoder calls. */
  seconds: number;
  decodeSeconds: number;
  encodeSeconds: number;
  /** Frames embedded per second, over the whole run (decoding and writing included). */
  framesPerSecond: number;
  /** Source columns copied, and source camera features not copied (videos re-encode, never copy). */
  copied: string[];
  notCopied: string[];
  encoder: EncoderDescription;
}

/** Content of `meta/embedding.json`. */
export interface EmbeddingMeta {
  format: "actionflow-embedding/1";
  source: string;
  camera: string;
  feature: string;
  shape: number[];
  encoder: EncoderDescription;
  /** Why the cameras are absent. */
  videos: { copied: false; keys: string[]; reason: string };
  /** Output episode k is source episode `episodes[k].source_episode_index`. */
  episodes: { episode_index: number; source_episode_index: number }[];
  skipped: SkippedEpisode[];
}

/** `observation.embeddings.<short name>` of a camera key (`observation.images.front` -> `...front`). */
export function defaultEmbeddingKey(camera: string): string {
  const short = camera.replace(/^observation\.images?\./, "").replace(/^observation\./, "");
  return `observation.embeddings.${short.replaceAll("/", "_")}`;
}

/** Embeds one camera of `opts.dataset` into a new dataset at `opts.out`; see the module comment. */
export async function embedDataset(opts: EmbedOptions): Promise<EmbedResult> {
  const t0 = performance.now();
  const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const out = resolve(opts.out);
  if (opts.batch !== undefined && !(Number.isInteger(opts.batch) && opts.batch >= 1))
    throw new RangeError(`batch must be a positive integer, got ${opts.batch}`);
  if ((await pathExists(out)) && (await readdir(out).catch(() => ["(not a folder)"])).length > 0)
    throw new Error(`${out}: the output folder exists and is not empty`);
  const opened = await openDataset(opts.dataset);
  if (opened.format !== "lerobot") {
    opened.dataset.close();
    throw new Error(`${opts.dataset}: camera frames are read from LeRobot datasets (this is a ${opened.format} file)`);
  }
  const src = opened.dataset;
  try {
    const cam = src.features[opts.camera];
    if (!cam || (cam.dtype !== "video" && cam.dtype !== "image"))
      throw new Error(
        `${src.dir}: '${opts.camera}' is not a camera feature (cameras: ${src.cameraKeys.join(", ") || "none"})`,
      );
    const feature = opts.feature ?? defaultEmbeddingKey(opts.camera);
    if (feature in src.features) throw new Error(`${src.dir}: feature '${feature}' already exists; choose --feature`);

    const { present, missing } = await episodesWithVideo(src, opts.camera);
    const skipped = missing.map((episode) => ({ episode, file: videoPath(src, episode, opts.camera) }));
    if (skipped.length > 0 && (opts.missingVideo ?? "error") === "error") {
      const s = skipped[0]!;
      throw new Error(
        `${src.dir}: episode ${s.episode} has no video for '${opts.camera}' (${s.file} is missing)${
          skipped.length > 1
            ? `, nor do episodes ${skipped
                .slice(1)
                .map((x) => x.episode)
                .join(", ")}`
            : ""
        }; skip such episodes with --missing-video skip`,
      );
    }
    for (const s of skipped)
      log(`skipping: episode ${s.episode} has no video for '${opts.camera}' (${s.file} is missing)`);
    if (present.length === 0) throw new Error(`${src.dir}: no episode has its video for '${opts.camera}'`);

    const encoder = await ImageEncoder.load(opts.encoder, {
      ...(opts.size ? { size: opts.size } : {}),
      ...(opts.mean ? { mean: opts.mean } : {}),
      ...(opts.std ? { std: opts.std } : {}),
      ...(opts.output !== undefined ? { output: opts.output } : {}),
      ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
      log,
    });
    try {
      const desc = encoder.describe();
      const { features, copied } = copiedFeatures(src);
      const notCopied = src.cameraKeys;
      features[feature] = { dtype: "float32", shape: [...desc.shape] };
      const total = present.reduce((s, e) => s + src.episode(e).length, 0);
      const hasTaskIndex = "task_index" in src.features;
      const hasTimestamp = "timestamp" in src.features;
      let done = 0;
      let encodeSeconds = 0;
      let decodeSeconds = 0;
      const finished = await writeDirAtomic(out, async (tmp) => {
        const w = await LeRobotWriter.create(tmp, {
          fps: src.fps,
          robotType: src.robotType,
          features,
          statsBins: statsBins(encoder.frameSize),
        });
        opts.onProgress?.(0, total);
        for (const index of present) {
          const ep = src.episode(index);
          const cols = await src.readEpisode(index, [
            ...copied,
            ...(hasTimestamp ? ["timestamp"] : []),
            ...(hasTaskIndex ? ["task_index"] : []),
          ]);
          const frameTasks = hasTaskIndex ? tasksOf(src, index, cols.task_index as BigInt64Array) : undefined;
          const td = performance.now();
          const frames = await loadEpisodeFrames(opened, index, opts.camera, desc.size, {
            ...(opts.cacheDir !== undefined ? { cacheDir: opts.cacheDir } : {}),
            ...(opts.cache === false ? { cache: false } : {}),
          });
          if (!frames) throw new Error(`${src.dir}: episode ${index}: no frames for '${opts.camera}'`);
          const te = performance.now();
          decodeSeconds += (te - td) / 1000;
          const embedded = await encoder.encode(frames.data, frames.count, opts.batch ? { batch: opts.batch } : {});
          encodeSeconds += (performance.now() - te) / 1000;
          const data: Record<string, ColumnArray> = { [feature]: embedded };
          for (const c of copied) data[c] = cols[c]!;
          await w.addEpisode({
            task: frameTasks?.[0] ?? ep.tasks[0] ?? "",
            ...(frameTasks ? { frameTasks } : {}),
            frames: data,
            length: ep.length,
            ...(hasTimestamp ? { timestamps: cols.timestamp as ArrayLike<number> } : {}),
          });
          done += ep.length;
          opts.onProgress?.(done, total);
        }
        const f = await w.finish();
        const meta: EmbeddingMeta = {
          format: "actionflow-embedding/1",
          source: resolve(src.dir),
          // (absolute paths: the record outlives the working directory)
          camera: opts.camera,
          feature,
          shape: [...desc.shape],
          encoder: { ...desc, file: resolve(desc.file) },
          videos: {
            copied: false,
            keys: notCopied,
            reason:
              "the LeRobot writer re-encodes camera frames (lossy) and cannot copy video files as they are; the cameras are left out",
          },
          episodes: present.map((s, k) => ({ episode_index: k, source_episode_index: s })),
          skipped,
        };
        await writeJsonAtomic(`${tmp}/meta/${EMBEDDING_META}`, meta);
        return f;
      });
      const seconds = (performance.now() - t0) / 1000;
      return {
        out,
        feature,
        shape: [...desc.shape],
        dim: desc.shape[desc.shape.length - 1]!,
        frames: finished.frames,
        episodes: finished.episodes,
        skipped,
        seconds,
        decodeSeconds,
        encodeSeconds,
        framesPerSecond: finished.frames / seconds,
        copied,
        notCopied,
        encoder: desc,
      };
    } finally {
      await encoder.release();
    }
  } finally {
    src.close();
  }
}

/** The source's numeric non-default features as writer features (float64 stays, other floats become float32, integers int64). */
function copiedFeatures(src: LeRobotDataset): { features: Record<string, WriterFeature>; copied: string[] } {
  const features: Record<string, WriterFeature> = {};
  for (const [name, f] of Object.entries(src.features)) {
    if (name in DEFAULT_FEATURES || !isNumeric(f)) continue;
    const dtype: WriterDtype = f.dtype === "float64" ? "float64" : f.dtype.startsWith("float") ? "float32" : "int64";
    features[name] = { dtype, shape: [...f.shape], names: f.names };
  }
  return { features, copied: Object.keys(features) };
}

/** Each frame's task string; throws naming the episode and frame on an unknown task index. */
function tasksOf(src: LeRobotDataset, episode: number, taskIndex: BigInt64Array): string[] {
  return Array.from(taskIndex, (t, i) => {
    const task = src.tasks[Number(t)];
    if (task === undefined)
      throw new Error(
        `${src.dataFile(episode)}: frame ${i} of episode ${episode} has task_index ${t}, not in the tasks`,
      );
    return task;
  });
}

/** The video file an episode's camera would be in (or why there is none). */
function videoPath(src: LeRobotDataset, episode: number, key: string): string {
  try {
    return src.videoFile(episode, key).file;
  } catch (err) {
    return `no video location: ${(err as Error).message}`;
  }
}

/**
 * Histogram bins of the statistics: the writer keeps `bins` float64 per value of a frame (twice:
 * the episode's and the dataset's), so a `[T, D]` feature of many tokens gets fewer bins (at most
 * 2^25 per statistic, 256 MiB; at least 64), a power of two up to the default 8192.
 */
export function statsBins(valuesPerFrame: number): number {
  let bins = 8192;
  while (bins > 64 && bins * valuesPerFrame > 2 ** 25) bins /= 2;
  return bins;
}
