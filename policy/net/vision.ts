/**
 * The image encoder trained end to end with the head, written once over `Ops<T>` like every layer,
 * so it trains on onnxruntime and tfjs, differentiates on the tape and exports with no new op.
 *
 * Convolutions are expressed as matrix products over image patches: a `p` x `p` convolution of
 * stride `p` (the patchify stem, and the stride-2 down-sampling) is a reshape/transpose of the
 * image into non-overlapping patches followed by a dense layer; an unpadded 3x3 convolution of
 * stride 1 concatenates the 9 shifted views of the map (im2col) and applies a dense layer. Each is
 * followed by GroupNorm (a layer norm over each group's positions and channels, then a per-channel
 * affine) and SiLU. A spatial softmax (Levine et al.; Diffusion Policy's encoder ends with one)
 * turns each of the last convolution's feature maps into its expected position in the image, a
 * keypoint in [-1, 1]^2; the keypoints are grouped into the camera's observation tokens.
 *
 * Shapes: the input is the normalised image `[batch, height, width, 3]` (channels last); the output
 * `[batch, tokens, 2 * channels / tokens]`.
 */
import type { VisionConfig } from "./config.ts";
import type { Ops } from "./ops.ts";
import { dense } from "./layers.ts";

const GN_EPS = 1e-5;

/** A feature map: the tensor `[batch, h, w, c]` and its static sizes. */
interface FeatureMap<T> {
  x: T;
  h: number;
  w: number;
  c: number;
}

/** The encoder's output per camera: its tokens and their dim. */
export function visionTokens(v: VisionConfig): { tokens: number; dim: number } {
  return { tokens: v.tokens, dim: (2 * v.channels) / v.tokens };
}

/** The spatial size of the last feature map for an image of `height` x `width` (see `visionShapeIssue`). */
export function visionMapSize(v: VisionConfig, height: number, width: number): { h: number; w: number } {
  let h = height / v.stem;
  let w = width / v.stem;
  for (let s = 0; s < v.stages; s++) {
    h = Math.floor((h - 2) / 2);
    w = Math.floor((w - 2) / 2);
  }
  return { h: h - 2, w: w - 2 };
}

/**
 * Encodes a normalised camera image `[batch, height, width, 3]` into its observation tokens
 * `[batch, tokens, 2 * channels / tokens]`. Parameters are named `<name>.stem`, `<name>.stage<i>.*`,
 * `<name>.out`.
 */
export function encodeImage<T>(
  ops: Ops<T>,
  name: string,
  image: T,
  size: { height: number; width: number },
  v: VisionConfig,
): T {
  let m: FeatureMap<T> = { x: image, h: size.height, w: size.width, c: 3 };
  m = normAct(ops, `${name}.stem`, patchConv(ops, `${name}.stem`, m, v.stem, v.width), v.groups);
  for (let s = 0; s < v.stages; s++) {
    const p = `${name}.stage${s}`;
    m = normAct(ops, `${p}.conv`, conv3x3(ops, `${p}.conv`, m, v.width), v.groups);
    m = normAct(ops, `${p}.down`, patchConv(ops, `${p}.down`, evenCrop(ops, m), 2, v.width), v.groups);
  }
  const last = conv3x3(ops, `${name}.out`, m, v.channels);
  const keypoints = spatialSoftmax(ops, last);
  const { tokens, dim } = visionTokens(v);
  return ops.reshape(keypoints, [-1, tokens, dim]);
}

/** A `p` x `p` convolution of stride `p` (no overlap): patches `[batch, h/p * w/p, p*p*c]`, then dense. */
function patchConv<T>(ops: Ops<T>, name: string, m: FeatureMap<T>, p: number, out: number): FeatureMap<T> {
  const h = m.h / p;
  const w = m.w / p;
  const patches = ops.reshape(ops.transpose(ops.reshape(m.x, [-1, h, p, w, p, m.c]), [0, 1, 3, 2, 4, 5]), [
    -1,
    h * w,
    p * p * m.c,
  ]);
  return { x: dense(ops, name, patches, p * p * m.c, out), h, w, c: out };
}

