/**
 * Reverse-mode differentiation over `Ops`: `Tape` runs a network description on an inner
 * `DiffOps<T>` (computing or emitting the forward pass as usual) while recording every primitive
 * op, then `gradients` walks the record backwards and emits each op's vector-Jacobian product in
 * the inner adapter's own primitives. Over the ONNX adapter that writes the backward pass into the
 * same graph; over a float64 evaluator it computes exact gradients for tests.
 *
 * Forward mode shares the record: `tangents` pushes tangents of parameters or `variable` inputs
 * through the same ops (Jacobian-vector products, exact), each op's rule again in the inner
 * adapter's primitives.
 *
 * Only values that depend on a parameter or a `variable` are recorded ("live"); constants,
 * observations and other inputs get no gradient. Shapes are tracked here (-1 = the dynamic batch dimension, as in `Ops`)
 * so that every broadcast can be summed back to its operand's shape.
 */
import type { ParamSpec } from "../net/ops.ts";
import type { DiffOps } from "./ops.ts";

/** A value on the tape: the inner adapter's value, its shape, and whether a parameter reaches it. */
export interface Traced<T> {
  readonly id: number;
  readonly value: T;
  readonly shape: readonly number[];
  /** True when some parameter flows into it (it gets a gradient). */
  readonly live: boolean;
}

/** One recorded op: its output, its inputs and the vector-Jacobian product of each input. */
interface Entry<T> {
  out: Traced<T>;
  inputs: readonly Traced<T>[];
  /** Input gradients for the output gradient `g`; computed only where `need[i]`. */
  vjp: (g: T, need: readonly boolean[]) => (T | undefined)[];
  /** The output's tangent for the inputs' tangents `d` (undefined = zero; at least one is set). */
  jvp: (d: readonly (T | undefined)[]) => T;
}

const BATCH = -1;

/** Records a forward pass over `inner`; `gradients` emits the backward pass into `inner`. */
export class Tape<T> implements DiffOps<Traced<T>> {
  private readonly entries: Entry<T>[] = [];
  private readonly params = new Map<string, Traced<T>>();
  private nextId = 0;

  constructor(readonly inner: DiffOps<T>) {}

  /** Wraps a value computed outside the tape (a graph input, a batch tensor): it gets no gradient. */
  input(value: T, shape: readonly number[]): Traced<T> {
    return this.leaf(value, shape, false);
  }

  /**
   * Wraps an input that is differentiated like a parameter: it can carry a tangent (`tangents`),
   * and the ops it feeds are recorded.
   */
  variable(value: T, shape: readonly number[]): Traced<T> {
    return this.leaf(value, shape, true);
  }

  /**
   * Forward mode: the tangents of `outputs` (Jacobian-vector products) given the tangents `seeds`
   * of some parameters or variables (each of its value's shape), by tangent propagation over the
   * recorded ops in order. `undefined` for an output no seeded value reaches. Emits the tangent ops
   * into the inner adapter.
   */
  tangents(seeds: ReadonlyMap<Traced<T>, T>, outputs: readonly Traced<T>[]): (T | undefined)[] {
    const tan = new Map<number, T>();
    for (const [x, t] of seeds) tan.set(x.id, t);
    for (const e of this.entries) {
      const d = e.inputs.map((x) => tan.get(x.id));
      if (d.every((t) => t === undefined)) continue;
      tan.set(e.out.id, e.jvp(d));
    }
    return outputs.map((y) => tan.get(y.id));
  }

  /** The parameters read so far, by name, in first-use order. */
  paramSpecs(): Map<string, Traced<T>> {
    return this.params;
  }

