/**
 * The primitives a gradient is written in: `Ops` plus the few a backward pass needs that a forward
 * pass does not (reductions, broadcasting back, zero-padding, division and 1/sqrt).
 *
 * An adapter that implements `DiffOps` can run the vector-Jacobian products `Tape` emits: the ONNX
 * adapter (`policy/onnx/ops.ts`) writes them as graph nodes. Shape rules are those of `Ops`: -1 is
 * the dynamic batch dimension; axes here are non-negative.
 */
import type { Ops } from "../net/ops.ts";

/** `Ops` plus the primitives of a backward pass. */
export interface DiffOps<T> extends Ops<T> {
  /** Sums x over `axes` (non-negative, distinct), keeping each as a size-1 axis. */
  sumAxes(x: T, axes: number[]): T;
  /** Broadcasts x to the shape of `like` (numpy rules; x's rank may be smaller). */
  expandLike(x: T, like: T): T;
  /** Zero-pads axis `axis` (static) with `before` zeros in front and `after` behind. */
  pad(x: T, axis: number, before: number, after: number): T;
  /** Elementwise a / b with broadcasting. */
  div(a: T, b: T): T;
  /** Elementwise 1 / sqrt(x). */
  rsqrt(x: T): T;
  /**
   * a `[..., k]` and b `[..., n]` of the same leading shape -> `[k, n]`, the sum over every leading
   * position of the outer product a^T b: a shared weight's gradient, one product over all rows.
   */
  contractRows(a: T, b: T): T;
}
