/**
 * The evaluation frames of held-out episodes: every `stride`-th frame with its raw observations and
 * the demonstrated action chunk that follows it, built the way training builds its windows
 * (`training/windows.ts`): the chunk of frame i is the actions of frames [i, i + H); steps past the
 * episode's end repeat its last action (training's `hold` padding). Values stay in dataset units.
 * Also the strip of camera frames a report shows beside a chunk ({@link framesStripSvg}).
 */
import { PNG } from "pngjs";
import type { EpisodeDataset } from "../datasets/episodes.ts";

/** One observation feature to read: the dataset column and its per-frame size. */
export interface FrameFeature {
  /** Dataset column (`observation.state`). */
  key: string;
  /** Values per frame (product of the raw shape). */
  size: number;
  /** A camera: its frames come from {@link EvalFramesOptions.images} at this size, uint8 RGB. */
  image?: { width: number; height: number };
}

/** Options of {@link readEvalFrames}. */
export interface EvalFramesOptions {
  dataset: EpisodeDataset;
  /** Episode indices, in order. */
  episodes: readonly number[];
  /** Every `stride`-th frame of each episode, starting at frame 0. */
  stride: number;
  /** Chunk length H. */
  horizon: number;
  /** The action column (a vector `[A]` per frame). */
  action: string;
  obs: readonly FrameFeature[];
  /** The frames of a camera feature: uint8 RGB `[length, height, width, 3]` of one episode. */
  images?: (episode: number, key: string, size: { width: number; height: number }) => Promise<Uint8Array>;
  /** Each frame's task string of one episode (for a prompt-conditioned policy); absent: frames carry none. */
  tasks?: (episode: number) => Promise<readonly string[]>;
}

/** One evaluation frame. */
export interface EvalFrame {
  episode: number;
  frame: number;
  /** Raw observation values by dataset column, `[size]` each (a camera: uint8 RGB `[height, width, 3]`). */
  obs: Record<string, Float32Array | Uint8Array>;
  /** The demonstrated chunk, raw, `[H * A]` row-major over `[H, A]`. */
  chunk: Float32Array;
  /** Steps of the chunk past the episode's end (repeats of its last action). */
  padded: number;
  /** The frame's task string (its prompt), when the frames were read with `tasks`. */
  task?: string;
}

/** The frames and the action dim A they were read with. */
export interface EvalFrames {
  frames: EvalFrame[];
  actionDim: number;
}

/** Reads the evaluation frames; throws naming the column or episode at fault. */
export async function readEvalFrames(opts: EvalFramesOptions): Promise<EvalFrames> {
  const { dataset, stride, horizon: H } = opts;
  if (!Number.isInteger(stride) || stride < 1)
    throw new RangeError(`eval frames: stride must be a positive integer, got ${stride}`);
  if (!Number.isInteger(H) || H < 1) throw new RangeError(`eval frames: horizon must be a positive integer, got ${H}`);
  const af = dataset.features[opts.action];
  if (!af)
    throw new Error(
      `eval frames: action column '${opts.action}' not in the dataset (columns: ${Object.keys(dataset.features).join(", ")})`,
    );
  if (af.shape.length !== 1) throw new Error(`eval frames: action column '${opts.action}' must be a vector per frame`);
  const A = af.shape[0]!;
  const known = new Map(dataset.episodes.map((e) => [e.index, e.length]));
  const cams = opts.obs.filter((o) => o.image !== undefined);
  if (cams.length > 0 && !opts.images) throw new Error(`eval frames: camera '${cams[0]!.key}' needs a frame loader`);
  const columns = [...new Set([opts.action, ...opts.obs.filter((o) => o.image === undefined).map((o) => o.key)])];
  const frames: EvalFrame[] = [];
  for (const ep of opts.episodes) {
    const length = known.get(ep);
    if (length === undefined)
      throw new Error(`eval frames: episode ${ep} is not in the dataset (it has ${dataset.episodes.length} episodes)`);
    if (length < 1) continue;
    const data = await dataset.readEpisode(ep, columns);
    const col = (key: string, size: number): Float32Array => {
      const c = data[key];
      if (!c || c instanceof BigInt64Array) throw new Error(`eval frames: episode ${ep} has no float column '${key}'`);
      if (c.length !== length * size)
        throw new Error(
          `eval frames: column '${key}' of episode ${ep} has ${c.length} values, expected ${length} x ${size}`,
        );
      return c instanceof Float32Array ? c : Float32Array.from(c);
    };
    const actions = col(opts.action, A);
    const obsCols: { key: string; size: number; data: Float32Array | Uint8Array }[] = [];
    for (const o of opts.obs) {
      if (o.image === undefined) {
        obsCols.push({ key: o.key, size: o.size, data: col(o.key, o.size) });
        continue;
      }
      const data = await opts.images!(ep, o.key, o.image);
      if (data.length !== length * o.size)
        throw new Error(
          `eval frames: camera '${o.key}' of episode ${ep} has ${data.length} bytes, expected ${length} x ${o.size}`,
        );
      obsCols.push({ key: o.key, size: o.size, data });
    }
    const tasks = opts.tasks ? await opts.tasks(ep) : undefined;
    if (tasks !== undefined && tasks.length !== length)
      throw new Error(`eval frames: episode ${ep} has ${tasks.length} task strings for ${length} frames`);
    for (let i = 0; i < length; i += stride) {
      const chunk = new Float32Array(H * A);
      for (let h = 0; h < H; h++) {
        const src = Math.min(i + h, length - 1);
        chunk.set(actions.subarray(src * A, (src + 1) * A), h * A);
      }
      const obs: Record<string, Float32Array | Uint8Array> = {};
      for (const o of obsCols) obs[o.key] = o.data.slice(i * o.size, (i + 1) * o.size);
      frames.push({
        episode: ep,
        frame: i,
        obs,
        chunk,
        padded: Math.max(0, i + H - length),
        ...(tasks !== undefined ? { task: tasks[i]! } : {}),
      });
    }
  }
  return { frames, actionDim: A };
}

