/**
 * The ONNX adapter of `Ops`: runs a network description over symbolic values and records ONNX
 * nodes (opset 17) instead of computing. Parameters become graph initializers named exactly as
 * the parameter (`blocks.0.attn.q.weight`), read from a weights map; constants are deduplicated.
 *
 * Shapes are tracked statically; -1 stands for the dynamic batch dimension (the graph's `batch`
 * dim_param). A shape mismatch in the description fails here, at export, naming the op and shapes.
 *
 * Exact rewrites keep the graph small for onnxruntime: a dense layer (`x @ W + b`, W and b
 * parameters) becomes one Gemm with its bias fused, reshape chains collapse, an op repeated on the
 * same values is emitted once, softmax over a single element is the constant 1, and `graph()`
 * drops every node and constant no output depends on.
 *
 * With `kernels: "fused"` (the exported inference graphs' default, for onnxruntime) the adapter also
 * emits fewer, larger kernels, some of them onnxruntime's CPU contrib operators (`com.microsoft`
 * domain): an adaptive-norm modulation by constants (a solver step's time) becomes the scale and
 * bias of its LayerNormalization (with a clean prefix: two of them, picked per token by Where);
 * scaled dot-product attention becomes one MultiHeadAttention, or one Attention (its three input
 * products included) when query, key and value are dense layers of one input; transposes of
 * transposes compose; an activation or a gate on a dense layer's output runs on its 2-D rows, so
 * no Reshape stands between two dense layers; a chain of Adds is one Sum. Every rewrite is exact up
 * to float rounding.
 */
