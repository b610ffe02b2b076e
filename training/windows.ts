/**
 * Chunk windows over demonstration episodes: the {@link BatchSource} the trainer draws from.
 *
 * The window of frame `i` of an episode of length `L` holds the observations at `i` (or frames
 * `i-h+1..i` with `historyFrames = h`, repeating frame 0 before the start) and the action chunk of
 * frames `[i, i + horizon)`; steps past the episode end repeat the last action and are flagged in
 * `isPad` (LeRobot's `action_is_pad`) unless `padding` is `hold`. Values are normalised per column with the given
 * affine maps
 * and zero-padded to the model's sizes.
 *
 * Works on anything with the {@link EpisodeDataset} shape: the LeRobot reader
 * (`datasets/lerobot/reader.ts`) and the robomimic reader (`datasets/robomimic/reader.ts`).
 * Only the columns named in `obs` and `action` are loaded, once, into per-episode Float32Arrays.
 */
import { z } from "zod";
import { imageNorm, type AffineNorm } from "../policy/normalize.ts";
import type { Rng } from "../policy/random.ts";
import type { EpisodeDataset } from "../datasets/episodes.ts";
import type { Batch, BatchSource } from "./batch.ts";
import { normalizePrompt, promptDim, promptFeatureVector } from "../policy/net/prompt.ts";
import { ObsFeatureSchema } from "../policy/net/config.ts";

/** Loss on chunk steps past an episode's end: `mask` or `hold` (see {@link WindowSourceOptions.padding}). */
export const PaddingSchema = z.enum(["mask", "hold"]);
/** See {@link PaddingSchema}. */
export type PaddingMode = z.infer<typeof PaddingSchema>;

/**
 * One conditioning feature: the model's feature name and the dataset column it comes from. A prompt
 * feature also lists its vocabulary (`prompts`): its column is the per-frame `task_index`, each
 * frame's task string is matched to the vocabulary and fed as its one-hot `[K]`, or its embedding
 * `[D]` with `promptEmbedding` (not normalised).
 */
export const ObsSpecSchema = z.object({
  name: z.string(),
  key: z.string(),
  prompts: z.array(z.string()).min(1).optional(),
  /**
   * A prompt feature fed as an embedding instead of the one-hot: one vector `[D]` per prompt (see
   * `promptEmbedding` of the head's `ObsFeature`); the frame's window value is its prompt's vector.
   */
  promptEmbedding: ObsFeatureSchema.shape.promptEmbedding,
  /**
   * A camera: the column is a LeRobot video or image feature, decoded to `width` x `height` (see
   * {@link WindowSourceOptions.images}); its window value is the normalised RGB `[height, width, 3]`.
   */
  image: z.object({ width: z.number().int().positive(), height: z.number().int().positive() }).optional(),
});
/** See {@link ObsSpecSchema}. */
export type ObsSpec = z.infer<typeof ObsSpecSchema>;

/** Options of {@link createWindowSource}. */
export interface WindowSourceOptions {
  dataset: EpisodeDataset;
  /** Episode indices of the split (e.g. from {@link splitEpisodes}). */
  episodes: readonly number[];
  /** Conditioning features (vector `[D]` or `[N, D]` columns). */
  obs: readonly ObsSpec[];
  /** The action column (a vector `[D]` per frame). */
  action: string;
  /** Action chunk length in frames. */
  horizon: number;
  /** The model's action size; dims past the dataset's are 0. */
  actionDim: number;
  /** The model's last-axis size per obs feature name (default: the dataset's); extra dims are 0. */
  obsDims?: Record<string, number>;
  /** Normalisation per dataset column (length = the column's last dim, or already padded longer). */
  norms: Record<string, AffineNorm>;
  /** Observation frames per window (default 1). */
  historyFrames?: number;
  /**
   * What the loss does with chunk steps past an episode's end, which always repeat its last action:
   * `mask` (default) flags them in `isPad` so the loss skips them (LeRobot's ACT and pi0); `hold`
   * leaves `isPad` all zero so they are targets, and a policy learns to hold still once a task is
   * done (LeRobot diffusion's `do_mask_loss_for_padding=False`).
   */
  padding?: PaddingMode;
  /** The dataset's task strings by task index (LeRobot `meta/tasks`): needed by a prompt feature. */
  tasks?: readonly string[];
  /**
   * The camera frames of camera features: uint8 RGB `[length, height, width, 3]` of one episode's
   * camera `key` at `size`. Their normalisation (`norms[key]`, 3 dims) is of pixel / 255.
   */
  images?: (episode: number, key: string, size: { width: number; height: number }) => Promise<Uint8Array>;
  /**
   * Random-shift augmentation of camera features in `next` (training draws only; `epoch` and
   * `batchAt` are not augmented): each window's image moves by up to this many pixels in x and y,
   * the border repeated (DrQ's shift). Default 0.
   */
  imageShift?: number;
  /** Called after each episode is loaded (for progress bars). */
  onLoad?: (loaded: number, total: number) => void;
}

