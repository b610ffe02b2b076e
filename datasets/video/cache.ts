/**
 * The decoded-frame cache: a video file (or one episode's encoded images) decoded at one size is
 * stored once as raw RGB, keyed by the content's SHA-256 and the size, so a second training run
 * (or the next episode of a concatenated v3.0 file) reads frames instead of running ffmpeg.
 *
 * Layout: `<root>/frames/<dataset name>-<hash of its absolute path>/<sha256 prefix>-<W>x<H>.rgb`
 * (uint8 `[count, H, W, 3]`) and, written last, its `.json` (count, size, each frame's time), both
 * atomically. `<root>` is `opts.cacheDir`, else `$ACTIONFLOW_CACHE_DIR`, else
 * `$XDG_CACHE_HOME/actionflow`, else `~/.cache/actionflow`. Delete the folder to clear it.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, readFile, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { basename, join, resolve } from "node:path";
import { writeFileAtomic, writeJsonAtomic } from "../../policy/io/atomic.ts";
import type { DecodedFrames, FrameSize } from "./ffmpeg.ts";

/** The cache root: `dir`, else `$ACTIONFLOW_CACHE_DIR`, else `$XDG_CACHE_HOME/actionflow`, else `~/.cache/actionflow`. */
export function cacheRoot(dir?: string): string {
  if (dir) return dir;
  if (process.env.ACTIONFLOW_CACHE_DIR) return process.env.ACTIONFLOW_CACHE_DIR;
  return join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "actionflow");
}

/** The folder holding one dataset's decoded frames (see the module comment). */
export function datasetCacheDir(datasetDir: string, root?: string): string {
  const abs = resolve(datasetDir);
  const tag = createHash("sha256").update(abs).digest("hex").slice(0, 10);
  const name = basename(abs).replace(/[^A-Za-z0-9._-]/g, "_") || "dataset";
  return join(cacheRoot(root), "frames", `${name}-${tag}`);
}

const fileHashes = new Map<string, { size: number; mtimeMs: number; hash: string }>();

/** SHA-256 (hex) of a file's content; remembered per process while its size and mtime stay. */
export async function fileHash(path: string): Promise<string> {
  const st = await stat(path);
  const known = fileHashes.get(path);
  if (known && known.size === st.size && known.mtimeMs === st.mtimeMs) return known.hash;
  const h = createHash("sha256");
  await new Promise<void>((ok, fail) => {
    createReadStream(path)
      .on("data", (b) => h.update(b))
      .on("end", () => ok())
      .on("error", fail);
  });
  const hash = h.digest("hex");
  fileHashes.set(path, { size: st.size, mtimeMs: st.mtimeMs, hash });
  return hash;
}

/** SHA-256 (hex) of byte buffers taken in order. */
export function bytesHash(parts: readonly Uint8Array[]): string {
  const h = createHash("sha256");
  for (const p of parts) {
    h.update(String(p.length));
    h.update(p);
  }
  return h.digest("hex");
}

/** One cached decode: its count, size and frame times; frames are read on demand. */
export interface CachedFrames {
  width: number;
  height: number;
  count: number;
  times: Float64Array;
  /** Reads frames `[from, to)` as uint8 RGB `[to - from, H, W, 3]`. */
  read(from: number, to: number): Promise<Uint8Array>;
}

interface CacheMeta {
  format: "actionflow-frames/1";
  source: string;
  width: number;
  height: number;
  count: number;
  times: number[];
}

/** The cache entry of `key` at `size` in `dir`, or undefined when there is none (or it is unreadable). */
export async function readCached(dir: string, key: string, size: FrameSize): Promise<CachedFrames | undefined> {
  const base = join(dir, `${key.slice(0, 32)}-${size.width}x${size.height}`);
  let meta: CacheMeta;
  try {
    meta = JSON.parse(await readFile(`${base}.json`, "utf8")) as CacheMeta;
  } catch {
    return undefined;
  }
  const frameBytes = size.width * size.height * 3;
  try {
    const st = await stat(`${base}.rgb`);
    if (
      meta.format !== "actionflow-frames/1" ||
      meta.width !== size.width ||
      meta.height !== size.height ||
      st.size !== meta.count * frameBytes ||
      meta.times.length !== meta.count
    )
      return undefined;
  } catch {
    return undefined;
  }
  return {
    width: meta.width,
    height: meta.height,
    count: meta.count,
    times: Float64Array.from(meta.times),
    async read(from, to) {
      const out = new Uint8Array((to - from) * frameBytes);
      const fh = await open(`${base}.rgb`, "r");
      try {
        const { bytesRead } = await fh.read(out, 0, out.length, from * frameBytes);
        if (bytesRead !== out.length) throw new Error(`${base}.rgb: cache file shorter than its .json says`);
      } finally {
        await fh.close();
      }
      return out;
    },
  };
}

/** Stores a decode under `key` (frames first, then the .json that marks the entry complete). */
export async function writeCached(dir: string, key: string, frames: DecodedFrames, source: string): Promise<void> {
  const base = join(dir, `${key.slice(0, 32)}-${frames.width}x${frames.height}`);
  await writeFileAtomic(`${base}.rgb`, frames.data);
  const meta: CacheMeta = {
    format: "actionflow-frames/1",
    source,
    width: frames.width,
    height: frames.height,
    count: frames.count,
    times: Array.from(frames.times),
  };
  await writeJsonAtomic(`${base}.json`, meta);
}