import { createHash } from "node:crypto";
import type { ParamSpec, NamedArray } from "../net/ops.ts";
import type { DiffOps } from "../autodiff/ops.ts";
import {
  AttributeType,
  DataType,
  floatTensor,
  int64Tensor,
  type AttributeProto,
  type GraphProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from "./proto.ts";

/** A symbolic tensor: the name of a graph value, its static shape (-1 = batch) and element type. */
export interface Sym {
  readonly name: string;
  readonly shape: readonly number[];
  /** `TensorProto.DataType`; float32 unless stated. */
  readonly dtype: number;
}

export type { NamedArray };

/** Parameter values by name. */
export type WeightMap = ReadonlyMap<string, NamedArray>;

/** Attribute values accepted by `OnnxOps.node`. */
export type AttrValue = number | number[] | string | { int: number } | { ints: number[] };

/** Options of `OnnxOps`. */
export interface OnnxOpsOptions {
  /**
   * Parameter values by name; every `param` the description asks for must be here with its shape.
   * Unused (may be omitted) when `params` is `inputs`.
   */
  weights?: WeightMap;
  /**
   * `initializers` (default): parameters are graph initializers holding `weights`. `inputs`:
   * parameters are float32 graph inputs named as the parameter, fed at every run (training graphs).
   */
  params?: "initializers" | "inputs";
  /** Prefix of generated value names (keeps two graphs' names apart when debugging). */
  prefix?: string;
  /**
   * `plain` (default): standard ONNX operators only. `fused`: also onnxruntime's contrib operators
   * (`com.microsoft`, see the module doc), for graphs onnxruntime runs.
   */
  kernels?: Kernels;
}

/** The operator sets an exported graph may use: standard ONNX only, or with onnxruntime's contrib operators. */
export const KERNELS = ["fused", "plain"] as const;
/** A name of `KERNELS` (`export --kernels`). */
export type Kernels = (typeof KERNELS)[number];

/** The domain of onnxruntime's contrib operators. */
export const CONTRIB_DOMAIN = "com.microsoft";

const BATCH = -1;

/**
 * Emits ONNX nodes for `Ops` calls (and the backward primitives of `DiffOps`); `graph()` returns
 * the collected graph.
 */
export class OnnxOps implements DiffOps<Sym> {
  private readonly nodes: NodeProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: ValueInfoProto[] = [];
  private readonly params = new Map<string, Sym>();
  private readonly constants = new Map<string, Sym>();
  private readonly names = new Set<string>();
  /** The node producing each node output, and every value by name. */
  private readonly producers = new Map<string, NodeProto>();
  private readonly values = new Map<string, Sym>();
  private readonly memo = new Map<string, Sym>();
  private readonly weights: WeightMap;
  private readonly paramMode: "initializers" | "inputs";
  private readonly prefix: string;
  private readonly kernels: Kernels;
  /** Values of the float32 constants, by name (the fused rewrites read scalars). */
  private readonly constantValues = new Map<string, Float32Array>();
  /** Layer norms without affine: their output name -> input and epsilon (the modulation rewrite). */
  private readonly bareNorms = new Map<string, { x: Sym; eps: number }>();
  /** Per-token choices between two rows (`selection`): output name -> the mask `[b, n, 1]` and the rows `[1, D]`. */
  private readonly selections = new Map<string, { mask: Sym; at1: Sym; at0: Sym }>();
  private counter = 0;

  constructor(opts: OnnxOpsOptions) {
    this.weights = opts.weights ?? new Map();
    this.paramMode = opts.params ?? "initializers";
    this.prefix = opts.prefix ?? "";
    this.kernels = opts.kernels ?? "plain";
  }

  /** Names of the parameters the description has used so far. */
  usedParams(): string[] {
    return [...this.params.keys()];
  }

  /** Declares a graph input `name` of `shape` (-1 = batch) and element type (float32 by default). */
  input(name: string, shape: readonly number[], dtype: number = DataType.FLOAT): Sym {
    this.claim(name);
    this.inputs.push(valueInfo(name, shape, dtype));
    const sym: Sym = { name, shape: [...shape], dtype };
    this.values.set(name, sym);
    return sym;
  }

  /** Marks `x` as a graph output called `name` (adds an Identity node when renaming). */
  output(x: Sym, name: string): void {
    const y = x.name === name ? x : this.nodeNamed("Identity", [x], name, x.shape, {}, x.dtype);
    this.outputs.push(valueInfo(name, y.shape, y.dtype));
  }

  /** The graph built so far, without nodes and constants that no output depends on. */
  graph(name: string, docString?: string): GraphProto {
    const live = new Set<string>(this.outputs.map((o) => o.name));
    const nodes: NodeProto[] = [];
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const n = this.nodes[i]!;
      if (!n.output.some((o) => live.has(o))) continue;
      nodes.push(n);
      for (const x of n.input) live.add(x);
    }
    nodes.reverse();
    return {
      name,
      node: this.kernels === "fused" ? sumChains(nodes, new Set(this.outputs.map((o) => o.name))) : nodes,
      initializer: this.initializers.filter((t) => live.has(t.name ?? "")),
      input: [...this.inputs],
      output: [...this.outputs],
      ...(docString ? { docString } : {}),
    };
  }

  /**
   * Emits one node `opType(inputs)` with attributes; returns its (single) output of `shape` and
   * `dtype` (default: the first input's).
   */
  node(
    opType: string,
    inputs: readonly Sym[],
    shape: readonly number[],
    attrs: Record<string, AttrValue> = {},
    dtype?: number,
  ): Sym {
    // Every op emitted is pure, so the same op on the same values is computed once.
    const key = `${opType}(${inputs.map((i) => i.name).join(",")})${JSON.stringify(attrs)}`;
    const seen = this.memo.get(key);
    if (seen) return seen;
    const sym = this.nodeNamed(
      opType,
      inputs,
      this.fresh(opType),
      shape,
      attrs,
      dtype ?? inputs[0]?.dtype ?? DataType.FLOAT,
    );
    this.memo.set(key, sym);
    return sym;
  }

  /** An int64 constant (shape tensors, indices). */
  int64(values: readonly number[], shape: readonly number[] = [values.length]): Sym {
    return this.dedupe(
      int64Tensor("", values, shape),
      "i64",
      Buffer.from(new BigInt64Array(values.map((v) => BigInt(v))).buffer),
      DataType.INT64,
    );
  }

  // ---- Ops<Sym> ----

  param(spec: ParamSpec): Sym {
    const got = this.params.get(spec.name);
    if (got) {
      if (!sameShape(got.shape, spec.shape)) {
        throw new Error(`parameter '${spec.name}' is used with shape [${spec.shape}] and [${got.shape}]`);
      }
      return got;
    }
    if (this.paramMode === "inputs") {
      const sym = this.input(spec.name, spec.shape);
      this.params.set(spec.name, sym);
      return sym;
    }
    const w = this.weights.get(spec.name);
    if (!w) throw new Error(`weights: parameter '${spec.name}' [${spec.shape}] is missing`);
    if (!sameShape(w.shape, spec.shape)) {
      throw new Error(`weights: parameter '${spec.name}' has shape [${w.shape}], the network needs [${spec.shape}]`);
    }
    const size = spec.shape.reduce((a, b) => a * b, 1);
    if (w.data.length !== size) {
      throw new Error(
        `weights: parameter '${spec.name}' has ${w.data.length} values, shape [${w.shape}] needs ${size}`,
      );
    }
    this.claim(spec.name);
    this.initializers.push(floatTensor(spec.name, w.data, spec.shape));
    const sym: Sym = { name: spec.name, shape: [...spec.shape], dtype: DataType.FLOAT };
    this.params.set(spec.name, sym);
    this.values.set(spec.name, sym);
    return sym;
  }

  constant(values: Float32Array, shape: number[]): Sym {
    const size = shape.reduce((a, b) => a * b, 1);
    if (values.length !== size || shape.some((d) => d < 0)) {
      throw new Error(`constant: ${values.length} values do not fill shape [${shape}]`);
    }
    const bytes = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
    return this.dedupe(floatTensor("", values, shape), "f32", bytes, DataType.FLOAT);
  }

  add(a: Sym, b: Sym): Sym {
    if (this.kernels === "fused") {
      const m = this.modulatedNorm(a, b) ?? this.modulatedNorm(b, a);
      if (m) return m;
    }
    return this.denseBias(a, b) ?? this.denseBias(b, a) ?? this.node("Add", [a, b], broadcast("add", a.shape, b.shape));
  }

  sub(a: Sym, b: Sym): Sym {
    return this.node("Sub", [a, b], broadcast("sub", a.shape, b.shape));
  }

  mul(a: Sym, b: Sym): Sym {
    if (this.kernels === "fused") {
      const rows = this.onRows("Mul", a, b) ?? this.onRows("Mul", b, a);
      if (rows) return rows;
    }
    return this.node("Mul", [a, b], broadcast("mul", a.shape, b.shape));
  }

  scale(a: Sym, s: number): Sym {
    if (s === 1) return a;
    return this.mul(a, this.constant(new Float32Array([s]), []));
  }

  matMul(a: Sym, b: Sym, opts: { transposeB?: boolean } = {}): Sym {
    let bb = b;
    if (opts.transposeB) {
      const r = b.shape.length;
      const perm = [...Array(r).keys()];
      perm[r - 2] = r - 1;
      perm[r - 1] = r - 2;
      bb = this.transpose(b, perm);
    }
    const as = a.shape;
    const bs = bb.shape;
    if (as.length < 2 || bs.length < 2) throw new Error(`matMul: operands need rank >= 2, got [${as}] and [${bs}]`);
    const k = as[as.length - 1]!;
    const kb = bs[bs.length - 2]!;
    if (k !== kb) throw new Error(`matMul: inner dimensions differ: [${as}] x [${bs}]`);
    const lead = broadcast("matMul", as.slice(0, -2), bs.slice(0, -2));
    if (this.kernels === "fused") {
      const fused = this.multiHeadAttention(a, bb) ?? this.selection(a, bb);
      if (fused) return fused;
    }
    return this.node("MatMul", [a, bb], [...lead, as[as.length - 2]!, bs[bs.length - 1]!]);
  }

  reshape(x: Sym, shape: number[]): Sym {
    const out = inferReshape(x.shape, shape);
    if (sameShape(out, x.shape)) return x;
    return this.reshapeUnchecked(x, shape, out);
  }

  transpose(x: Sym, perm: number[]): Sym {
    if (perm.length !== x.shape.length || [...perm].sort((p, q) => p - q).some((p, i) => p !== i)) {
      throw new Error(`transpose: perm [${perm}] does not fit shape [${x.shape}]`);
    }
    if (this.kernels === "fused") {
      // transpose(transpose(a, p), q) = transpose(a, p[q]); the identity is a itself.
      const p = this.producers.get(x.name);
      const src = p?.opType === "Transpose" ? this.values.get(p.input[0]!) : undefined;
      const inner = src ? intsAttr(p!, "perm") : undefined;
      if (src && inner) {
        const composed = perm.map((q) => inner[q]!);
        if (composed.every((q, i) => q === i)) return src;
        return this.transpose(src, composed);
      }
    }
    return this.node(
      "Transpose",
      [x],
      perm.map((p) => x.shape[p]!),
      { perm },
    );
  }

  concat(xs: Sym[], axis: number): Sym {
    const first = xs[0];
    if (!first) throw new Error("concat: no inputs");
    if (xs.length === 1) return first;
    const r = first.shape.length;
    const ax = axis < 0 ? axis + r : axis;
    const out = [...first.shape];
    let total = 0;
    for (const x of xs) {
      if (x.shape.length !== r) throw new Error(`concat: ranks differ: [${first.shape}] and [${x.shape}]`);
      for (let d = 0; d < r; d++) {
        if (d !== ax && x.shape[d] !== first.shape[d])
          throw new Error(`concat on axis ${axis}: shapes [${first.shape}] and [${x.shape}] differ off-axis`);
      }
      const n = x.shape[ax]!;
      if (n < 0) throw new Error(`concat: axis ${axis} is dynamic in [${x.shape}]`);
      total += n;
    }
    out[ax] = total;
    return this.node("Concat", xs, out, { axis: { int: ax } });
  }

  slice(x: Sym, axis: number, start: number, end: number): Sym {
    const n = x.shape[axis];
    if (n === undefined || n < 0 || start < 0 || end > n || start >= end) {
      throw new Error(`slice: [${start}:${end}] on axis ${axis} does not fit shape [${x.shape}]`);
    }
    if (start === 0 && end === n) return x;
    const out = [...x.shape];
    out[axis] = end - start;
    return this.node("Slice", [x, this.int64([start]), this.int64([end]), this.int64([axis])], out);
  }

  sin(x: Sym): Sym {
    return this.node("Sin", [x], x.shape);
  }

  cos(x: Sym): Sym {
    return this.node("Cos", [x], x.shape);
  }

  sigmoid(x: Sym): Sym {
    const rows = this.kernels === "fused" ? this.rowsOf(x) : undefined;
    if (rows)
      return this.reshapeUnchecked(this.node("Sigmoid", [rows], rows.shape), [-1, ...x.shape.slice(1)], x.shape);
    return this.node("Sigmoid", [x], x.shape);
  }

  silu(x: Sym): Sym {
    return this.mul(x, this.sigmoid(x));
  }

  softmax(x: Sym): Sym {
    // Over a single element softmax is 1 (attention to one token): a constant, so whatever only
    // fed x (a query projection) is dropped from the graph.
    if (x.shape[x.shape.length - 1] === 1 && x.shape.slice(1).every((d) => d > 0)) {
      const shape = x.shape.map((d) => (d === BATCH ? 1 : d));
      return this.constant(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(1), shape);
    }
    return this.node("Softmax", [x], x.shape, { axis: { int: -1 } });
  }

  layerNorm(x: Sym, eps: number): Sym {
    const d = x.shape[x.shape.length - 1];
    if (d === undefined || d < 1) throw new Error(`layerNorm: last axis of [${x.shape}] must be static`);
    const ones = this.constant(new Float32Array(d).fill(1), [d]);
    const zeros = this.constant(new Float32Array(d), [d]);
    const y = this.node("LayerNormalization", [x, ones, zeros], x.shape, { axis: { int: -1 }, epsilon: eps });
    this.bareNorms.set(y.name, { x, eps });
    return y;
  }

  // ---- DiffOps<Sym> ----

  sumAxes(x: Sym, axes: number[]): Sym {
    const r = x.shape.length;
    if (axes.some((a) => !Number.isInteger(a) || a < 0 || a >= r))
      throw new Error(`sumAxes: axes [${axes}] do not fit shape [${x.shape}]`);
    if (axes.length === 0) return x;
    const out = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    return this.node("ReduceSum", [x, this.int64([...axes].sort((p, q) => p - q))], out, { keepdims: { int: 1 } });
  }

  expandLike(x: Sym, like: Sym): Sym {
    const out = broadcast("expandLike", x.shape, like.shape);
    if (sameShape(out, x.shape)) return x;
    const shape = this.node("Shape", [like], [like.shape.length], {}, DataType.INT64);
    return this.node("Expand", [x, shape], out);
  }

  pad(x: Sym, axis: number, before: number, after: number): Sym {
    const r = x.shape.length;
    const n = x.shape[axis];
    if (n === undefined || n < 0 || before < 0 || after < 0)
      throw new Error(`pad: axis ${axis} (+${before}, +${after}) does not fit shape [${x.shape}]`);
    if (before === 0 && after === 0) return x;
    const pads = new Array<number>(2 * r).fill(0);
    pads[axis] = before;
    pads[r + axis] = after;
    const out = [...x.shape];
    out[axis] = n + before + after;
    return this.node("Pad", [x, this.int64(pads)], out, { mode: "constant" });
  }

  div(a: Sym, b: Sym): Sym {
    return this.node("Div", [a, b], broadcast("div", a.shape, b.shape));
  }

  rsqrt(x: Sym): Sym {
    return this.node("Reciprocal", [this.node("Sqrt", [x], x.shape)], x.shape);
  }

  contractRows(a: Sym, b: Sym): Sym {
    const k = a.shape[a.shape.length - 1]!;
    const n = b.shape[b.shape.length - 1]!;
    if (!sameShape(a.shape.slice(0, -1), b.shape.slice(0, -1)))
      throw new Error(`contractRows: leading axes of [${a.shape}] and [${b.shape}] differ`);
    const rows = (x: Sym, d: number): Sym => (x.shape.length === 2 ? x : this.reshapeUnchecked(x, [-1, d], [BATCH, d]));
    return this.node("Gemm", [rows(a, k), rows(b, n)], [k, n], { transA: { int: 1 } });
  }

  // ---- internals ----

  /**
   * The 2-D rows `[-1, D]` a value `[-1, ..., D]` was reshaped from (a dense layer's Gemm), or
   * undefined: elementwise ops on them need no Reshape before the next dense layer.
   */
  private rowsOf(x: Sym): Sym | undefined {
    const p = this.producers.get(x.name);
    const r = p?.opType === "Reshape" ? this.values.get(p.input[0]!) : undefined;
    const d = x.shape[x.shape.length - 1];
    return r && r.shape.length === 2 && r.shape[0] === BATCH && r.shape[1] === d && x.shape[0] === BATCH
      ? r
      : undefined;
  }

  /**
   * `op(a, b)` computed on a's 2-D rows (`rowsOf`) when b is on the same rows or the same for every
   * row, then reshaped back to a's shape; undefined otherwise.
   */
  private onRows(op: "Mul", a: Sym, b: Sym): Sym | undefined {
    const ra = this.rowsOf(a);
    if (!ra) return undefined;
    const d = ra.shape[1]!;
    const rb = sameShape(a.shape, b.shape) ? this.rowsOf(b) : undefined;
    const other = rb ?? (rowConstant(b.shape, d) ? this.reshape(b, [d]) : undefined);
    if (!other) return undefined;
    return this.reshapeUnchecked(this.node(op, [ra, other], ra.shape), [-1, ...a.shape.slice(1)], a.shape);
  }

  /**
   * `n + n * scale + shift` where n is a layer norm without affine (`layerNorm`) and scale and shift
   * are the same for every row (`[..1, D]` without the batch dim: the adaptive norm of a constant
   * time) -> the layer norm with scale `1 + scale` and bias `shift`. Undefined when `sum`, `shift`
   * are not of that form (per-token or per-sample modulation stays as it is).
   */
  private modulatedNorm(sum: Sym, shift: Sym): Sym | undefined {
    const add = this.producers.get(sum.name);
    if (add?.opType !== "Add") return undefined;
    for (const [nName, mName] of [
      [add.input[0]!, add.input[1]!],
      [add.input[1]!, add.input[0]!],
    ] as const) {
      const norm = this.bareNorms.get(nName);
      const mul = this.producers.get(mName);
      if (!norm || mul?.opType !== "Mul") continue;
      const other = mul.input[0] === nName ? mul.input[1] : mul.input[1] === nName ? mul.input[0] : undefined;
      const scale = other === undefined ? undefined : this.values.get(other);
      const d = norm.x.shape[norm.x.shape.length - 1]!;
      if (!scale) continue;
      const affine = (sc: Sym, sh: Sym): Sym =>
        this.node(
          "LayerNormalization",
          [
            norm.x,
            this.reshape(this.node("Add", [sc, this.constant(Float32Array.of(1), [])], sc.shape), [d]),
            this.reshape(sh, [d]),
          ],
          norm.x.shape,
          { axis: { int: -1 }, epsilon: norm.eps },
        );
      if (rowConstant(scale.shape, d) && rowConstant(shift.shape, d)) return affine(scale, shift);
      // Per token, one of two constant modulations (a clean prefix): both norms, picked by the mask.
      const sc = this.selections.get(scale.name);
      const sh = this.selections.get(shift.name);
      if (sc && sh && sc.mask === sh.mask && sameShape(norm.x.shape, scale.shape)) {
        // The mask as a condition of the norm's shape (once per chunk): Where without broadcasting.
        const bool = this.node("Cast", [sc.mask], sc.mask.shape, { to: { int: DataType.BOOL } }, DataType.BOOL);
        const cond = this.node("Expand", [bool, this.int64([1, 1, d])], norm.x.shape, {}, DataType.BOOL);
        const picked = [cond, affine(sc.at1, sh.at1), affine(sc.at0, sh.at0)];
        return this.node("Where", picked, norm.x.shape, {}, DataType.FLOAT);
      }
    }
    return undefined;
  }

  /**
   * The product of a mask's one-hot `concat([m, 1 - m], 2)` (m `[b, n, 1]`, 0 or 1) with two stacked
   * rows `concat([r1, r0], 0)` (`[1, D]` each: `selectByMask`), emitted as it is and recorded for
   * `modulatedNorm`. Undefined for any other product.
   */
  private selection(oneHot: Sym, rows: Sym): Sym | undefined {
    const oh = this.producers.get(oneHot.name);
    const rs = this.producers.get(rows.name);
    if (oh?.opType !== "Concat" || rs?.opType !== "Concat" || oh.input.length !== 2 || rs.input.length !== 2)
      return undefined;
    const axis = (n: NodeProto): number | undefined => n.attribute?.find((a) => a.name === "axis")?.i;
    if (axis(oh) !== 2 || axis(rs) !== 0) return undefined;
    const m = this.values.get(oh.input[0]!);
    const sub = this.producers.get(oh.input[1]!);
    const one = sub?.opType === "Sub" ? this.constantValues.get(sub.input[0]!) : undefined;
    if (!m || sub?.input[1] !== m.name || one?.length !== 1 || one[0] !== 1) return undefined;
    const [r1, r0] = rs.input.map((r) => this.values.get(r));
    const d = rows.shape[1]!;
    if (!r1 || !r0 || !rowConstant(r1.shape, d) || !rowConstant(r0.shape, d) || m.shape.length !== 3) return undefined;
    if (m.shape[2] !== 1 || m.shape[0] !== BATCH) return undefined;
    // On the one-hot's 2-D rows (folded once per chunk), so a gate it feeds runs on rows too.
    const n = m.shape[1]!;
    const picked = this.node("MatMul", [this.reshapeUnchecked(oneHot, [-1, 2], [BATCH, 2]), rows], [BATCH, d]);
    const y = this.reshapeUnchecked(picked, [-1, n, d], [BATCH, n, d]);
    this.selections.set(y.name, { mask: m, at1: r1, at0: r0 });
    return y;
  }

  /**
   * `softmax(qh @ kT * s) @ vh` over heads split by `layers.ts` (qh, vh `[b, heads, n, headDim]`
   * and kT `[b, heads, headDim, m]`, each a Transpose of a Reshape of `[b, n, width]`) -> one
   * MultiHeadAttention on the unsplit `[b, n, width]` query, key and value, returned split into
   * heads again (the caller's merge of the heads then cancels). Undefined for any other product.
   */
  private multiHeadAttention(probs: Sym, vh: Sym): Sym | undefined {
    const sm = this.producers.get(probs.name);
    if (sm?.opType !== "Softmax") return undefined;
    let scores = this.producers.get(sm.input[0]!);
    let scale = 1;
    if (scores?.opType === "Mul") {
      const s = this.constantValues.get(scores.input[1]!);
      if (s?.length !== 1) return undefined;
      scale = s[0]!;
      scores = this.producers.get(scores.input[0]!);
    }
    if (scores?.opType !== "MatMul") return undefined;
    const unsplit = (name: string, perm: readonly number[]): Sym | undefined => {
      const t = this.producers.get(name);
      const p = t?.opType === "Transpose" ? intsAttr(t, "perm") : undefined;
      if (!t || !p || p.join() !== perm.join()) return undefined;
      const split = this.values.get(t.input[0]!);
      const r = this.producers.get(t.input[0]!);
      const x = r?.opType === "Reshape" ? this.values.get(r.input[0]!) : undefined;
      if (!split || !x || split.shape.length !== 4 || split.shape[0] !== BATCH || x.shape[0] !== BATCH)
        return undefined;
      const [, n, h, d] = split.shape as [number, number, number, number];
      // The split read through the Reshape producing `[b, n, width]` (or its 2-D rows): the same node again.
      return this.reshapeUnchecked(x, [-1, n, h * d], [BATCH, n, h * d]);
    };
    const q = unsplit(scores.input[0]!, [0, 2, 1, 3]);
    const k = unsplit(scores.input[1]!, [0, 2, 3, 1]);
    const v = unsplit(vh.name, [0, 2, 1, 3]);
    const heads = vh.shape[1]!;
    if (!q || !k || !v || heads < 1 || k.shape[1] !== v.shape[1]) return undefined;
    const [, n, width] = q.shape as [number, number, number];
    const attrs = { num_heads: { int: heads }, scale };
    const out =
      this.selfAttention(q, k, v, attrs) ?? this.node("MultiHeadAttention", [q, k, v], [BATCH, n, v.shape[2]!], attrs);
    return this.transpose(this.reshape(out, [-1, n, heads, width / heads]), [0, 2, 1, 3]);
  }

  /** Reshape node to `target` (ONNX semantics) reading through a Reshape producer: reshape(reshape(a)) = reshape(a). */
  /**
   * Self-attention whose query, key and value are dense layers of the same input (`[b, n, width]`
   * Reshapes of `Gemm(rows of x, W, bias)`, W and bias initializers) -> one Attention node (the
   * three products and the attention in one kernel) on x with the weights `[k, 3 * width]` and
   * biases `[3 * width]` stacked as q | k | v. Undefined otherwise.
   */
  private selfAttention(q: Sym, k: Sym, v: Sym, attrs: Record<string, AttrValue>): Sym | undefined {
    if (this.paramMode !== "initializers") return undefined;
    const gemms = [q, k, v].map((x) => {
      const r = this.producers.get(x.name);
      const g = r?.opType === "Reshape" ? this.producers.get(r.input[0]!) : undefined;
      return g?.opType === "Gemm" && g.input.length === 3 && !g.attribute?.length ? g : undefined;
    });
    const rows = gemms[0]?.input[0];
    if (rows === undefined || gemms.some((g) => !g || g.input[0] !== rows)) return undefined;
    const fold = this.producers.get(rows);
    const x = fold?.opType === "Reshape" ? this.values.get(fold.input[0]!) : undefined;
    const ws = gemms.map((g) => this.weights.get(g!.input[1]!));
    const bs = gemms.map((g) => this.weights.get(g!.input[2]!));
    if (!x || x.shape.length !== 3 || x.shape[0] !== BATCH || x.shape[1] !== q.shape[1]) return undefined;
    const [kDim, width] = (ws[0]?.shape ?? []) as [number, number];
    if (ws.some((w) => w?.shape.length !== 2 || w.shape[0] !== kDim || w.shape[1] !== width)) return undefined;
    if (bs.some((b) => b?.data.length !== width)) return undefined;
    const w = new Float32Array(kDim * 3 * width);
    for (let r = 0; r < kDim; r++)
      for (let which = 0; which < 3; which++)
        w.set(ws[which]!.data.subarray(r * width, (r + 1) * width), r * 3 * width + which * width);
    const b = new Float32Array(3 * width);
    bs.forEach((bias, which) => b.set(bias!.data, which * width));
    const out = [BATCH, q.shape[1]!, width];
    return this.node("Attention", [x, this.constant(w, [kDim, 3 * width]), this.constant(b, [3 * width])], out, attrs);
  }

  private reshapeUnchecked(x: Sym, target: readonly number[], out: readonly number[]): Sym {
    const p = this.producers.get(x.name);
    const src = p?.opType === "Reshape" ? this.values.get(p.input[0]!) : undefined;
    const from = src ?? x;
    if (sameShape(from.shape, out) && !from.shape.includes(BATCH) === !out.includes(BATCH)) return from;
    return this.node("Reshape", [from, this.int64(target)], out);
  }

  /**
   * `x @ W + b` with W `[k, n]` and b `[n]` parameters as one Gemm (bias fused) on x folded to 2-D:
   * onnxruntime fuses MatMul + Add only for 2-D inputs. Returns undefined when `y` is not such a
   * product. The MatMul node stays until `graph()` drops it if nothing else reads it.
   */
  private denseBias(y: Sym, b: Sym): Sym | undefined {
    const mm = this.producers.get(y.name);
    if (!mm || mm.opType !== "MatMul" || b.shape.length !== 1) return undefined;
    const [xName, wName] = mm.input as [string, string];
    const w = this.params.get(wName);
    const bias = this.params.get(b.name);
    if (!w || !bias || w.shape.length !== 2 || w.shape[1] !== b.shape[0]) return undefined;
    const x = this.values.get(xName);
    if (!x) return undefined;
    const [k, n] = w.shape as [number, number];
    if (x.shape.length === 2) return this.node("Gemm", [x, w, bias], [x.shape[0]!, n]);
    const lead = x.shape.slice(0, -1);
    if (lead.filter((d) => d === BATCH).length > 1) return undefined;
    // Rows fold (batch x tokens) into one dim: symbolic here, so the shape-checked reshape is bypassed.
    const g = this.node("Gemm", [this.reshapeUnchecked(x, [-1, k], [BATCH, k]), w, bias], [BATCH, n]);
    return this.reshapeUnchecked(g, [...lead, n], [...lead, n]);
  }

  private nodeNamed(
    opType: string,
    inputs: readonly Sym[],
    output: string,
    shape: readonly number[],
    attrs: Record<string, AttrValue>,
    dtype: number,
  ): Sym {
    this.claim(output);
    const attribute = Object.entries(attrs).map(([k, v]) => attr(k, v));
    const node: NodeProto = {
      input: inputs.map((i) => i.name),
      output: [output],
      name: `${output}_node`,
      opType,
      ...(CONTRIB_OPS.has(opType) ? { domain: CONTRIB_DOMAIN } : {}),
      ...(attribute.length ? { attribute } : {}),
    };
    this.nodes.push(node);
    this.producers.set(output, node);
    const sym: Sym = { name: output, shape: [...shape], dtype };
    this.values.set(output, sym);
    return sym;
  }

  private dedupe(t: TensorProto, tag: string, bytes: Uint8Array, dtype: number): Sym {
    const key = `${tag}[${t.dims.join(",")}]${createHash("sha1").update(bytes).digest("hex")}`;
    const got = this.constants.get(key);
    if (got) return got;
    const name = this.fresh("const");
    this.claim(name);
    this.initializers.push({ ...t, name });
    if (dtype === DataType.FLOAT)
      this.constantValues.set(name, new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4).slice());
    const sym: Sym = { name, shape: [...t.dims], dtype };
    this.constants.set(key, sym);
    this.values.set(name, sym);
    return sym;
  }

  private fresh(op: string): string {
    let name: string;
    do name = `${this.prefix}${op}_${this.counter++}`;
    while (this.names.has(name));
    return name;
  }

  private claim(name: string): void {
    if (this.names.has(name)) throw new Error(`ONNX value name '${name}' is used twice`);
    this.names.add(name);
  }
}