/** A {@link BatchSource} of chunk windows over one split. */
export interface WindowSource extends BatchSource {
  /** Windows in the split: one per frame. */
  readonly frames: number;
  /** The split's episode indices, in load order. */
  readonly episodes: readonly number[];
  /** Per-window shape of each obs feature, without the batch axis (`[h, ...]` when history > 1). */
  readonly obsShapes: Readonly<Record<string, number[]>>;
  readonly horizon: number;
  readonly actionDim: number;
  /** `size` windows drawn uniformly over every frame of the split. */
  next(size: number, rng: Rng): Batch;
  /** Every frame of the split in order, in batches of `size` (the last one may be smaller). */
  epoch(size: number): Iterable<Batch>;
  /** The windows of these split frame positions (`0 <= k < frames`, in episode order). */
  batchAt(positions: readonly number[]): Batch;
  /** Which episode and frame a split position is. */
  locate(position: number): { episode: number; frame: number };
}

interface LoadedColumn {
  /** Normalised, unpadded `[length, rows, dim]`. */
  data: Float32Array;
  rows: number;
  dim: number;
}

interface Plan {
  key: string;
  rows: number;
  dim: number;
  padded: number;
  shape: number[];
}

/** Loads the split's columns and returns its window source. Throws naming the column or episode at fault. */
export async function createWindowSource(opts: WindowSourceOptions): Promise<WindowSource> {
  const { dataset, horizon, actionDim } = opts;
  const history = opts.historyFrames ?? 1;
  const maskPadding = (opts.padding ?? "mask") === "mask";
  if (!Number.isInteger(horizon) || horizon < 1)
    throw new RangeError(`windows: horizon must be a positive integer, got ${horizon}`);
  if (!Number.isInteger(history) || history < 1)
    throw new RangeError(`windows: historyFrames must be a positive integer, got ${history}`);
  if (opts.episodes.length === 0) throw new Error("windows: the split has no episodes");
  const names = new Set<string>();
  for (const o of opts.obs) {
    if (names.has(o.name)) throw new Error(`windows: obs feature name '${o.name}' given twice`);
    names.add(o.name);
  }
  const columnShape = (key: string, role: string): { rows: number; dim: number; shape: readonly number[] } => {
    const f = dataset.features[key];
    if (!f)
      throw new Error(
        `windows: ${role} column '${key}' not in the dataset (columns: ${Object.keys(dataset.features).join(", ")})`,
      );
    if (f.shape.length === 0 || f.shape.length > 2)
      throw new Error(`windows: ${role} column '${key}' has shape [${f.shape.join(", ")}], need [D] or [N, D]`);
    const dim = f.shape[f.shape.length - 1]!;
    const rows = f.shape.length === 2 ? f.shape[0]! : 1;
    return { rows, dim, shape: f.shape };
  };
  const act = columnShape(opts.action, "action");
  if (act.rows !== 1)
    throw new Error(
      `windows: action column '${opts.action}' must be a vector per frame, has shape [${act.shape.join(", ")}]`,
    );
  if (act.dim > actionDim)
    throw new Error(
      `windows: action column '${opts.action}' has ${act.dim} dims, more than the model's actionDim ${actionDim}`,
    );
  const plans: Record<string, Plan> = {};
  // Prompt features: dataset task index -> vocabulary index, per feature.
  const promptMaps = new Map<string, Int32Array>();
  for (const o of opts.obs) {
    if (o.prompts === undefined) continue;
    const tasks = opts.tasks;
    if (!tasks)
      throw new Error(`windows: prompt feature '${o.name}' needs the dataset's task strings (a LeRobot dataset)`);
    const map = new Int32Array(tasks.length).fill(-1);
    const vocab = o.prompts.map(normalizePrompt);
    tasks.forEach((t, i) => {
      if (typeof t === "string") map[i] = vocab.indexOf(normalizePrompt(t));
    });
    promptMaps.set(o.name, map);
    const k = promptDim({ prompts: o.prompts, promptEmbedding: o.promptEmbedding });
    plans[o.name] = { key: o.key, rows: 1, dim: k, padded: k, shape: history > 1 ? [history, k] : [k] };
  }
  const imageSpecs = opts.obs.filter((o) => o.image !== undefined);
  if (imageSpecs.length > 0) {
    if (!opts.images) throw new Error(`windows: camera feature '${imageSpecs[0]!.name}' needs a frame loader (images)`);
    if (history > 1) throw new Error(`windows: camera features take one observation frame (historyFrames ${history})`);
  }
  const shift = opts.imageShift ?? 0;
  if (!Number.isInteger(shift) || shift < 0)
    throw new RangeError(`windows: imageShift must be a non-negative integer, got ${shift}`);
  for (const o of opts.obs) {
    if (o.prompts !== undefined || o.image !== undefined) continue;
    const c = columnShape(o.key, `obs '${o.name}'`);
    const padded = opts.obsDims?.[o.name] ?? c.dim;
    if (padded < c.dim)
      throw new Error(`windows: obs '${o.name}' (column '${o.key}') has ${c.dim} dims, more than obsDims ${padded}`);
    const base = c.shape.length === 2 ? [c.rows, padded] : [padded];
    plans[o.name] = { key: o.key, rows: c.rows, dim: c.dim, padded, shape: history > 1 ? [history, ...base] : base };
  }
  const vectorObs = opts.obs.filter((o) => o.prompts === undefined && o.image === undefined);
  const columns = [...new Set([opts.action, ...vectorObs.map((o) => o.key)])];
  const promptSpecs = opts.obs.filter((o) => o.prompts !== undefined);
  const normFor = (key: string, dim: number): AffineNorm => {
    const n = opts.norms[key];
    if (!n) throw new Error(`windows: no normalisation for column '${key}' (pass an identity map if none is wanted)`);
    if (n.scale.length < dim || n.offset.length !== n.scale.length) {
      throw new Error(`windows: normalisation of column '${key}' has ${n.scale.length} dims, the column has ${dim}`);
    }
    return n;
  };
  const dims: Record<string, { rows: number; dim: number }> = { [opts.action]: act };
  for (const o of vectorObs) dims[o.key] = { rows: plans[o.name]!.rows, dim: plans[o.name]!.dim };
  const norms: Record<string, AffineNorm> = {};
  for (const key of columns) norms[key] = normFor(key, dims[key]!.dim);
  // Cameras: pixel value v -> v * scale[c] / 255 + offset[c], by channel c.
  const pixelNorms: Record<string, AffineNorm> = {};
  for (const o of imageSpecs) pixelNorms[o.name] = imageNorm(normFor(o.key, 3));

  const byIndex = new Map(dataset.episodes.map((e) => [e.index, e]));
  const loaded: {
    index: number;
    length: number;
    cols: Record<string, LoadedColumn>;
    prompts: Record<string, LoadedColumn>;
    /** uint8 RGB `[length, height, width, 3]` per camera feature name. */
    images: Record<string, Uint8Array>;
  }[] = [];
  for (const index of opts.episodes) {
    const ep = byIndex.get(index);
    if (!ep) throw new Error(`windows: episode ${index} not in the dataset (${dataset.episodes.length} episodes)`);
    if (ep.length === 0) continue;
    const raw = await dataset.readEpisode(
      index,
      promptSpecs.length > 0 ? [...new Set([...columns, ...promptSpecs.map((o) => o.key)])] : columns,
    );
    const cols: Record<string, LoadedColumn> = {};
    for (const key of columns) {
      const src = raw[key];
      const { rows, dim } = dims[key]!;
      if (!src || src.length !== ep.length * rows * dim) {
        throw new Error(
          `windows: episode ${index} column '${key}' has ${src?.length ?? 0} values, expected ${ep.length} frames x ${rows * dim}`,
        );
      }
      const norm = norms[key]!;
      const data = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) {
        const d = i % dim;
        data[i] = Number(src[i]!) * norm.scale[d]! + norm.offset[d]!;
      }
      cols[key] = { data, rows, dim };
    }
    const prompts: Record<string, LoadedColumn> = {};
    for (const o of promptSpecs) {
      const src = raw[o.key];
      if (!src || src.length !== ep.length)
        throw new Error(
          `windows: episode ${index} column '${o.key}' has ${src?.length ?? 0} values, expected one task index per frame (${ep.length})`,
        );
      const map = promptMaps.get(o.name)!;
      const spec = { prompts: o.prompts!, promptEmbedding: o.promptEmbedding };
      const k = promptDim(spec);
      const vectors = o.prompts!.map((_, j) => promptFeatureVector(spec, j));
      const data = new Float32Array(ep.length * k);
      for (let i = 0; i < ep.length; i++) {
        const t = Number(src[i]!);
        const v = Number.isInteger(t) && t >= 0 && t < map.length ? map[t]! : -1;
        if (v < 0)
          throw new Error(
            `windows: episode ${index} frame ${i}: task ${t} (${JSON.stringify(opts.tasks?.[t] ?? null)}) is not among the prompts of feature '${o.name}' (${o.prompts!.map((p) => JSON.stringify(p)).join(", ")})`,
          );
        data.set(vectors[v]!, i * k);
      }
      prompts[o.name] = { data, rows: 1, dim: k };
    }
    const images: Record<string, Uint8Array> = {};
    for (const o of imageSpecs) {
      const { width, height } = o.image!;
      const rgb = await opts.images!(index, o.key, { width, height });
      if (rgb.length !== ep.length * height * width * 3)
        throw new Error(
          `windows: episode ${index} camera '${o.key}' has ${rgb.length} bytes, expected ${ep.length} frames x ${height}x${width}x3`,
        );
      images[o.name] = rgb;
    }
    loaded.push({ index, length: ep.length, cols, prompts, images });
    opts.onLoad?.(loaded.length, opts.episodes.length);
  }
  const starts: number[] = [];
  let frames = 0;
  for (const e of loaded) {
    starts.push(frames);
    frames += e.length;
  }
  if (frames === 0) throw new Error("windows: the split's episodes have no frames");

  const locate = (position: number): { episode: number; frame: number; k: number } => {
    if (!Number.isInteger(position) || position < 0 || position >= frames)
      throw new RangeError(`windows: position ${position} outside [0, ${frames})`);
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= position) lo = mid;
      else hi = mid - 1;
    }
    return { episode: loaded[lo]!.index, frame: position - starts[lo]!, k: lo };
  };

  const batchAt = (positions: readonly number[], shifts?: Int32Array): Batch => {
    const size = positions.length;
    const obs: Record<string, Float32Array> = {};
    for (const [name, p] of Object.entries(plans)) obs[name] = new Float32Array(size * history * p.rows * p.padded);
    for (const o of imageSpecs) obs[o.name] = new Float32Array(size * o.image!.height * o.image!.width * 3);
    const actions = new Float32Array(size * horizon * actionDim);
    const isPad = new Uint8Array(size * horizon);
    for (let b = 0; b < size; b++) {
      const { frame, k } = locate(positions[b]!);
      const ep = loaded[k]!;
      for (const [name, p] of Object.entries(plans)) {
        const col = ep.prompts[name] ?? ep.cols[p.key]!;
        const out = obs[name]!;
        const per = p.rows * p.padded;
        for (let h = 0; h < history; h++) {
          const t = Math.max(0, frame - (history - 1) + h);
          for (let r = 0; r < p.rows; r++) {
            const src = (t * p.rows + r) * p.dim;
            out.set(col.data.subarray(src, src + p.dim), (b * history + h) * per + r * p.padded);
          }
        }
      }
      for (const o of imageSpecs) {
        const { width, height } = o.image!;
        const dx = shifts ? shifts[2 * b]! : 0;
        const dy = shifts ? shifts[2 * b + 1]! : 0;
        writeImage(ep.images[o.name]!, frame, { width, height }, dx, dy, pixelNorms[o.name]!, obs[o.name]!, b);
      }
      const a = ep.cols[opts.action]!;
      for (let s = 0; s < horizon; s++) {
        const t = frame + s;
        if (t >= ep.length && maskPadding) isPad[b * horizon + s] = 1;
        const src = Math.min(t, ep.length - 1) * a.dim;
        actions.set(a.data.subarray(src, src + a.dim), (b * horizon + s) * actionDim);
      }
    }
    return { size, obs, actions, isPad };
  };

  const obsShapes: Record<string, number[]> = {};
  for (const [name, p] of Object.entries(plans)) obsShapes[name] = p.shape;
  for (const o of imageSpecs) obsShapes[o.name] = [o.image!.height, o.image!.width, 3];
  return {
    frames,
    episodes: loaded.map((e) => e.index),
    obsShapes,
    horizon,
    actionDim,
    next(size: number, rng: Rng): Batch {
      if (!Number.isInteger(size) || size < 1)
        throw new RangeError(`windows: batch size must be a positive integer, got ${size}`);
      const positions = new Array<number>(size);
      for (let b = 0; b < size; b++) positions[b] = rng.int(frames);
      if (imageSpecs.length === 0 || shift === 0) return batchAt(positions);
      const shifts = new Int32Array(2 * size);
      for (let i = 0; i < shifts.length; i++) shifts[i] = rng.int(2 * shift + 1) - shift;
      return batchAt(positions, shifts);
    },
    *epoch(size: number): Iterable<Batch> {
      if (!Number.isInteger(size) || size < 1)
        throw new RangeError(`windows: batch size must be a positive integer, got ${size}`);
      for (let start = 0; start < frames; start += size) {
        const end = Math.min(frames, start + size);
        yield batchAt(Array.from({ length: end - start }, (_, i) => start + i));
      }
    },
    batchAt: (positions: readonly number[]) => batchAt(positions),
    locate(position: number) {
      const { episode, frame } = locate(position);
      return { episode, frame };
    },
  };
}

