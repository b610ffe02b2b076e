/**
 * Camera frames of a LeRobot dataset, decoded to a size and aligned to the episode's frame
 * timestamps, as LeRobot's own loader does:
 *
 * - `video` features: v2.x keeps one mp4 per episode and camera (`video_path` in info.json); v3.0
 *   concatenates episodes into `videos/<key>/chunk-XXX/file-YYY.mp4` and places each episode at
 *   `videos/<key>/from_timestamp` in its file. Frame i of the episode is the decoded frame whose
 *   presentation time is nearest `from_timestamp + timestamp[i]`; farther than
 *   {@link TOLERANCE_S} (LeRobot's `tolerance_s`, 1e-4 s) is an error naming episode, key and
 *   timestamp.
 * - `image` features (PNG/JPEG bytes in the parquet data) are decoded in frame order.
 *
 * Decoding runs Debian's ffmpeg (`datasets/video/ffmpeg.ts`). Each video file (or episode of images)
 * is decoded once per size and cached (`datasets/video/cache.ts`: keyed by the content's SHA-256
 * and the size, written atomically); a v3.0 file is decoded whole on first use, so the other
 * episodes in it come from the cache.
 */
import { stat } from "node:fs/promises";
import type { OpenedDataset } from "../open.ts";
import type { LeRobotDataset } from "../lerobot/reader.ts";
import { bytesHash, datasetCacheDir, fileHash, readCached, writeCached } from "./cache.ts";
import type { CachedFrames } from "./cache.ts";
import { decodeImages, decodeVideo } from "./ffmpeg.ts";
import type { FrameSize } from "./ffmpeg.ts";

/** LeRobot's default `tolerance_s`: a frame must lie this close (seconds) to the timestamp it stands for. */
export const TOLERANCE_S = 1e-4;

/** One camera of one episode decoded to a size, aligned to the episode's frame timestamps. */
export interface EpisodeFrames {
  key: string;
  episode: number;
  width: number;
  height: number;
  count: number;
  /** uint8 RGB `[count, height, width, 3]` */
  data: Uint8Array;
}

/** Options of {@link loadEpisodeFrames}. */
export interface LoadFramesOptions {
  /** Use and fill the decoded-frame cache (default true). */
  cache?: boolean;
  /** An episode whose video file is missing: "error" (default) throws, "skip" logs and returns undefined. */
  missing?: "error" | "skip";
  /** Cache root instead of the default (see `datasets/video/cache.ts`). */
  cacheDir?: string;
  /** Where the "skipped" message goes; default stderr. */
  log?: (message: string) => void;
  /** Tolerance in seconds (default {@link TOLERANCE_S}). */
  toleranceS?: number;
}

/**
 * Decodes camera `key` of `episode` to `size` (stretched to exactly that width and height), one
 * frame per dataset frame. Returns undefined only with `missing: "skip"`, after a message naming
 * the episode and the file. Throws naming the dataset, episode, key (and timestamp) otherwise.
 */
export async function loadEpisodeFrames(
  ds: OpenedDataset,
  episode: number,
  key: string,
  size: { width: number; height: number },
  opts: LoadFramesOptions = {},
): Promise<EpisodeFrames | undefined> {
  if (ds.format !== "lerobot")
    throw new Error(`${key}: camera frames are read from LeRobot datasets (this is a ${ds.format} file)`);
  const d = ds.dataset;
  const f = d.features[key];
  if (!f || (f.dtype !== "video" && f.dtype !== "image"))
    throw new Error(
      `${d.dir}: '${key}' is not a camera feature (cameras: ${d.cameraKeys.join(", ") || "none"}; a camera has dtype video or image)`,
    );
  const ep = d.episode(episode);
  const cacheDir = opts.cache === false ? undefined : datasetCacheDir(d.dir, opts.cacheDir);
  if (f.dtype === "image") return imageFrames(d, episode, key, size, cacheDir);

  const loc = d.videoFile(episode, key);
  if (!(await isFile(loc.file))) {
    const msg = `${d.dir}: episode ${episode} has no video for '${key}' (${loc.file} is missing)`;
    if (opts.missing === "skip") {
      (opts.log ?? ((m: string) => process.stderr.write(`${m}\n`)))(`skipping: ${msg}`);
      return undefined;
    }
    throw new Error(`${msg}; skip such episodes with missing: "skip" (--missing-video skip)`);
  }
  const timestamps = await episodeTimestamps(d, episode);
  const queries = Float64Array.from(timestamps, (t) => loc.fromTimestamp + t);
  const tol = opts.toleranceS ?? TOLERANCE_S;

  let source: CachedFrames;
  if (cacheDir) {
    const hash = await fileHash(loc.file);
    source =
      (await readCached(cacheDir, hash, size)) ??
      (await (async () => {
        const decoded = await decodeVideo(loc.file, size);
        await writeCached(cacheDir, hash, decoded, loc.file);
        return (await readCached(cacheDir, hash, size))!;
      })());
  } else {
    // only this episode's stretch of the file
    const fps = d.fps;
    const start = Math.max(0, loc.fromTimestamp + (timestamps[0] ?? 0) - 0.5 / fps);
    const end = loc.fromTimestamp + (timestamps[timestamps.length - 1] ?? 0) + 0.5 / fps;
    const decoded = await decodeVideo(loc.file, size, { start, duration: end - start });
    source = {
      ...decoded,
      read: (from, to) => Promise.resolve(decoded.data.slice(from * frameBytes(size), to * frameBytes(size))),
    };
  }
  const picks = matchTimestamps(source.times, queries, tol, (q, nearest) => {
    const t = q - loc.fromTimestamp;
    return `${loc.file}: episode ${episode}, key '${key}': no frame within ${tol} s of timestamp ${t.toFixed(6)} s (file time ${q.toFixed(6)} s; nearest frame at ${nearest === undefined ? "none" : nearest.toFixed(6)} s)`;
  });
  const lo = Math.min(...picks);
  const hi = Math.max(...picks) + 1;
  const block = await source.read(lo, hi);
  const fb = frameBytes(size);
  const data = new Uint8Array(ep.length * fb);
  for (let i = 0; i < picks.length; i++)
    data.set(block.subarray((picks[i]! - lo) * fb, (picks[i]! - lo + 1) * fb), i * fb);
  return { key, episode, width: size.width, height: size.height, count: ep.length, data };
}