/**
 * `Add(Add(a, b), c)` where the inner sum has no other reader (nor is an output) -> `Sum(a, b, c)`:
 * one kernel for a residual stream's two updates. `nodes` are live and in topological order.
 */
function sumChains(nodes: readonly NodeProto[], outputs: ReadonlySet<string>): NodeProto[] {
  const readers = new Map<string, number>();
  for (const n of nodes) for (const i of n.input) readers.set(i, (readers.get(i) ?? 0) + 1);
  const sums = new Map<string, NodeProto>();
  const merged = new Set<NodeProto>();
  const out: NodeProto[] = [];
  for (const n of nodes) {
    if (n.opType !== "Add" && n.opType !== "Sum") {
      out.push(n);
      continue;
    }
    const terms: string[] = [];
    for (const i of n.input) {
      const inner = sums.get(i);
      if (inner && readers.get(i) === 1 && !outputs.has(i)) {
        terms.push(...inner.input);
        merged.add(inner);
      } else terms.push(i);
    }
    const node = terms.length === n.input.length ? n : { ...n, opType: "Sum", input: terms };
    sums.set(n.output[0]!, node);
    out.push(node);
  }
  return out.filter((n) => !merged.has(n));
}

/** The contrib operators the fused kernels use (emitted in `CONTRIB_DOMAIN`). */
const CONTRIB_OPS = new Set(["Attention", "MultiHeadAttention"]);