/** An unpadded 3x3 convolution of stride 1: the 9 shifted views concatenated on channels, then dense. */
function conv3x3<T>(ops: Ops<T>, name: string, m: FeatureMap<T>, out: number): FeatureMap<T> {
  const h = m.h - 2;
  const w = m.w - 2;
  const grid = ops.reshape(m.x, [-1, m.h, m.w, m.c]);
  const views: T[] = [];
  for (let dy = 0; dy < 3; dy++)
    for (let dx = 0; dx < 3; dx++) views.push(ops.slice(ops.slice(grid, 1, dy, dy + h), 2, dx, dx + w));
  const cols = ops.reshape(ops.concat(views, 3), [-1, h * w, 9 * m.c]);
  return { x: dense(ops, name, cols, 9 * m.c, out), h, w, c: out };
}

/** Drops an odd last row and column so a stride-2 patch convolution tiles the map. */
function evenCrop<T>(ops: Ops<T>, m: FeatureMap<T>): FeatureMap<T> {
  const h = m.h - (m.h % 2);
  const w = m.w - (m.w % 2);
  if (h === m.h && w === m.w) return m;
  let x = ops.reshape(m.x, [-1, m.h, m.w, m.c]);
  if (h !== m.h) x = ops.slice(x, 1, 0, h);
  if (w !== m.w) x = ops.slice(x, 2, 0, w);
  return { x, h, w, c: m.c };
}

/** GroupNorm over `[batch, h*w, c]` with `groups` groups and a per-channel affine, then SiLU. */
function normAct<T>(ops: Ops<T>, name: string, m: FeatureMap<T>, groups: number): FeatureMap<T> {
  const n = m.h * m.w;
  const g = groups;
  const cg = m.c / g;
  const grouped = ops.reshape(ops.transpose(ops.reshape(m.x, [-1, n, g, cg]), [0, 2, 1, 3]), [-1, g, n * cg]);
  const normed = ops.reshape(ops.transpose(ops.reshape(ops.layerNorm(grouped, GN_EPS), [-1, g, n, cg]), [0, 2, 1, 3]), [
    -1,
    n,
    m.c,
  ]);
  const gamma = ops.param({ name: `${name}.gn.weight`, shape: [m.c], init: { kind: "ones" } });
  const beta = ops.param({ name: `${name}.gn.bias`, shape: [m.c], init: { kind: "zeros" } });
  return { ...m, x: ops.silu(ops.add(ops.mul(normed, gamma), beta)) };
}

/** Each channel's softmax over positions, its expected (x, y) in [-1, 1]: `[batch, c, 2]`. */
function spatialSoftmax<T>(ops: Ops<T>, m: FeatureMap<T>): T {
  const n = m.h * m.w;
  const coords = new Float32Array(n * 2);
  for (let r = 0; r < m.h; r++)
    for (let c = 0; c < m.w; c++) {
      const i = r * m.w + c;
      coords[2 * i] = m.w === 1 ? 0 : (2 * c) / (m.w - 1) - 1;
      coords[2 * i + 1] = m.h === 1 ? 0 : (2 * r) / (m.h - 1) - 1;
    }
  const attention = ops.softmax(ops.transpose(ops.reshape(m.x, [-1, n, m.c]), [0, 2, 1]));
  return ops.matMul(attention, ops.constant(coords, [n, 2]));
}

/** An observation feature as a head reads it (`ObsFeature` of `config.ts`). */
interface FeatureLike {
  name: string;
  shape: readonly number[];
  kind?: "image" | undefined;
}

/**
 * A feature's tokens as a head consumes them: a vector `[d]` is `x` itself (n = 1), an embedding
 * `[n, d]` its n rows, a camera the encoder's tokens (its parameters under `obs.<name>.vision`).
 */
export function featureTokens<T>(
  ops: Ops<T>,
  f: FeatureLike,
  x: T,
  v: VisionConfig,
): { x: T; tokens: number; dim: number } {
  if (f.kind === "image") {
    const [height, width] = f.shape as [number, number, number];
    const out = encodeImage(ops, `obs.${f.name}.vision`, x, { height, width }, v);
    return { x: out, ...visionTokens(v) };
  }
  return { x, tokens: f.shape.length === 2 ? f.shape[0]! : 1, dim: f.shape[f.shape.length - 1]! };
}

/** The number of observation tokens a feature gives the head (see {@link featureTokens}). */
export function featureTokenCount(f: FeatureLike, v: VisionConfig): number {
  if (f.kind === "image") return v.tokens;
  return f.shape.length === 2 ? f.shape[0]! : 1;
}
