/**
 * Debian's `ffmpeg` and `ffprobe` as child processes: probing a video, decoding it (or a stream of
 * encoded images) to raw RGB frames of a given size with each frame's presentation time, and
 * encoding raw RGB frames into an mp4 (AV1 through libsvtav1, as LeRobot does, or H.264).
 *
 * Frames are always uint8 RGB, row-major `[count, height, width, 3]`. Times are seconds on the
 * file's own timeline (`-copyts`), computed from the integer pts and the stream's time base, so
 * they are exact far into a long concatenated file. Every error names the file and carries the end
 * of ffmpeg's own message.
 */
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";

/** The ffmpeg and ffprobe executables (override with `ACTIONFLOW_FFMPEG` / `ACTIONFLOW_FFPROBE`). */
export const FFMPEG = process.env.ACTIONFLOW_FFMPEG ?? "ffmpeg";
/** See {@link FFMPEG}. */
export const FFPROBE = process.env.ACTIONFLOW_FFPROBE ?? "ffprobe";

/** Thrown when the ffmpeg executable is not installed; callers (and tests) may branch on it. */
export class FfmpegMissingError extends Error {
  constructor(what: string) {
    super(`${what}: needs '${FFMPEG}' and '${FFPROBE}' on the PATH (Debian: apt-get install ffmpeg)`);
    this.name = "FfmpegMissingError";
  }
}

let available: boolean | undefined;

/** True when `ffmpeg` and `ffprobe` run (checked once per process). */
export function ffmpegAvailable(): boolean {
  if (available === undefined) {
    const ok = (cmd: string): boolean => spawnSync(cmd, ["-version"], { stdio: "ignore" }).status === 0;
    available = ok(FFMPEG) && ok(FFPROBE);
  }
  return available;
}

/** True when this ffmpeg has the named encoder (e.g. "libsvtav1", "libx264"). */
export function hasEncoder(name: string): boolean {
  if (!ffmpegAvailable()) return false;
  const r = spawnSync(FFMPEG, ["-hide_banner", "-encoders"], { encoding: "utf8" });
  return new RegExp(`^\\s*V\\S*\\s+${name}\\s`, "m").test(r.stdout ?? "");
}

/** What {@link probeVideo} reports of a file's first video stream. */
export interface VideoProbe {
  codec: string;
  width: number;
  height: number;
  pixFmt: string;
  /** Frames per second (the stream's average rate), Hz. */
  fps: number;
  /** The stream's time base as [numerator, denominator] (seconds per pts tick). */
  timeBase: [number, number];
  /** Duration in seconds, or null when the container does not say. */
  duration: number | null;
  /** Frame count from the container, or null when it does not say. */
  frames: number | null;
}

/** Probes the first video stream of `file` with ffprobe; throws naming the file. */
export async function probeVideo(file: string): Promise<VideoProbe> {
  if (!ffmpegAvailable()) throw new FfmpegMissingError(file);
  const args = ["-v", "error", "-select_streams", "v:0", "-show_entries"];
  args.push("stream=codec_name,width,height,pix_fmt,avg_frame_rate,time_base,duration,nb_frames");
  args.push("-of", "json", file);
  const { stdout, stderr, code } = await run(FFPROBE, args);
  if (code !== 0) throw new Error(`${file}: ffprobe failed (exit ${code}): ${tail(stderr)}`);
  let parsed: { streams?: Record<string, unknown>[] };
  try {
    parsed = JSON.parse(stdout.toString("utf8")) as typeof parsed;
  } catch (err) {
    throw new Error(`${file}: ffprobe printed no JSON`, { cause: err });
  }
  const s = parsed.streams?.[0];
  if (!s) throw new Error(`${file}: no video stream`);
  const ratio = (v: unknown): [number, number] => {
    const m = /^(\d+)\/(\d+)$/.exec(String(v));
    return m ? [Number(m[1]), Number(m[2])] : [0, 1];
  };
  const [fn, fd] = ratio(s.avg_frame_rate);
  const tb = ratio(s.time_base);
  if (!(tb[0] > 0 && tb[1] > 0)) throw new Error(`${file}: bad stream time_base ${String(s.time_base)}`);
  const num = (v: unknown): number | null => (v === undefined || v === "N/A" || v === null ? null : Number(v));
  return {
    codec: String(s.codec_name),
    width: Number(s.width),
    height: Number(s.height),
    pixFmt: String(s.pix_fmt),
    fps: fd > 0 ? fn / fd : 0,
    timeBase: tb,
    duration: num(s.duration),
    frames: num(s.nb_frames),
  };
}

/** A frame size in pixels. */
export interface FrameSize {
  width: number;
  height: number;
}

/** Decoded frames: uint8 RGB `[count, height, width, 3]` and each frame's time in seconds. */
export interface DecodedFrames {
  width: number;
  height: number;
  count: number;
  data: Uint8Array;
  /** Presentation time of each frame on the file's timeline, seconds, increasing. */
  times: Float64Array;
}

