/**
 * Counting the work of a network description: an `Ops` over shapes that adds up the multiply-add
 * FLOPs of every matrix product (2 m k n) for a concrete batch size. Elementwise work is ignored,
 * as in the usual "model FLOPs" accounting; a training step is taken as 3x the forward pass.
 *
 * Values carry whether they depend on a runtime input: a product of constants (parameters, a
 * constant time) is folded away by onnxruntime at load time and is not counted as runtime work.
 */
import type { Ops, ParamSpec } from "./ops.ts";
import type { ActionHead } from "./head.ts";

/** A value's shape and whether it depends on a runtime input. */
export interface Abstract {
  shape: number[];
  dynamic: boolean;
}

const same = (x: Abstract): Abstract => x;

/** Shape-tracking `Ops` that counts matMul FLOPs on dynamic values. */
export class FlopCounter implements Ops<Abstract> {
  flops = 0;

  param(spec: ParamSpec): Abstract {
    return { shape: spec.shape.slice(), dynamic: false };
  }
  constant(_values: Float32Array, shape: number[]): Abstract {
    return { shape: shape.slice(), dynamic: false };
  }
  private broadcast(a: Abstract, b: Abstract): Abstract {
    const r = Math.max(a.shape.length, b.shape.length);
    const shape: number[] = [];
    for (let i = 0; i < r; i++)
      shape.push(Math.max(a.shape[a.shape.length - r + i] ?? 1, b.shape[b.shape.length - r + i] ?? 1));
    return { shape, dynamic: a.dynamic || b.dynamic };
  }
  add(a: Abstract, b: Abstract): Abstract {
    return this.broadcast(a, b);
  }
  sub(a: Abstract, b: Abstract): Abstract {
    return this.broadcast(a, b);
  }
  mul(a: Abstract, b: Abstract): Abstract {
    return this.broadcast(a, b);
  }
  scale = same;
  matMul(a: Abstract, b: Abstract, opts?: { transposeB?: boolean }): Abstract {
    const m = a.shape[a.shape.length - 2] ?? 1;
    const k = a.shape[a.shape.length - 1]!;
    const n = opts?.transposeB ? b.shape[b.shape.length - 2]! : b.shape[b.shape.length - 1]!;
    const lead = a.shape.slice(0, -2);
    const dynamic = a.dynamic || b.dynamic;
    if (dynamic) this.flops += 2 * m * k * n * lead.reduce((x, y) => x * y, 1);
    return { shape: [...lead, m, n], dynamic };
  }
  reshape(x: Abstract, shape: number[]): Abstract {
    const total = x.shape.reduce((p, q) => p * q, 1);
    const known = shape.filter((d) => d !== -1).reduce((p, q) => p * q, 1);
    return { shape: shape.map((d) => (d === -1 ? total / known : d)), dynamic: x.dynamic };
  }
  transpose(x: Abstract, perm: number[]): Abstract {
    return { shape: perm.map((p) => x.shape[p]!), dynamic: x.dynamic };
  }
  concat(xs: Abstract[], axis: number): Abstract {
    const shape = xs[0]!.shape.slice();
    shape[axis] = xs.reduce((s, x) => s + x.shape[axis]!, 0);
    return { shape, dynamic: xs.some((x) => x.dynamic) };
  }
  slice(x: Abstract, axis: number, start: number, end: number): Abstract {
    const shape = x.shape.slice();
    shape[axis] = end - start;
    return { shape, dynamic: x.dynamic };
  }
  sin = same;
  cos = same;
  sigmoid = same;
  silu = same;
  softmax = same;
  layerNorm = same;
}

/** Options of `headFlops`. */
export interface HeadFlopsOptions {
  /**
   * `input` (training: every sample has its own t) or `constant` (a sampler's step: one t for the
   * whole batch, so the time path folds into constants).
   */
  time: "input" | "constant";
}

/** MatMul FLOPs of one `encode` and of one `velocity` evaluation at `batch`. */
export function headFlops(
  head: ActionHead,
  batch: number,
  opts: HeadFlopsOptions = { time: "input" },
): { encode: number; velocity: number } {
  const c = new FlopCounter();
  const obs = Object.fromEntries(head.config.obs.map((f) => [f.name, { shape: [batch, ...f.shape], dynamic: true }]));
  const ctx = head.encode(c, obs);
  const encode = c.flops;
  const { horizon: H, actionDim: A } = head.config;
  const t = opts.time === "input" ? { shape: [batch, 1], dynamic: true } : { shape: [1, 1], dynamic: false };
  head.velocity(c, ctx, { shape: [batch, H, A], dynamic: true }, t, { timeTokens: 1 });
  return { encode, velocity: c.flops - encode };
}
