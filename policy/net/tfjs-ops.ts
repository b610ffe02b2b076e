/**
 * The tfjs adapter of `Ops`: runs a network description eagerly on tfjs tensors, holding its
 * parameters as trainable `tf.Variable`s keyed by parameter name.
 *
 * Callers run forward passes inside `tf.tidy` (or `tf.variableGrads`), which disposes every
 * intermediate; the variables live until `dispose()`.
 */
import * as tf from "@tensorflow/tfjs";
import type { Init, NamedArray, Ops, ParamSpec } from "./ops.ts";
import { Rng } from "../random.ts";

export type { NamedArray };

/** Options for `TfjsOps`. */
export interface TfjsOpsOptions {
  /** Seed for initialising parameters that are not loaded. */
  seed: number;
  /** Weights to use instead of initialising (must match name and shape). */
  weights?: Map<string, NamedArray>;
  /** `train` makes new parameters trainable variables; `frozen` makes them constants. */
  mode?: "train" | "frozen";
}

/** Runs `Ops` on tfjs tensors; parameters are created on first use. */
export class TfjsOps implements Ops<tf.Tensor> {
  private readonly params = new Map<string, tf.Variable>();
  private readonly rng: Rng;
  private readonly weights: Map<string, NamedArray> | undefined;
  private readonly trainable: boolean;

  constructor(opts: TfjsOpsOptions) {
    this.rng = new Rng(opts.seed);
    this.weights = opts.weights;
    this.trainable = (opts.mode ?? "train") === "train";
  }

  /** All parameters created so far, by name, in creation order. */
  variables(): Map<string, tf.Variable> {
    return this.params;
  }

  /** Copies the current parameter values out (for checkpoints). */
  snapshot(): Map<string, NamedArray> {
    const out = new Map<string, NamedArray>();
    for (const [name, v] of this.params)
      out.set(name, { shape: v.shape.slice(), data: (v.dataSync() as Float32Array).slice() });
    return out;
  }

  /** Overwrites existing parameters with `weights` (names and shapes must match). */
  assign(weights: Map<string, NamedArray>): void {
    for (const [name, w] of weights) {
      const v = this.params.get(name);
      if (!v) throw new Error(`weight '${name}' has no parameter in the model`);
      checkShape(name, v.shape, w.shape);
      v.assign(tf.tensor(w.data, w.shape, "float32"));
    }
  }

  /** Disposes every parameter. */
  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
  }

  param(spec: ParamSpec): tf.Tensor {
    const existing = this.params.get(spec.name);
    if (existing) {
      checkShape(spec.name, existing.shape, spec.shape);
      return existing;
    }
    let values: Float32Array;
    const loaded = this.weights?.get(spec.name);
    if (this.weights) {
      if (!loaded) throw new Error(`weights have no parameter '${spec.name}' (shape [${spec.shape.join(", ")}])`);
      checkShape(spec.name, loaded.shape, spec.shape);
      values = loaded.data;
    } else {
      values = initValues(spec.shape, spec.init, this.rng);
    }
    // tfjs variable names are process-global, so they are left to tfjs; ours are the map keys.
    const v = tf.tidy(() => tf.variable(tf.tensor(values, spec.shape, "float32"), this.trainable));
    this.params.set(spec.name, v);
    return v;
  }

  constant(values: Float32Array, shape: number[]): tf.Tensor {
    return tf.tensor(values, shape, "float32");
  }

  add(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
    return tf.add(a, b);
  }
  sub(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
    return tf.sub(a, b);
  }
  mul(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
    return tf.mul(a, b);
  }
  scale(a: tf.Tensor, s: number): tf.Tensor {
    return tf.mul(a, tf.scalar(s));
  }

  matMul(a: tf.Tensor, b: tf.Tensor, opts?: { transposeB?: boolean }): tf.Tensor {
    const tb = opts?.transposeB ?? false;
    if (b.rank === 2 && a.rank > 2) {
      // One large 2-D product instead of a broadcast batch product.
      const k = a.shape[a.rank - 1]!;
      const n = tb ? b.shape[0]! : b.shape[1]!;
      const y = tf.matMul(tf.reshape(a, [-1, k]), b, false, tb);
      return tf.reshape(y, [...a.shape.slice(0, -1), n]);
    }
    if (a.rank > 3) {
      // tfjs batch matmul is rank-3: fold the leading axes.
      const lead = a.shape.slice(0, -2);
      const a3 = tf.reshape(a, [-1, a.shape[a.rank - 2]!, a.shape[a.rank - 1]!]);
      const b3 = tf.reshape(b, [-1, b.shape[b.rank - 2]!, b.shape[b.rank - 1]!]);
      const y = tf.matMul(a3, b3, false, tb);
      return tf.reshape(y, [...lead, y.shape[1]!, y.shape[2]!]);
    }
    return tf.matMul(a, b, false, tb);
  }

  reshape(x: tf.Tensor, shape: number[]): tf.Tensor {
    return tf.reshape(x, shape);
  }
  transpose(x: tf.Tensor, perm: number[]): tf.Tensor {
    return tf.transpose(x, perm);
  }
  concat(xs: tf.Tensor[], axis: number): tf.Tensor {
    return tf.concat(xs, axis);
  }
  slice(x: tf.Tensor, axis: number, start: number, end: number): tf.Tensor {
    const begin = x.shape.map(() => 0);
    const size = x.shape.map(() => -1);
    begin[axis] = start;
    size[axis] = end - start;
    return tf.slice(x, begin, size);
  }
  sin(x: tf.Tensor): tf.Tensor {
    return tf.sin(x);
  }
  cos(x: tf.Tensor): tf.Tensor {
    return tf.cos(x);
  }
  sigmoid(x: tf.Tensor): tf.Tensor {
    return tf.sigmoid(x);
  }
  silu(x: tf.Tensor): tf.Tensor {
    return tf.mul(x, tf.sigmoid(x));
  }
  softmax(x: tf.Tensor): tf.Tensor {
    return tf.softmax(x);
  }
  layerNorm(x: tf.Tensor, eps: number): tf.Tensor {
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, tf.scalar(eps))));
  }
}

function checkShape(name: string, have: readonly number[], want: readonly number[]): void {
  if (have.length !== want.length || have.some((d, i) => d !== want[i])) {
    throw new Error(`parameter '${name}' has shape [${have.join(", ")}], expected [${want.join(", ")}]`);
  }
}

/** Initial values of a parameter of `shape` under `init`, drawn from `rng`. */
export function initValues(shape: number[], init: Init, rng: Rng): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  switch (init.kind) {
    case "zeros":
      break;
    case "ones":
      out.fill(1);
      break;
    case "normal":
      for (let i = 0; i < n; i++) out[i] = rng.normal() * init.std;
      break;
    case "glorot": {
      const fanOut = shape[shape.length - 1] ?? 1;
      const fanIn = shape.length >= 2 ? shape[shape.length - 2]! : fanOut;
      const limit = Math.sqrt(6 / (fanIn + fanOut));
      for (let i = 0; i < n; i++) out[i] = (2 * rng.uniform() - 1) * limit;
      break;
    }
    default: {
      const never: never = init;
      throw new TypeError(`unknown init ${JSON.stringify(never)}`);
    }
  }
  return out;
}