  /**
   * Gradients of `output` (a value on this tape) with respect to every parameter read, by name in
   * first-use order; `undefined` for a parameter the output does not depend on. The output's own
   * gradient is `seed` (default: ones, for a scalar loss pass `constant([1], [])`). Emits the
   * backward ops into the inner adapter; may be called once per output.
   */
  gradients(output: Traced<T>, seed?: T): Map<string, T | undefined> {
    const grads = new Map<number, T>();
    if (output.live) {
      const size = output.shape.reduce((a, b) => a * b, 1);
      if (seed === undefined && size < 0)
        throw new Error(`Tape.gradients: output [${output.shape}] has a batch dimension: pass a seed`);
      grads.set(output.id, seed ?? this.inner.constant(new Float32Array(size).fill(1), [...output.shape]));
    }
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const e = this.entries[i]!;
      const g = grads.get(e.out.id);
      if (g === undefined) continue;
      grads.delete(e.out.id);
      const need = e.inputs.map((x) => x.live);
      const gin = e.vjp(g, need);
      e.inputs.forEach((x, j) => {
        const gj = gin[j];
        if (!need[j] || gj === undefined) return;
        const prev = grads.get(x.id);
        grads.set(x.id, prev === undefined ? gj : this.inner.add(prev, gj));
      });
    }
    const out = new Map<string, T | undefined>();
    for (const [name, p] of this.params) out.set(name, grads.get(p.id));
    return out;
  }

  // ---- Ops ----

  param(spec: ParamSpec): Traced<T> {
    const got = this.params.get(spec.name);
    if (got) return got;
    const p = this.leaf(this.inner.param(spec), spec.shape, true);
    this.params.set(spec.name, p);
    return p;
  }

  constant(values: Float32Array, shape: number[]): Traced<T> {
    return this.leaf(this.inner.constant(values, shape), shape, false);
  }

  add(a: Traced<T>, b: Traced<T>): Traced<T> {
    const shape = broadcastShape("add", a.shape, b.shape);
    const y = this.inner.add(a.value, b.value);
    return this.record(
      y,
      shape,
      [a, b],
      (g, need) => [
        need[0] ? this.sumTo(g, shape, a.shape) : undefined,
        need[1] ? this.sumTo(g, shape, b.shape) : undefined,
      ],
      ([da, db]) =>
        this.sumTangents([da && this.widen(da, a.shape, y, shape), db && this.widen(db, b.shape, y, shape)]),
    );
  }

  sub(a: Traced<T>, b: Traced<T>): Traced<T> {
    const shape = broadcastShape("sub", a.shape, b.shape);
    const y = this.inner.sub(a.value, b.value);
    return this.record(
      y,
      shape,
      [a, b],
      (g, need) => [
        need[0] ? this.sumTo(g, shape, a.shape) : undefined,
        need[1] ? this.sumTo(this.inner.scale(g, -1), shape, b.shape) : undefined,
      ],
      ([da, db]) =>
        this.sumTangents([
          da && this.widen(da, a.shape, y, shape),
          db && this.widen(this.inner.scale(db, -1), b.shape, y, shape),
        ]),
    );
  }

  mul(a: Traced<T>, b: Traced<T>): Traced<T> {
    const shape = broadcastShape("mul", a.shape, b.shape);
    const o = this.inner;
    return this.record(
      o.mul(a.value, b.value),
      shape,
      [a, b],
      (g, need) => [
        need[0] ? this.sumTo(o.mul(g, b.value), shape, a.shape) : undefined,
        need[1] ? this.sumTo(o.mul(g, a.value), shape, b.shape) : undefined,
      ],
      ([da, db]) => this.sumTangents([da && o.mul(da, b.value), db && o.mul(a.value, db)]),
    );
  }

  div(a: Traced<T>, b: Traced<T>): Traced<T> {
    const shape = broadcastShape("div", a.shape, b.shape);
    const o = this.inner;
    const y = o.div(a.value, b.value);
    // d(a/b)/da = 1/b; d(a/b)/db = -(a/b)/b.
    return this.record(
      y,
      shape,
      [a, b],
      (g, need) => {
        const gb = need[0] || need[1] ? o.div(g, b.value) : undefined;
        return [
          need[0] ? this.sumTo(gb!, shape, a.shape) : undefined,
          need[1] ? this.sumTo(o.scale(o.mul(gb!, y), -1), shape, b.shape) : undefined,
        ];
      },
      ([da, db]) =>
        o.div(this.sumTangents([da && this.widen(da, a.shape, y, shape), db && o.scale(o.mul(y, db), -1)]), b.value),
    );
  }

  scale(a: Traced<T>, s: number): Traced<T> {
    return this.record(
      this.inner.scale(a.value, s),
      a.shape,
      [a],
      (g) => [this.inner.scale(g, s)],
      ([d]) => this.inner.scale(d!, s),
    );
  }

  matMul(a: Traced<T>, b: Traced<T>, opts: { transposeB?: boolean } = {}): Traced<T> {
    const tb = opts.transposeB ?? false;
    const as = a.shape;
    const bs = b.shape;
    if (as.length < 2 || bs.length < 2)
      throw new Error(`Tape.matMul: operands need rank >= 2, got [${as}] and [${bs}]`);
    const [m, k] = as.slice(-2) as [number, number];
    const [kb, n] = (tb ? bs.slice(-2).reverse() : bs.slice(-2)) as [number, number];
    if (k !== kb)
      throw new Error(`Tape.matMul: inner dimensions differ: [${as}] x [${bs}]${tb ? " (b transposed)" : ""}`);
    const lead = broadcastShape("matMul", as.slice(0, -2), bs.slice(0, -2));
    const shape = [...lead, m, n];
    const o = this.inner;
    const vjp = (g: T, need: readonly boolean[]): (T | undefined)[] => {
      // y = a @ op(b): da = g @ op(b)^T; d op(b) = a^T @ g.
      const ga = need[0] ? this.sumTo(o.matMul(g, b.value, { transposeB: !tb }), shape, as) : undefined;
      if (!need[1]) return [ga, undefined];
      let gb: T;
      if (bs.length === 2) {
        // b is shared across a's leading axes: one product over all rows.
        gb = tb ? o.contractRows(g, a.value) : o.contractRows(a.value, g);
      } else {
        const r = shape.length;
        const swap = [...Array(r).keys()];
        swap[r - 2] = r - 1;
        swap[r - 1] = r - 2;
        const gbFull = tb ? o.matMul(o.transpose(g, swap), a.value) : o.matMul(o.transpose(a.value, swap), g);
        gb = this.sumTo(gbFull, [...lead, ...(tb ? [n, k] : [k, n])], bs);
      }
      return [ga, gb];
    };
    return this.record(o.matMul(a.value, b.value, opts), shape, [a, b], vjp, ([da, db]) =>
      this.sumTangents([da && o.matMul(da, b.value, opts), db && o.matMul(a.value, db, opts)]),
    );
  }

  reshape(x: Traced<T>, shape: number[]): Traced<T> {
    const out = reshapeShape(x.shape, shape);
    const from = [...x.shape];
    return this.record(
      this.inner.reshape(x.value, shape),
      out,
      [x],
      (g) => [this.inner.reshape(g, from)],
      ([d]) => this.inner.reshape(d!, shape),
    );
  }

  transpose(x: Traced<T>, perm: number[]): Traced<T> {
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return this.record(
      this.inner.transpose(x.value, perm),
      perm.map((p) => x.shape[p]!),
      [x],
      (g) => [this.inner.transpose(g, inv)],
      ([d]) => this.inner.transpose(d!, perm),
    );
  }

  concat(xs: Traced<T>[], axis: number): Traced<T> {
    const first = xs[0];
    if (!first) throw new Error("Tape.concat: no inputs");
    const ax = axis < 0 ? axis + first.shape.length : axis;
    const shape = [...first.shape];
    shape[ax] = xs.reduce((s, x) => s + x.shape[ax]!, 0);
    return this.record(
      this.inner.concat(
        xs.map((x) => x.value),
        ax,
      ),
      shape,
      xs,
      (g, need) => {
        let off = 0;
        return xs.map((x, i) => {
          const n = x.shape[ax]!;
          const gi = need[i] ? this.inner.slice(g, ax, off, off + n) : undefined;
          off += n;
          return gi;
        });
      },
      (d) =>
        this.inner.concat(
          xs.map((x, i) => d[i] ?? this.zerosLike(x.value)),
          ax,
        ),
    );
  }

  slice(x: Traced<T>, axis: number, start: number, end: number): Traced<T> {
    const n = x.shape[axis]!;
    const shape = [...x.shape];
    shape[axis] = end - start;
    return this.record(
      this.inner.slice(x.value, axis, start, end),
      shape,
      [x],
      (g) => [this.inner.pad(g, axis, start, n - end)],
      ([d]) => this.inner.slice(d!, axis, start, end),
    );
  }

  sin(x: Traced<T>): Traced<T> {
    const o = this.inner;
    return this.unary(o.sin(x.value), x, () => o.cos(x.value));
  }

  cos(x: Traced<T>): Traced<T> {
    const o = this.inner;
    return this.unary(o.cos(x.value), x, () => o.scale(o.sin(x.value), -1));
  }

  sigmoid(x: Traced<T>): Traced<T> {
    const o = this.inner;
    const y = o.sigmoid(x.value);
    // s' = s (1 - s) = s - s^2.
    return this.unary(y, x, () => o.sub(y, o.mul(y, y)));
  }

  silu(x: Traced<T>): Traced<T> {
    const o = this.inner;
    // (x s)' = s + x s (1 - s) = s + (x s) - (x s) s.
    return this.unary(o.silu(x.value), x, () => {
      const s = o.sigmoid(x.value);
      const xs = o.mul(x.value, s);
      return o.add(s, o.sub(xs, o.mul(xs, s)));
    });
  }

  softmax(x: Traced<T>): Traced<T> {
    const o = this.inner;
    const y = o.softmax(x.value);
    const last = x.shape.length - 1;
    // Over one element softmax is the constant 1: nothing flows through it.
    if (x.shape[last] === 1) return this.leaf(y, x.shape, false);
    // The Jacobian diag(y) - y y^T is symmetric: one rule for both modes.
    const rule = (g: T): T => {
      const gy = o.mul(g, y);
      return o.sub(gy, o.mul(y, o.sumAxes(gy, [last])));
    };
    return this.record(
      y,
      x.shape,
      [x],
      (g) => [rule(g)],
      ([d]) => rule(d!),
    );
  }

  layerNorm(x: Traced<T>, eps: number): Traced<T> {
    const o = this.inner;
    const y = o.layerNorm(x.value, eps);
    const last = x.shape.length - 1;
    const d = x.shape[last]!;
    // dx = (g - mean(g) - y mean(g y)) / sqrt(var + eps), the statistics recomputed from x; the
    // Jacobian is symmetric, so the same rule gives the tangent.
    const rule = (g: T): T => {
      const mean = (v: T): T => o.scale(o.sumAxes(v, [last]), 1 / d);
      const xc = o.sub(x.value, mean(x.value));
      const inv = o.rsqrt(o.add(mean(o.mul(xc, xc)), o.constant(new Float32Array([eps]), [])));
      return o.mul(o.sub(o.sub(g, mean(g)), o.mul(y, mean(o.mul(g, y)))), inv);
    };
    return this.record(
      y,
      x.shape,
      [x],
      (g) => [rule(g)],
      ([t]) => rule(t!),
    );
  }

  // ---- DiffOps ----

  sumAxes(x: Traced<T>, axes: number[]): Traced<T> {
    const shape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    return this.record(
      this.inner.sumAxes(x.value, axes),
      shape,
      [x],
      (g) => [this.inner.expandLike(g, x.value)],
      ([d]) => this.inner.sumAxes(d!, axes),
    );
  }

  expandLike(x: Traced<T>, like: Traced<T>): Traced<T> {
    const shape = broadcastShape("expandLike", x.shape, like.shape);
    return this.record(
      this.inner.expandLike(x.value, like.value),
      shape,
      [x],
      (g) => [this.sumTo(g, shape, x.shape)],
      ([d]) => this.inner.expandLike(d!, like.value),
    );
  }

  pad(x: Traced<T>, axis: number, before: number, after: number): Traced<T> {
    const shape = [...x.shape];
    const n = shape[axis]!;
    shape[axis] = n + before + after;
    return this.record(
      this.inner.pad(x.value, axis, before, after),
      shape,
      [x],
      (g) => [this.inner.slice(g, axis, before, before + n)],
      ([d]) => this.inner.pad(d!, axis, before, after),
    );
  }

  rsqrt(x: Traced<T>): Traced<T> {
    const o = this.inner;
    const y = o.rsqrt(x.value);
    // (x^-1/2)' = -1/2 x^-3/2 = -1/2 y^3.
    return this.unary(y, x, () => o.scale(o.mul(y, o.mul(y, y)), -0.5));
  }

  contractRows(a: Traced<T>, b: Traced<T>): Traced<T> {
    const k = a.shape[a.shape.length - 1]!;
    const n = b.shape[b.shape.length - 1]!;
    const o = this.inner;
    return this.record(
      o.contractRows(a.value, b.value),
      [k, n],
      [a, b],
      (g, need) => [
        need[0] ? o.matMul(b.value, g, { transposeB: true }) : undefined,
        need[1] ? o.matMul(a.value, g) : undefined,
      ],
      ([da, db]) => this.sumTangents([da && o.contractRows(da, b.value), db && o.contractRows(a.value, db)]),
    );
  }

  // ---- internals ----

  private leaf(value: T, shape: readonly number[], live: boolean): Traced<T> {
    return { id: this.nextId++, value, shape: [...shape], live };
  }

  private record(
    value: T,
    shape: readonly number[],
    inputs: readonly Traced<T>[],
    vjp: Entry<T>["vjp"],
    jvp: Entry<T>["jvp"],
  ): Traced<T> {
    const out = this.leaf(
      value,
      shape,
      inputs.some((x) => x.live),
    );
    if (out.live) this.entries.push({ out, inputs, vjp, jvp });
    return out;
  }

  /** An elementwise op y = f(x) whose derivative f'(x) is `slope()`: both modes multiply by it. */
  private unary(y: T, x: Traced<T>, slope: () => T): Traced<T> {
    return this.record(
      y,
      x.shape,
      [x],
      (g) => [this.inner.mul(g, slope())],
      ([d]) => this.inner.mul(d!, slope()),
    );
  }

  /** The sum of the present tangents (at least one is). */
  private sumTangents(ts: readonly (T | undefined)[]): T {
    let acc: T | undefined;
    for (const t of ts) if (t !== undefined) acc = acc === undefined ? t : this.inner.add(acc, t);
    if (acc === undefined) throw new Error("Tape: an op was given no tangent");
    return acc;
  }

  /** A tangent of shape `from` broadcast to the op's output `y` of shape `to`. */
  private widen(t: T, from: readonly number[], y: T, to: readonly number[]): T {
    return sameShape(from, to) ? t : this.inner.expandLike(t, y);
  }

  /** Zeros shaped like x (batch dimension included). */
  private zerosLike(x: T): T {
    return this.inner.expandLike(this.inner.constant(new Float32Array(1), []), x);
  }

  /** Sums g (of shape `from`) over the axes a broadcast added or stretched, back to shape `to`. */
  private sumTo(g: T, from: readonly number[], to: readonly number[]): T {
    const off = from.length - to.length;
    const axes: number[] = [];
    for (let i = 0; i < from.length; i++) {
      if (from[i] === 1) continue;
      if (i < off || to[i - off] === 1) axes.push(i);
    }
    const y = axes.length ? this.inner.sumAxes(g, axes) : g;
    const reduced = from.map((d, i) => (axes.includes(i) ? 1 : d));
    return sameShape(reduced, to) ? y : this.inner.reshape(y, [...to]);
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Numpy broadcasting of two shapes, -1 being the batch dimension. */
export function broadcastShape(op: string, a: readonly number[], b: readonly number[]): number[] {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const x = a[a.length - r + i] ?? 1;
    const y = b[b.length - r + i] ?? 1;
    if (x === y || y === 1) out.push(x);
    else if (x === 1) out.push(y);
    else throw new Error(`Tape.${op}: shapes [${a}] and [${b}] do not broadcast`);
  }
  return out;
}

/** The shape of `reshape(x, to)`: -1 stays the batch dimension, or is resolved when x is static. */
export function reshapeShape(from: readonly number[], to: readonly number[]): number[] {
  if (from.includes(BATCH)) return [...to];
  const total = from.reduce((a, b) => a * b, 1);
  const known = to.filter((d) => d !== BATCH).reduce((a, b) => a * b, 1);
  return to.map((d) => (d === BATCH ? total / known : d));
}
