/**
 * Layers written once over `Ops<T>`: dense, sinusoidal time embedding, adaptive-norm modulation,
 * multi-head attention. Architectures compose these; adapters never see them.
 */
import type { Ops } from "./ops.ts";

/** `x @ W + b` over the last axis: x `[..., inDim]` -> `[..., outDim]`; W `[inDim, outDim]`. */
export function dense<T>(
  ops: Ops<T>,
  name: string,
  x: T,
  inDim: number,
  outDim: number,
  opts: { init?: "glorot" | "zeros"; bias?: "on" | "off" } = {},
): T {
  const w = ops.param({
    name: `${name}.weight`,
    shape: [inDim, outDim],
    init: opts.init === "zeros" ? { kind: "zeros" } : { kind: "glorot" },
  });
  const y = ops.matMul(x, w);
  if (opts.bias === "off") return y;
  return ops.add(y, ops.param({ name: `${name}.bias`, shape: [outDim], init: { kind: "zeros" } }));
}

/**
 * Frequencies (radians per unit t) of the sinusoidal time embedding: periods geometric from
 * `minPeriod` to `maxPeriod` (pi0: 4e-3 to 4.0), `dim / 2` of them.
 */
export function timeFrequencies(dim: number, minPeriod = 4e-3, maxPeriod = 4.0): Float32Array {
  const half = dim / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const frac = half === 1 ? 0 : i / (half - 1);
    const period = minPeriod * Math.pow(maxPeriod / minPeriod, frac);
    out[i] = (2 * Math.PI) / period;
  }
  return out;
}

/** Sinusoidal embedding of per-token time: t `[batch, tokens]` -> `[batch, tokens, dim]` (sin then cos). */
export function timeEmbedding<T>(ops: Ops<T>, t: T, tokens: number, dim: number): T {
  const freqs = ops.constant(timeFrequencies(dim), [1, 1, dim / 2]);
  const angles = ops.mul(ops.reshape(t, [-1, tokens, 1]), freqs);
  return ops.concat([ops.sin(angles), ops.cos(angles)], 2);
}

/** `x * (1 + scale) + shift`, the adaptive-norm modulation (scale and shift broadcast against x). */
export function modulate<T>(ops: Ops<T>, x: T, shift: T, scale: T): T {
  return ops.add(ops.add(x, ops.mul(x, scale)), shift);
}

/** Splits the last axis of x `[..., n * size]` into n pieces of `size`. */
export function chunks<T>(ops: Ops<T>, x: T, axis: number, n: number, size: number): T[] {
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(ops.slice(x, axis, i * size, (i + 1) * size));
  return out;
}

/** Sizes of a multi-head attention layer. */
export interface AttentionShape {
  width: number;
  heads: number;
}

/** Projects keys `[batch, n, width]` to per-head transposed keys `[batch, heads, headDim, n]`. */
export function headsKeys<T>(ops: Ops<T>, k: T, n: number, s: AttentionShape): T {
  return ops.transpose(ops.reshape(k, [-1, n, s.heads, s.width / s.heads]), [0, 2, 3, 1]);
}

/** Splits values or queries `[batch, n, width]` into heads `[batch, heads, n, headDim]`. */
export function headsValues<T>(ops: Ops<T>, v: T, n: number, s: AttentionShape): T {
  return ops.transpose(ops.reshape(v, [-1, n, s.heads, s.width / s.heads]), [0, 2, 1, 3]);
}

/**
 * Scaled dot-product attention of queries `[batch, L, width]` over prepared keys
 * `[batch, heads, headDim, N]` and values `[batch, heads, N, headDim]`; returns `[batch, L, width]`
 * before the output projection.
 */
export function attend<T>(ops: Ops<T>, q: T, keysT: T, values: T, queries: number, s: AttentionShape): T {
  const qh = headsValues(ops, q, queries, s);
  const scores = ops.scale(ops.matMul(qh, keysT), 1 / Math.sqrt(s.width / s.heads));
  const out = ops.matMul(ops.softmax(scores), values);
  return ops.reshape(ops.transpose(out, [0, 2, 1, 3]), [-1, queries, s.width]);
}