/**
 * For each query time, the index of the nearest of the increasing `times`; throws
 * `message(query, nearest)` when it is farther than `tol` seconds.
 */
export function matchTimestamps(
  times: Float64Array,
  queries: ArrayLike<number>,
  tol: number,
  message: (query: number, nearest: number | undefined) => string,
): number[] {
  const out: number[] = [];
  for (let i = 0; i < queries.length; i++) {
    const q = queries[i]!;
    let lo = 0;
    let hi = times.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (times[mid]! < q) lo = mid + 1;
      else hi = mid;
    }
    let best = -1;
    for (const k of [lo - 1, lo]) {
      if (k < 0 || k >= times.length) continue;
      if (best < 0 || Math.abs(times[k]! - q) < Math.abs(times[best]! - q)) best = k;
    }
    if (best < 0 || !(Math.abs(times[best]! - q) <= tol))
      throw new Error(message(q, best < 0 ? undefined : times[best]));
    out.push(best);
  }
  return out;
}

/** Which episodes of a video feature have their video file on disk (image features: all). */
export async function episodesWithVideo(
  ds: LeRobotDataset,
  key: string,
): Promise<{ present: number[]; missing: number[] }> {
  const present: number[] = [];
  const missing: number[] = [];
  const f = ds.features[key];
  for (const ep of ds.episodes) {
    let ok = f?.dtype === "image";
    if (f?.dtype === "video") {
      try {
        ok = await isFile(ds.videoFile(ep.index, key).file);
      } catch {
        ok = false;
      }
    }
    (ok ? present : missing).push(ep.index);
  }
  return { present, missing };
}

async function imageFrames(
  d: LeRobotDataset,
  episode: number,
  key: string,
  size: FrameSize,
  cacheDir: string | undefined,
): Promise<EpisodeFrames> {
  const images = await d.readImageBytes(episode, key);
  const where = `${d.dataFile(episode)}: episode ${episode}, key '${key}'`;
  const hash = cacheDir ? bytesHash(images) : "";
  const cached = cacheDir ? await readCached(cacheDir, hash, size) : undefined;
  let data: Uint8Array;
  if (cached && cached.count === images.length) data = await cached.read(0, cached.count);
  else {
    data = await decodeImages(images, size, where);
    if (cacheDir) {
      const times = Float64Array.from(images, (_, i) => i);
      await writeCached(
        cacheDir,
        hash,
        { width: size.width, height: size.height, count: images.length, data, times },
        where,
      );
    }
  }
  return { key, episode, width: size.width, height: size.height, count: images.length, data };
}

/** The episode's `timestamp` column (seconds), or `frame_index / fps` when the dataset has none. */
async function episodeTimestamps(d: LeRobotDataset, episode: number): Promise<Float64Array> {
  const n = d.episode(episode).length;
  if (!d.features.timestamp) return Float64Array.from({ length: n }, (_, i) => i / d.fps);
  const cols = await d.readEpisode(episode, ["timestamp"]);
  return Float64Array.from(cols.timestamp as ArrayLike<number>, Number);
}

function frameBytes(size: FrameSize): number {
  return size.width * size.height * 3;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** A camera of a dataset as `dataset info` lists it. */
export interface CameraInfo {
  key: string;
  /** "video" (mp4 files) or "image" (encoded images in the parquet data). */
  dtype: string;
  /** `[height, width, channels]` from info.json. */
  shape: number[];
  /** `video.codec` from info.json, when given. */
  codec: string | null;
  /** Episodes whose frames are on disk (image features: all), and those whose video is missing. */
  episodesWithVideo: number[];
  missingEpisodes: number[];
}

/** The cameras of a LeRobot dataset and which episodes have their video. */
export async function describeCameras(ds: LeRobotDataset): Promise<CameraInfo[]> {
  const out: CameraInfo[] = [];
  for (const key of ds.cameraKeys) {
    const raw = (ds.info.features as Record<string, { info?: Record<string, unknown> }>)[key];
    const codec = raw?.info?.["video.codec"];
    const { present, missing } = await episodesWithVideo(ds, key);
    out.push({
      key,
      dtype: ds.features[key]!.dtype,
      shape: [...ds.features[key]!.shape],
      codec: typeof codec === "string" ? codec : null,
      episodesWithVideo: present,
      missingEpisodes: missing,
    });
  }
  return out;
}