/** Options of {@link decodeVideo}. */
export interface DecodeOptions {
  /** Decode from this time (seconds, accurate seek); default the start. */
  start?: number;
  /** Decode this many seconds; default to the end. */
  duration?: number;
}

/**
 * Decodes `file` to RGB frames scaled to `size` (area filter), every frame once in presentation
 * order (`-fps_mode passthrough`), with its pts converted through the stream's time base. Throws
 * naming the file when ffmpeg fails or the byte count is not a whole number of frames.
 */
export async function decodeVideo(file: string, size: FrameSize, opts: DecodeOptions = {}): Promise<DecodedFrames> {
  checkSize(size, file);
  const probe = await probeVideo(file);
  const args = ["-hide_banner", "-nostdin", "-v", "info", "-nostats"];
  if (opts.start !== undefined && opts.start > 0) args.push("-ss", opts.start.toFixed(6));
  if (opts.duration !== undefined) args.push("-t", opts.duration.toFixed(6));
  args.push("-copyts", "-i", file, "-an", "-sn", "-vf", `scale=${size.width}:${size.height}:flags=area,showinfo`);
  args.push("-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1");
  const { stdout, stderr, code } = await run(FFMPEG, args);
  if (code !== 0) throw new Error(`${file}: ffmpeg could not decode it (exit ${code}): ${tail(stderr)}`);
  const frameBytes = size.width * size.height * 3;
  if (stdout.length % frameBytes !== 0)
    throw new Error(`${file}: ffmpeg gave ${stdout.length} bytes, not a whole number of ${frameBytes}-byte frames`);
  const count = stdout.length / frameBytes;
  const pts = parseShowinfo(stderr.toString("utf8"));
  if (pts.length !== count)
    throw new Error(`${file}: ffmpeg reported ${pts.length} frame times for ${count} decoded frames`);
  const [num, den] = probe.timeBase;
  const times = Float64Array.from(pts, (p) => (p * num) / den);
  return { width: size.width, height: size.height, count, data: toUint8(stdout), times };
}

/**
 * Decodes a sequence of encoded still images (PNG, JPEG: LeRobot `image` features) to RGB frames
 * of `size`, in order, in one ffmpeg run (`image2pipe`). `where` names them in errors.
 */
export async function decodeImages(images: readonly Uint8Array[], size: FrameSize, where: string): Promise<Uint8Array> {
  checkSize(size, where);
  if (!ffmpegAvailable()) throw new FfmpegMissingError(where);
  if (images.length === 0) return new Uint8Array(0);
  const args = ["-hide_banner", "-nostdin", "-v", "error", "-f", "image2pipe", "-i", "pipe:0"];
  args.push("-vf", `scale=${size.width}:${size.height}:flags=area`, "-fps_mode", "passthrough");
  args.push("-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1");
  const { stdout, stderr, code } = await run(FFMPEG, args, images);
  if (code !== 0) throw new Error(`${where}: ffmpeg could not decode the images (exit ${code}): ${tail(stderr)}`);
  const frameBytes = size.width * size.height * 3;
  if (stdout.length !== images.length * frameBytes)
    throw new Error(`${where}: ${images.length} images decoded to ${stdout.length / frameBytes} frames`);
  return toUint8(stdout);
}

/** Video codecs the encoder writes: AV1 (libsvtav1, LeRobot's default) or H.264 (libx264). */
export type VideoCodec = "av1" | "h264";

/** Options of {@link VideoEncoder.start}. */
export interface EncoderOptions {
  width: number;
  height: number;
  /** Frames per second, Hz. */
  fps: number;
  /** Default "av1". */
  codec?: VideoCodec;
  /** Constant rate factor; default 30 (LeRobot's). */
  crf?: number;
  /** Keyframe interval (GOP) in frames; default 2 (LeRobot's). */
  gop?: number;
}

/**
 * One ffmpeg process encoding raw RGB frames written to its stdin into an mp4 at `file`, with
 * LeRobot's settings (yuv420p, GOP 2, CRF 30). Frame k has pts k / fps exactly. Await each
 * {@link VideoEncoder.write} before the next; {@link VideoEncoder.close} waits for ffmpeg and throws
 * with its message when it failed.
 */
export class VideoEncoder {
  /** Frames written so far. */
  frames = 0;
  private readonly child: ChildProcess;
  private readonly done: Promise<{ code: number | null; stderr: string }>;
  private readonly frameBytes: number;
  private failed: Error | undefined;

