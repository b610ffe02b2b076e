/**
 * A float64 reference evaluator of `DiffOps` on plain arrays (row-major), for gradient tests:
 * slow and obvious. Parameters come from a float64 weights map (missing ones are an error).
 */
import type { DiffOps } from "../../../policy/autodiff/ops.ts";
import type { ParamSpec } from "../../../policy/net/ops.ts";

/** A concrete float64 tensor. */
export interface F64 {
  shape: number[];
  data: Float64Array;
}

const sizeOf = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);
const stridesOf = (s: readonly number[]): number[] => {
  const st = new Array<number>(s.length).fill(1);
  for (let i = s.length - 2; i >= 0; i--) st[i] = st[i + 1]! * s[i + 1]!;
  return st;
};

/** Float64 `DiffOps` over `F64` values. */
export class F64Ops implements DiffOps<F64> {
  constructor(readonly weights: Map<string, F64>) {}

  param(spec: ParamSpec): F64 {
    const w = this.weights.get(spec.name);
    if (!w) throw new Error(`F64Ops: no weight '${spec.name}'`);
    if (w.shape.join() !== spec.shape.join())
      throw new Error(`F64Ops: '${spec.name}' is [${w.shape}], not [${spec.shape}]`);
    return w;
  }
  constant(values: Float32Array, shape: number[]): F64 {
    return { shape: [...shape], data: Float64Array.from(values) };
  }
  private zip(a: F64, b: F64, f: (x: number, y: number) => number): F64 {
    const r = Math.max(a.shape.length, b.shape.length);
    const pa = [...new Array<number>(r - a.shape.length).fill(1), ...a.shape];
    const pb = [...new Array<number>(r - b.shape.length).fill(1), ...b.shape];
    const shape = pa.map((d, i) => {
      const e = pb[i]!;
      if (d !== e && d !== 1 && e !== 1) throw new Error(`F64Ops: [${a.shape}] and [${b.shape}] do not broadcast`);
      return Math.max(d, e);
    });
    const sa = stridesOf(pa).map((s, i) => (pa[i] === 1 ? 0 : s));
    const sb = stridesOf(pb).map((s, i) => (pb[i] === 1 ? 0 : s));
    const so = stridesOf(shape);
    const out = new Float64Array(sizeOf(shape));
    for (let i = 0; i < out.length; i++) {
      let ia = 0;
      let ib = 0;
      let rem = i;
      for (let d = 0; d < r; d++) {
        const c = Math.floor(rem / so[d]!);
        rem -= c * so[d]!;
        ia += c * sa[d]!;
        ib += c * sb[d]!;
      }
      out[i] = f(a.data[ia]!, b.data[ib]!);
    }
    return { shape, data: out };
  }
  private map(x: F64, f: (v: number) => number): F64 {
    return { shape: [...x.shape], data: x.data.map(f) };
  }
  add(a: F64, b: F64): F64 {
    return this.zip(a, b, (x, y) => x + y);
  }
  sub(a: F64, b: F64): F64 {
    return this.zip(a, b, (x, y) => x - y);
  }
  mul(a: F64, b: F64): F64 {
    return this.zip(a, b, (x, y) => x * y);
  }
  div(a: F64, b: F64): F64 {
    return this.zip(a, b, (x, y) => x / y);
  }
  scale(a: F64, s: number): F64 {
    return this.map(a, (v) => v * s);
  }
  matMul(a: F64, b0: F64, opts: { transposeB?: boolean } = {}): F64 {
    const r = b0.shape.length;
    const b = opts.transposeB ? this.transpose(b0, [...[...Array(r - 2).keys()], r - 1, r - 2]) : b0;
    const [m, k] = a.shape.slice(-2) as [number, number];
    const [kb, n] = b.shape.slice(-2) as [number, number];
    if (k !== kb) throw new Error(`F64Ops.matMul: [${a.shape}] x [${b.shape}]`);
    const lead = a.shape.slice(0, -2);
    const batches = sizeOf(lead);
    const shared = b.shape.length === 2;
    if (!shared && b.shape.slice(0, -2).join() !== lead.join())
      throw new Error(`F64Ops.matMul: leading axes [${a.shape}] x [${b.shape}]`);
    const out = new Float64Array(batches * m * n);
    for (let z = 0; z < batches; z++) {
      const ao = z * m * k;
      const bo = shared ? 0 : z * k * n;
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let p = 0; p < k; p++) s += a.data[ao + i * k + p]! * b.data[bo + p * n + j]!;
          out[z * m * n + i * n + j] = s;
        }
    }
    return { shape: [...lead, m, n], data: out };
  }
  reshape(x: F64, shape: number[]): F64 {
    const known = sizeOf(shape.filter((d) => d !== -1));
    const s = shape.map((d) => (d === -1 ? x.data.length / known : d));
    if (sizeOf(s) !== x.data.length) throw new Error(`F64Ops.reshape: [${x.shape}] -> [${shape}]`);
    return { shape: s, data: x.data };
  }
  transpose(x: F64, perm: number[]): F64 {
    const shape = perm.map((p) => x.shape[p]!);
    const sx = stridesOf(x.shape);
    const so = stridesOf(shape);
    const out = new Float64Array(x.data.length);
    for (let i = 0; i < out.length; i++) {
      let rem = i;
      let src = 0;
      for (let d = 0; d < shape.length; d++) {
        const c = Math.floor(rem / so[d]!);
        rem -= c * so[d]!;
        src += c * sx[perm[d]!]!;
      }
      out[i] = x.data[src]!;
    }
    return { shape, data: out };
  }
  concat(xs: F64[], axis: number): F64 {
    const ax = axis < 0 ? axis + xs[0]!.shape.length : axis;
    const shape = [...xs[0]!.shape];
    shape[ax] = xs.reduce((s, x) => s + x.shape[ax]!, 0);
    const outer = sizeOf(shape.slice(0, ax));
    const out = new Float64Array(sizeOf(shape));
    let o = 0;
    for (let i = 0; i < outer; i++)
      for (const x of xs) {
        const inner = sizeOf(x.shape.slice(ax));
        out.set(x.data.subarray(i * inner, (i + 1) * inner), o);
        o += inner;
      }
    return { shape, data: out };
  }
  slice(x: F64, axis: number, start: number, end: number): F64 {
    const shape = [...x.shape];
    shape[axis] = end - start;
    const outer = sizeOf(x.shape.slice(0, axis));
    const inner = sizeOf(x.shape.slice(axis + 1));
    const out = new Float64Array(sizeOf(shape));
    const n = x.shape[axis]!;
    let o = 0;
    for (let i = 0; i < outer; i++) {
      out.set(x.data.subarray((i * n + start) * inner, (i * n + end) * inner), o);
      o += (end - start) * inner;
    }
    return { shape, data: out };
  }
  pad(x: F64, axis: number, before: number, after: number): F64 {
    const shape = [...x.shape];
    const n = shape[axis]!;
    shape[axis] = n + before + after;
    const outer = sizeOf(x.shape.slice(0, axis));
    const inner = sizeOf(x.shape.slice(axis + 1));
    const out = new Float64Array(sizeOf(shape));
    for (let i = 0; i < outer; i++)
      out.set(x.data.subarray(i * n * inner, (i + 1) * n * inner), (i * shape[axis]! + before) * inner);
    return { shape, data: out };
  }
  sin(x: F64): F64 {
    return this.map(x, Math.sin);
  }
  cos(x: F64): F64 {
    return this.map(x, Math.cos);
  }
  sigmoid(x: F64): F64 {
    return this.map(x, (v) => 1 / (1 + Math.exp(-v)));
  }
  silu(x: F64): F64 {
    return this.map(x, (v) => v / (1 + Math.exp(-v)));
  }
  rsqrt(x: F64): F64 {
    return this.map(x, (v) => 1 / Math.sqrt(v));
  }
  private rows(x: F64, f: (row: Float64Array) => Float64Array): F64 {
    const d = x.shape[x.shape.length - 1]!;
    const out = new Float64Array(x.data.length);
    for (let i = 0; i < x.data.length; i += d) out.set(f(x.data.subarray(i, i + d)), i);
    return { shape: [...x.shape], data: out };
  }
  softmax(x: F64): F64 {
    return this.rows(x, (r) => {
      const mx = Math.max(...r);
      const e = r.map((v) => Math.exp(v - mx));
      const s = e.reduce((a, b) => a + b, 0);
      return e.map((v) => v / s);
    });
  }
  layerNorm(x: F64, eps: number): F64 {
    return this.rows(x, (r) => {
      const mean = r.reduce((a, b) => a + b, 0) / r.length;
      const v = r.reduce((a, b) => a + (b - mean) ** 2, 0) / r.length;
      return r.map((u) => (u - mean) / Math.sqrt(v + eps));
    });
  }
  sumAxes(x: F64, axes: number[]): F64 {
    const shape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    const sx = stridesOf(x.shape);
    const so = stridesOf(shape);
    const out = new Float64Array(sizeOf(shape));
    for (let i = 0; i < x.data.length; i++) {
      let rem = i;
      let o = 0;
      for (let d = 0; d < shape.length; d++) {
        const c = Math.floor(rem / sx[d]!);
        rem -= c * sx[d]!;
        if (!axes.includes(d)) o += c * so[d]!;
      }
      out[o] = out[o]! + x.data[i]!;
    }
    return { shape, data: out };
  }
  contractRows(a: F64, b: F64): F64 {
    const k = a.shape[a.shape.length - 1]!;
    const n = b.shape[b.shape.length - 1]!;
    const rows = a.data.length / k;
    const out = new Float64Array(k * n);
    for (let r = 0; r < rows; r++)
      for (let i = 0; i < k; i++)
        for (let j = 0; j < n; j++) out[i * n + j] = out[i * n + j]! + a.data[r * k + i]! * b.data[r * n + j]!;
    return { shape: [k, n], data: out };
  }
  expandLike(x: F64, like: F64): F64 {
    return this.zip(x, { shape: like.shape, data: new Float64Array(like.data.length) }, (v) => v);
  }
}

/**
 * Central finite differences (h = 1e-6) of `loss` at 3 random coordinates of every parameter
 * `keep` accepts, against the tape's `grads`: the worst relative error and how many were checked.
 * Throws when a checked parameter has no gradient.
 */
export function finiteDifferenceCheck(
  weights: Map<string, F64>,
  grads: ReadonlyMap<string, F64 | undefined>,
  loss: () => number,
  rng: { int(n: number): number },
  keep: (name: string) => boolean = () => true,
): { worst: number; checked: number } {
  const h = 1e-6;
  let worst = 0;
  let checked = 0;
  for (const [name, w] of weights) {
    if (!keep(name)) continue;
    const g = grads.get(name);
    if (!g) throw new Error(`no gradient for parameter '${name}'`);
    for (let j = 0; j < 3; j++) {
      const i = rng.int(w.data.length);
      const x0 = w.data[i]!;
      w.data[i] = x0 + h;
      const up = loss();
      w.data[i] = x0 - h;
      const down = loss();
      w.data[i] = x0;
      const fd = (up - down) / (2 * h);
      worst = Math.max(worst, Math.abs(fd - g.data[i]!) / Math.max(1e-3, Math.abs(fd)));
      checked++;
    }
  }
  return { worst, checked };
}