/**
 * Writes frame `frame` of `rgb` (`[frames, height, width, 3]`), moved by (dx, dy) pixels with the
 * border repeated, normalised by channel, into window `b` of `out` (`[batch, height, width, 3]`).
 */
function writeImage(
  rgb: Uint8Array,
  frame: number,
  size: { width: number; height: number },
  dx: number,
  dy: number,
  norm: AffineNorm,
  out: Float32Array,
  b: number,
): void {
  const { width: w, height: h } = size;
  const src = frame * h * w * 3;
  const dst = b * h * w * 3;
  const [s0, s1, s2] = [norm.scale[0]!, norm.scale[1]!, norm.scale[2]!];
  const [o0, o1, o2] = [norm.offset[0]!, norm.offset[1]!, norm.offset[2]!];
  for (let y = 0; y < h; y++) {
    const sy = Math.min(h - 1, Math.max(0, y + dy));
    for (let x = 0; x < w; x++) {
      const sx = Math.min(w - 1, Math.max(0, x + dx));
      const i = src + (sy * w + sx) * 3;
      const j = dst + (y * w + x) * 3;
      out[j] = rgb[i]! * s0 + o0;
      out[j + 1] = rgb[i + 1]! * s1 + o1;
      out[j + 2] = rgb[i + 2]! * s2 + o2;
    }
  }
}