/** Options of {@link framesStripSvg}. */
export interface FramesStripOptions {
  /** Frame width and height in pixels. */
  width: number;
  height: number;
  /** Caption above the strip, e.g. "observation.images.front, frames 0-40". */
  title?: string;
  /** A label under each frame (e.g. its frame index); default none. */
  labels?: readonly string[];
  /** Displayed pixels per image pixel (default: 96 px wide frames). */
  scale?: number;
}

/** Encodes uint8 RGB `[height, width, 3]` as a PNG file's bytes. */
export function encodePng(rgb: Uint8Array, width: number, height: number): Uint8Array {
  if (rgb.length !== width * height * 3)
    throw new RangeError(`encodePng: ${rgb.length} bytes is not a ${width}x${height} RGB image`);
  const png = new PNG({ width, height, colorType: 2, inputColorType: 2, inputHasAlpha: false });
  png.data = Buffer.from(rgb.buffer, rgb.byteOffset, rgb.length);
  return PNG.sync.write(png, { colorType: 2, inputColorType: 2, inputHasAlpha: false });
}

/**
 * A strip of camera frames (the images a policy saw) as one SVG document: each frame a PNG embedded
 * as a data URL, side by side, with optional labels; `frames` are uint8 RGB `[height, width, 3]`.
 */
export function framesStripSvg(frames: readonly Uint8Array[], o: FramesStripOptions): string {
  const scale = o.scale ?? Math.max(1, Math.round(96 / o.width));
  const w = o.width * scale;
  const h = o.height * scale;
  const gap = 4;
  const top = o.title ? 18 : 0;
  const bottom = o.labels ? 16 : 0;
  const total = Math.max(1, frames.length) * (w + gap) - gap;
  const esc = (t: string): string => t.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${total}" height="${top + h + bottom}" viewBox="0 0 ${total} ${top + h + bottom}" font-family="sans-serif" font-size="11">`,
  ];
  if (o.title) parts.push(`<text x="0" y="12" fill="#333">${esc(o.title)}</text>`);
  frames.forEach((f, i) => {
    const x = i * (w + gap);
    const data = Buffer.from(encodePng(f, o.width, o.height)).toString("base64");
    parts.push(
      `<image x="${x}" y="${top}" width="${w}" height="${h}" style="image-rendering:pixelated" href="data:image/png;base64,${data}"/>`,
    );
    const label = o.labels?.[i];
    if (label !== undefined)
      parts.push(`<text x="${x + w / 2}" y="${top + h + 12}" text-anchor="middle" fill="#555">${esc(label)}</text>`);
  });
  parts.push("</svg>");
  return parts.join("\n");
}
