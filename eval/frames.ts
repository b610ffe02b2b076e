/**
 * The evaluation frames of held-out episodes: every `stride`-th frame with its raw observations and
 * the demonstrated action chunk that follows it, built the way training builds its windows
 * (`training/windows.ts`): the chunk of frame i is the actions of frames [i, i + H); steps past the
 * episode's end repeat its last action (training's `hold` padding). Values stay in dataset units.
 */
import type { EpisodeDataset } from "../datasets/episodes.ts";

/** One observation feature to read: the dataset column and its per-frame size. */
export interface FrameFeature {
  /** Dataset column (`observation.state`). */
  key: string;
  /** Values per frame (product of the raw shape). */
  size: number;
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
}

/** One evaluation frame. */
export interface EvalFrame {
  episode: number;
  frame: number;
  /** Raw observation values by dataset column, `[size]` each. */
  obs: Record<string, Float32Array>;
  /** The demonstrated chunk, raw, `[H * A]` row-major over `[H, A]`. */
  chunk: Float32Array;
  /** Steps of the chunk past the episode's end (repeats of its last action). */
  padded: number;
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
  const columns = [...new Set([opts.action, ...opts.obs.map((o) => o.key)])];
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
    const obsCols = opts.obs.map((o) => ({ key: o.key, size: o.size, data: col(o.key, o.size) }));
    for (let i = 0; i < length; i += stride) {
      const chunk = new Float32Array(H * A);
      for (let h = 0; h < H; h++) {
        const src = Math.min(i + h, length - 1);
        chunk.set(actions.subarray(src * A, (src + 1) * A), h * A);
      }
      const obs: Record<string, Float32Array> = {};
      for (const o of obsCols) obs[o.key] = o.data.slice(i * o.size, (i + 1) * o.size);
      frames.push({ episode: ep, frame: i, obs, chunk, padded: Math.max(0, i + H - length) });
    }
  }
  return { frames, actionDim: A };
}
