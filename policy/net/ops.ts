/**
 * The primitive operations a network description is written in.
 *
 * Every architecture in `policy/net/` is a function over `Ops<T>`; it never names tfjs or ONNX.
 * The tfjs adapter (`policy/net/tfjs-ops.ts`) runs it eagerly on tensors with trainable variables;
 * the ONNX adapter (`policy/onnx/`) runs the same function over symbolic values and emits graph
 * nodes. One description, two executions, and a parity test proves they agree.
 *
 * Shape rules: numpy broadcasting for elementwise ops; only the leading (batch) dimension is
 * dynamic, written as -1 in `reshape`. Every other dimension is static and known to the description.
 */

/** How a parameter is initialised when a model is created from scratch. */
export type Init =
  | { kind: "zeros" }
  | { kind: "ones" }
  /** Normal(0, std). */
  | { kind: "normal"; std: number }
  /** Uniform(-limit, limit) with limit = sqrt(6 / (fanIn + fanOut)); fans from the last two dims. */
  | { kind: "glorot" };

/** A learned parameter: its unique dotted name (`blocks.0.attn.q.weight`), shape and initialiser. */
export interface ParamSpec {
  name: string;
  shape: number[];
  init: Init;
}

/** A float32 array with its shape: a parameter's value as checkpoints, tfjs and ONNX exchange it. */
export interface NamedArray {
  shape: number[];
  data: Float32Array;
}

/** Primitive operations over tensors of type `T` (a tfjs tensor, or a symbolic ONNX value). */
export interface Ops<T> {
  /** The parameter named `spec.name`, created on first use or loaded from weights. */
  param(spec: ParamSpec): T;
  /** A constant float32 tensor. */
  constant(values: Float32Array, shape: number[]): T;

  add(a: T, b: T): T;
  sub(a: T, b: T): T;
  mul(a: T, b: T): T;
  /** Multiplies by a scalar. */
  scale(a: T, s: number): T;

  /**
   * Matrix product over the last two axes: a `[..., m, k]` times b `[..., k, n]` (or b `[n, k]` with
   * `transposeB`). When b has rank 2 it is shared across a's leading axes; otherwise the leading
   * axes of a and b must be equal.
   */
  matMul(a: T, b: T, opts?: { transposeB?: boolean }): T;

  /** Reshape; -1 is allowed once and stands for the (dynamic) batch dimension. */
  reshape(x: T, shape: number[]): T;
  transpose(x: T, perm: number[]): T;
  concat(xs: T[], axis: number): T;
  /** x[..., start:end, ...] along one (non-negative, static) axis. */
  slice(x: T, axis: number, start: number, end: number): T;

  sin(x: T): T;
  cos(x: T): T;
  sigmoid(x: T): T;
  /** x * sigmoid(x). */
  silu(x: T): T;
  /** Softmax over the last axis. */
  softmax(x: T): T;
  /** (x - mean) / sqrt(var + eps) over the last axis; no learned affine. */
  layerNorm(x: T, eps: number): T;
}