  private constructor(
    readonly file: string,
    readonly opts: EncoderOptions,
  ) {
    const codec = opts.codec ?? "av1";
    const args = ["-hide_banner", "-nostdin", "-v", "error", "-y"];
    args.push("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", `${opts.width}x${opts.height}`);
    args.push("-framerate", String(opts.fps), "-i", "pipe:0");
    args.push("-c:v", codec === "av1" ? "libsvtav1" : "libx264", "-pix_fmt", "yuv420p");
    args.push("-g", String(opts.gop ?? 2), "-crf", String(opts.crf ?? 30));
    if (codec === "av1") args.push("-svtav1-params", "lp=1");
    args.push("-f", "mp4", file);
    this.frameBytes = opts.width * opts.height * 3;
    this.child = spawn(FFMPEG, args, { stdio: ["pipe", "ignore", "pipe"] });
    const err: Buffer[] = [];
    this.child.stderr!.on("data", (b: Buffer) => err.push(b));
    this.child.stdin!.on("error", (e) => (this.failed ??= e));
    this.done = new Promise((resolve) => {
      this.child.on("error", (e) => {
        this.failed ??= e;
        resolve({ code: -1, stderr: Buffer.concat(err).toString("utf8") });
      });
      this.child.on("close", (code) => resolve({ code, stderr: Buffer.concat(err).toString("utf8") }));
    });
  }

  /** Starts ffmpeg writing `file` (any existing file is replaced). Throws when ffmpeg is missing. */
  static start(file: string, opts: EncoderOptions): VideoEncoder {
    checkSize(opts, file);
    if (!ffmpegAvailable()) throw new FfmpegMissingError(file);
    if (!(opts.fps > 0)) throw new RangeError(`${file}: fps must be > 0, got ${opts.fps}`);
    if (opts.width % 2 !== 0 || opts.height % 2 !== 0)
      throw new RangeError(`${file}: yuv420p needs an even width and height, got ${opts.width}x${opts.height}`);
    return new VideoEncoder(file, opts);
  }

  /** Writes whole frames, uint8 RGB `[n, height, width, 3]`. */
  async write(frames: Uint8Array): Promise<void> {
    if (frames.length % this.frameBytes !== 0)
      throw new Error(
        `${this.file}: ${frames.length} bytes is not a whole number of ${this.opts.width}x${this.opts.height} RGB frames`,
      );
    if (this.failed) throw new Error(`${this.file}: ffmpeg stopped: ${this.failed.message}`, { cause: this.failed });
    const stdin = this.child.stdin!;
    const ok = stdin.write(frames);
    this.frames += frames.length / this.frameBytes;
    if (!ok)
      await new Promise<void>((resolve) => {
        const onDone = (): void => {
          stdin.off("drain", onDone);
          stdin.off("close", onDone);
          resolve();
        };
        stdin.on("drain", onDone);
        stdin.on("close", onDone);
      });
  }

  /** Closes the input and waits for ffmpeg to finish the file; throws with ffmpeg's message on failure. */
  async close(): Promise<void> {
    this.child.stdin!.end();
    const { code, stderr } = await this.done;
    if (code !== 0 || this.failed)
      throw new Error(`${this.file}: ffmpeg could not encode (exit ${code}): ${tail(stderr) || this.failed?.message}`);
  }

  /** Stops ffmpeg without finishing the file (after an error elsewhere). */
  async abort(): Promise<void> {
    this.child.kill("SIGKILL");
    await this.done;
  }
}

/** The integer pts of every frame line of ffmpeg's `showinfo` filter output. */
function parseShowinfo(text: string): number[] {
  const out: number[] = [];
  const re = /Parsed_showinfo[^\]]*\]\s*n:\s*(\d+)\s+pts:\s*(-?\d+)/g;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push(Number(m[2]));
  return out;
}

function checkSize(size: FrameSize, where: string): void {
  if (!Number.isInteger(size.width) || !Number.isInteger(size.height) || size.width < 1 || size.height < 1)
    throw new RangeError(`${where}: frame size must be positive integers, got ${size.width}x${size.height}`);
}

function toUint8(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

/** The last lines of a tool's stderr, for error messages. */
function tail(stderr: Buffer | string): string {
  const lines = stderr
    .toString()
    .trim()
    .split("\n")
    .filter((l) => !/Parsed_showinfo/.test(l));
  return lines.slice(-4).join(" | ");
}

/** Runs a tool to completion, collecting stdout and stderr; `input` chunks are written to stdin. */
function run(
  cmd: string,
  args: string[],
  input?: readonly Uint8Array[],
): Promise<{ stdout: Buffer; stderr: Buffer; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [input ? "pipe" : "ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on("data", (b: Buffer) => out.push(b));
    child.stderr!.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e) => reject(new Error(`${cmd}: could not start`, { cause: e })));
    child.on("close", (code) => resolve({ stdout: Buffer.concat(out), stderr: Buffer.concat(err), code }));
    if (input) {
      const stdin = child.stdin!;
      stdin.on("error", () => {}); // an early exit is reported through the exit code and stderr
      void (async () => {
        for (const chunk of input) {
          if (!stdin.write(chunk)) await new Promise((r) => stdin.once("drain", r));
        }
        stdin.end();
      })();
    }
  });
}