/** The ints of attribute `name` of a node, if it has them. */
function intsAttr(node: NodeProto, name: string): number[] | undefined {
  return node.attribute?.find((a) => a.name === name)?.ints?.map(Number);
}

/** A shape that is the same for every row of `[..., d]`: `[d]` or `[1, ..., 1, d]` (no batch dim). */
function rowConstant(shape: readonly number[], d: number): boolean {
  return shape.length >= 1 && shape[shape.length - 1] === d && shape.slice(0, -1).every((s) => s === 1);
}

function attr(name: string, v: AttrValue): AttributeProto {
  if (typeof v === "string") return { name, type: AttributeType.STRING, s: new TextEncoder().encode(v) };
  if (typeof v === "number") return { name, type: AttributeType.FLOAT, f: v };
  if (Array.isArray(v)) return { name, type: AttributeType.INTS, ints: v };
  if ("int" in v) return { name, type: AttributeType.INT, i: v.int };
  return { name, type: AttributeType.INTS, ints: v.ints };
}

/** A graph value's type: float tensor with `batch` for -1 dims. */
export function valueInfo(name: string, shape: readonly number[], dtype: number = DataType.FLOAT): ValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: dtype,
        shape: { dim: shape.map((d) => (d === BATCH ? { dimParam: "batch" } : { dimValue: d })) },
      },
    },
  };
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Numpy broadcasting of static shapes, -1 being the batch dimension. */
export function broadcast(op: string, a: readonly number[], b: readonly number[]): number[] {
  const r = Math.max(a.length, b.length);
  const out = new Array<number>(r);
  for (let i = 0; i < r; i++) {
    const x = a[a.length - r + i] ?? 1;
    const y = b[b.length - r + i] ?? 1;
    if (x === y) out[i] = x;
    else if (x === 1) out[i] = y;
    else if (y === 1) out[i] = x;
    else throw new Error(`${op}: shapes [${a}] and [${b}] do not broadcast`);
  }
  return out;
}

function inferReshape(from: readonly number[], to: readonly number[]): number[] {
  const dyn = to.filter((d) => d === BATCH).length;
  if (dyn > 1 || to.some((d) => d === 0 || d < -1))
    throw new Error(`reshape: target [${to}] may hold one -1 and positive sizes only`);
  const staticFrom = from.filter((d) => d !== BATCH).reduce((a, b) => a * b, 1);
  const staticTo = to.filter((d) => d !== BATCH).reduce((a, b) => a * b, 1);
  const fromDyn = from.includes(BATCH);
  if (fromDyn !== (dyn === 1)) {
    if (!fromDyn && dyn === 1 && staticFrom % staticTo === 0)
      return to.map((d) => (d === BATCH ? staticFrom / staticTo : d));
    throw new Error(`reshape: [${from}] -> [${to}] must keep the batch dimension as -1`);
  }
  if (staticFrom !== staticTo)
    throw new Error(`reshape: [${from}] has ${staticFrom} values per batch item, [${to}] has ${staticTo}`);
  return [...to];
}