/** A train/validation split of episode indices. */
export interface EpisodeSplit {
  train: number[];
  val: number[];
}

/**
 * Splits episodes into train and validation. `episodes` is a count `N` (indices `0..N-1`) or the
 * list of episode indices. `spec`:
 * - `"a:b"` python-style half-open range of positions (`"8:10"`, `":2"`, `"-2:"`);
 * - `"3,7,9"` explicit positions;
 * - a fraction `0 <= f < 1` (`0.1`, `"0.1"`): `round(N f)` episodes (at least 1 if f > 0);
 * - an integer `n >= 1`: `n` episodes.
 * Fractions and counts take the last episodes, or a random subset with `rng`. Both lists come back
 * sorted; throws on a malformed spec, a position out of range, or a split leaving no training episode.
 */
export function splitEpisodes(episodes: number | readonly number[], spec: string | number, rng?: Rng): EpisodeSplit {
  const all = typeof episodes === "number" ? Array.from({ length: episodes }, (_, i) => i) : [...episodes];
  const total = all.length;
  if (typeof episodes === "number" && (!Number.isInteger(episodes) || episodes < 0))
    throw new RangeError(`splitEpisodes: episode count must be a non-negative integer, got ${episodes}`);
  const bad = (why: string): Error => new Error(`bad validation split '${spec}' for ${total} episodes: ${why}`);
  const text = String(spec).trim();
  const position = (s: string): number => {
    if (!/^-?\d+$/.test(s.trim())) throw bad(`'${s}' is not an integer`);
    const v = Number(s);
    const p = v < 0 ? total + v : v;
    if (p < 0 || p >= total) throw bad(`position ${v} outside the episodes 0..${total - 1}`);
    return p;
  };
  let valPositions: number[];
  if (text.includes(":")) {
    const parts = text.split(":");
    if (parts.length !== 2) throw bad("a range is 'start:end'");
    const [a, b] = parts as [string, string];
    const start = a.trim() === "" ? 0 : position(a);
    let end: number;
    if (b.trim() === "") end = total;
    else if (/^-?\d+$/.test(b.trim())) {
      const v = Number(b);
      end = v < 0 ? total + v : v;
      if (end < 0 || end > total) throw bad(`end ${v} outside 0..${total}`);
    } else throw bad(`'${b}' is not an integer`);
    if (end <= start) throw bad("the range is empty");
    valPositions = Array.from({ length: end - start }, (_, i) => start + i);
  } else if (text.includes(",")) {
    valPositions = [...new Set(text.split(",").map(position))];
  } else {
    const v = Number(text);
    if (text === "" || !Number.isFinite(v) || v < 0)
      throw bad("need a range 'a:b', a list 'i,j', a fraction in [0, 1) or a count");
    let n: number;
    if (v < 1) n = v === 0 ? 0 : Math.max(1, Math.round(total * v));
    else if (Number.isInteger(v)) n = v;
    else throw bad("a count must be an integer, a fraction must be < 1");
    if (n >= total && n > 0) throw bad(`${n} validation episodes leave none for training`);
    if (rng) valPositions = rng.shuffle(Array.from({ length: total }, (_, i) => i)).slice(0, n);
    else valPositions = Array.from({ length: n }, (_, i) => total - n + i);
  }
  const valSet = new Set(valPositions);
  if (valSet.size >= total) throw bad("no episodes left for training");
  const val = [...valSet].sort((x, y) => x - y).map((p) => all[p]!);
  const train = all.filter((_, p) => !valSet.has(p));
  return { train, val };
}
