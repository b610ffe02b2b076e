/**
 * int8 dynamic quantisation of an exported graph: a pass over the `ModelProto` the exporter
 * produces that rewrites every matrix product with a constant weight (`MatMul(x, W)` and the dense
 * layers' `Gemm(x, W, b)`) into the standard-opset form
 *
 * ```
 * DynamicQuantizeLinear(x) -> xq (uint8), xs, xzp     one per product, per-tensor, at run time
 * MatMulInteger(xq, Wq, xzp) -> int32                 Wq int8 [K, N], symmetric (zero point 0)
 * Cast(to float) * Mul(xs, Ws)                        Ws float32 [N]: one scale per output column
 * + b                                                 (Gemm's bias, fp32)
 * ```
 *
 * which onnxruntime's CPU provider fuses (at its default, full graph optimisation) into one
 * `MatMulIntegerToFloat` and then one `DynamicQuantizeMatMul` kernel per product: the Mul of the
 * two scales takes the activation scale first, every intermediate value has exactly one reader
 * and the bias Add reads a constant initializer, as those fusions require. Products that read the
 * same input (the attention projections) end up sharing one DynamicQuantizeLinear once onnxruntime
 * merges identical nodes, and run as `MatMulIntegerToFloat` after it. The QDQ form of the same
 * scheme (DequantizeLinear of the activation and, per column, of the weight before a float MatMul)
 * is not fused by onnxruntime 1.30's CPU provider: it runs DequantizeLinear and an fp32 Gemm. Weights outside matrix
 * products (layer norms, biases, normalisation maps, embeddings computed by Mul and Add) stay fp32,
 * and so does every product whose weight is not a 2-D float initializer.
 *
 * The fused export's self-attention (onnxruntime's `com.microsoft` Attention, which holds its
 * stacked q | k | v weight) becomes `DynamicQuantizeLinear(x)` and a `QAttention` on the int8
 * weight, symmetric per output column like the products above, bias fp32. A plain export (`export
 * --kernels plain`) stays plain opset 17 (the official checker accepts it; any runtime with the
 * ONNX operators runs it). Its `metadata_props` keep every `actionflow.*` key of the fp32 export and add
 * `actionflow.quantization` = `int8`, the scheme and the number of products rewritten; a model that
 * is already quantised is refused.
 *
 * On x86-64 CPUs with AVX2 but without AVX-512 VNNI or AVX-VNNI, onnxruntime multiplies uint8 by
 * int8 with an instruction whose 16-bit intermediate sums can saturate; the parity figure of
 * `bench infer` measures the result on the machine it runs on.
 */
import { join } from "node:path";
import {
  AttributeType,
  DataType,
  OPSET,
  decodeModel,
  encodeModel,
  floatTensor,
  floatValues,
  metadataOf,
  type AttributeProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from "./proto.ts";
import { CONTRIB_DOMAIN } from "./ops.ts";

/** The quantisations `quantizeModel` implements. */
export const QUANTIZATIONS = ["int8"] as const;
/** A quantisation name (`export --quantize`). */
export type Quantization = (typeof QUANTIZATIONS)[number];

/** `TensorProto.DataType.INT8`. */
const INT8 = 3;
/** Largest magnitude of a symmetric int8 weight. */
const QMAX = 127;
/** Ops that mark a graph as already quantised. */
const QUANTIZED_OPS = new Set([
  "DynamicQuantizeLinear",
  "MatMulInteger",
  "QuantizeLinear",
  "DequantizeLinear",
  "QLinearMatMul",
  "DynamicQuantizeMatMul",
  "MatMulIntegerToFloat",
  "QAttention",
]);
/** The scheme written to `actionflow.quantization_scheme`. */
export const INT8_SCHEME =
  "dynamic: uint8 activations per tensor (DynamicQuantizeLinear), int8 weights symmetric per output column, MatMulInteger";

/** What `quantizeModel` did. */
export interface QuantizeReport {
  quantization: Quantization;
  /** Matrix-product nodes rewritten (MatMul and Gemm with a constant weight). */
  matmuls: number;
  /** Distinct weight initializers quantised (an unrolled solver reuses each weight every step). */
  weights: number;
  /** Matrix products left in fp32, with the reason. */
  skipped: { node: string; reason: string }[];
  /** Bytes of the float32 weights replaced, and of their int8 values plus float32 scales. */
  fp32WeightBytes: number;
  int8WeightBytes: number;
}

/** A quantised int8 weight: values `[K, N]` row-major and one scale per column. */
interface QuantizedWeight {
  q: string;
  scale: string;
}

/**
 * Quantises the weight matrix products of `model` to int8 (see the module doc); `model` is not
 * modified. `source` names the model in errors. Throws when the model is already quantised or has
 * no matrix product with a constant weight.
 */
export function quantizeModel(
  model: ModelProto,
  opts: { quantization?: Quantization; source?: string } = {},
): { model: ModelProto; report: QuantizeReport } {
  const source = opts.source ?? "model";
  const quantization = opts.quantization ?? "int8";
  if (!QUANTIZATIONS.includes(quantization))
    throw new Error(`quantize: '${String(quantization)}' is not a quantisation (valid: ${QUANTIZATIONS.join(", ")})`);
  const meta = metadataOf(model);
  const already = meta["actionflow.quantization"];
  if (already !== undefined)
    throw new Error(
      `${source} is already quantised (actionflow.quantization = ${already}); quantise the fp32 export instead`,
    );
  const qnode = model.graph.node.find((n) => QUANTIZED_OPS.has(n.opType));
  if (qnode)
    throw new Error(
      `${source} is already quantised (it has a ${qnode.opType} node, '${qnode.name ?? qnode.output[0]}'); quantise the fp32 export instead`,
    );
  const graph = model.graph;
  const inits = new Map(graph.initializer.map((t) => [t.name ?? "", t]));
  const names = new Set<string>([
    ...graph.initializer.map((t) => t.name ?? ""),
    ...graph.input.map((i) => i.name),
    ...graph.node.flatMap((n) => [...n.input, ...n.output, n.name ?? ""]),
  ]);
  let counter = 0;
  const fresh = (base: string): string => {
    let name: string;
    do name = `${base}_q8_${counter++}`;
    while (names.has(name));
    names.add(name);
    return name;
  };
  const quantized = new Map<string, QuantizedWeight>();
  const added: TensorProto[] = [];
  const skipped: QuantizeReport["skipped"] = [];
  let fp32WeightBytes = 0;
  let int8WeightBytes = 0;
  const weightOf = (name: string, transposed: boolean): QuantizedWeight => {
    const key = `${name}${transposed ? "^T" : ""}`;
    const got = quantized.get(key);
    if (got) return got;
    const t = inits.get(name)!;
    const [rows, cols] = t.dims as [number, number];
    const w = transposed ? transpose(floatValues(t), rows, cols) : floatValues(t);
    const [k, n] = transposed ? [cols, rows] : [rows, cols];
    const { q, scale } = quantizeColumns(w, k, n);
    const qw: QuantizedWeight = { q: fresh(`${name}.int8`), scale: fresh(`${name}.scale`) };
    added.push({ name: qw.q, dims: [k, n], dataType: INT8, rawData: new Uint8Array(q.buffer) });
    added.push(floatTensor(qw.scale, scale, [n]));
    fp32WeightBytes += 4 * k * n;
    int8WeightBytes += k * n + 4 * n;
    quantized.set(key, qw);
    return qw;
  };

  const nodes: NodeProto[] = [];
  let matmuls = 0;
  for (const node of graph.node) {
    const attention = attentionPlanOf(node, inits);
    if (attention) {
      // onnxruntime's Attention (q | k | v products in the node) -> QAttention on the quantised input.
      matmuls++;
      const base = node.name ?? node.output[0] ?? "attention";
      const w = weightOf(attention.weight, false);
      const [xq, xs, xzp] = ["xq", "xs", "xzp"].map((s) => fresh(`${base}.${s}`));
      nodes.push(
        { opType: "DynamicQuantizeLinear", input: [attention.x], output: [xq!, xs!, xzp!], name: fresh(`${base}.dql`) },
        {
          opType: "QAttention",
          domain: CONTRIB_DOMAIN,
          input: [xq!, w.q, attention.bias, xs!, w.scale, "", xzp!],
          output: [...node.output],
          name: fresh(`${base}.qattention`),
          attribute: [...(node.attribute ?? [])],
        },
      );
      continue;
    }
    const plan = planOf(node, inits);
    if (plan.kind === "skip") {
      if (plan.reason) skipped.push({ node: node.name ?? node.output[0] ?? "?", reason: plan.reason });
      nodes.push(node);
      continue;
    }
    matmuls++;
    const base = node.name ?? node.output[0] ?? "matmul";
    const w = weightOf(plan.weight, plan.transposed);
    const [xq, xs, xzp, acc, accF, scale] = ["xq", "xs", "xzp", "acc", "acc_f", "scale"].map((s) =>
      fresh(`${base}.${s}`),
    );
    const y = node.output[0]!;
    const scaled = plan.bias !== undefined ? fresh(`${base}.scaled`) : y;
    nodes.push(
      { opType: "DynamicQuantizeLinear", input: [plan.x], output: [xq!, xs!, xzp!], name: fresh(`${base}.dql`) },
      { opType: "MatMulInteger", input: [xq!, w.q, xzp!], output: [acc!], name: fresh(`${base}.mmi`) },
      { opType: "Cast", input: [acc!], output: [accF!], name: fresh(`${base}.cast`), attribute: [castToFloat()] },
      { opType: "Mul", input: [xs!, w.scale], output: [scale!], name: fresh(`${base}.scale_mul`) },
      { opType: "Mul", input: [accF!, scale!], output: [scaled], name: fresh(`${base}.rescale`) },
    );
    if (plan.bias !== undefined)
      nodes.push({ opType: "Add", input: [scaled, plan.bias], output: [y], name: fresh(`${base}.bias`) });
  }
  if (matmuls === 0)
    throw new Error(
      `${source}: no MatMul or Gemm with a constant 2-D float weight to quantise${skipped.length > 0 ? ` (${skipped.length} skipped: ${skipped[0]!.reason})` : ""}`,
    );

  // Drop the fp32 weights nothing reads any more.
  const read = new Set<string>([...nodes.flatMap((n) => n.input), ...graph.output.map((o) => o.name)]);
  const initializer = [...graph.initializer.filter((t) => read.has(t.name ?? "")), ...added];
  const report: QuantizeReport = {
    quantization,
    matmuls,
    weights: quantized.size,
    skipped,
    fp32WeightBytes,
    int8WeightBytes,
  };
  const metadataProps = [
    ...(model.metadataProps ?? []),
    { key: "actionflow.quantization", value: quantization },
    { key: "actionflow.quantization_scheme", value: INT8_SCHEME },
    { key: "actionflow.quantized_matmuls", value: String(matmuls) },
  ];
  return {
    model: {
      ...model,
      opsetImport: model.opsetImport.length > 0 ? model.opsetImport : [{ domain: "", version: OPSET }],
      graph: { ...graph, node: nodes, initializer },
      metadataProps,
      ...(model.docString ? { docString: `${model.docString} (int8 weight matrix products)` } : {}),
    },
    report,
  };
}

/** `quantizeModel` over ONNX protobuf bytes (`source` names them in errors). */
export function quantizeBytes(
  bytes: Uint8Array,
  opts: { quantization?: Quantization; source?: string } = {},
): { bytes: Uint8Array; report: QuantizeReport } {
  const { model, report } = quantizeModel(decodeModel(bytes, opts.source), opts);
  return { bytes: encodeModel(model), report };
}

/** The default path of a quantised sample graph beside a run's fp32 one: `<run>/policy.int8.onnx`. */
export function quantizedPathFor(run: string, quantization: Quantization): string {
  return join(run, `policy.${quantization}.onnx`);
}

/**
 * Symmetric per-column int8 quantisation of `w` `[k, n]` (row-major): `scale[j] = max_i |w[i, j]| / 127`
 * (1 for an all-zero column), `q[i, j] = round(w[i, j] / scale[j])` in [-127, 127].
 */
export function quantizeColumns(w: Float32Array, k: number, n: number): { q: Int8Array; scale: Float32Array } {
  if (w.length !== k * n) throw new Error(`quantizeColumns: ${w.length} values do not fill [${k}, ${n}]`);
  const scale = new Float32Array(n);
  for (let i = 0; i < k; i++) for (let j = 0; j < n; j++) scale[j] = Math.max(scale[j]!, Math.abs(w[i * n + j]!));
  for (let j = 0; j < n; j++) {
    const s = scale[j]!;
    if (!Number.isFinite(s)) throw new Error(`quantizeColumns: column ${j} holds a non-finite weight`);
    scale[j] = s > 0 ? s / QMAX : 1;
  }
  const q = new Int8Array(k * n);
  for (let i = 0; i < k; i++)
    for (let j = 0; j < n; j++) {
      const v = Math.round(w[i * n + j]! / scale[j]!);
      q[i * n + j] = Math.max(-QMAX, Math.min(QMAX, v));
    }
  return { q, scale };
}

/** How one node is rewritten: not at all (with a reason when it is a matrix product), or as x @ W (+ bias). */
type Plan =
  { kind: "skip"; reason?: string } | { kind: "matmul"; x: string; weight: string; transposed: boolean; bias?: string };

/**
 * onnxruntime's `Attention(x, W, bias)` with W `[K, 3 * width]` and bias float32 initializers (the
 * fused export's self-attention), or undefined.
 */
function attentionPlanOf(
  node: NodeProto,
  inits: ReadonlyMap<string, TensorProto>,
): { x: string; weight: string; bias: string } | undefined {
  if (node.domain !== CONTRIB_DOMAIN || node.opType !== "Attention" || node.input.length !== 3) return undefined;
  const [x, weight, bias] = node.input as [string, string, string];
  const w = inits.get(weight);
  const b = inits.get(bias);
  if (w?.dataType !== DataType.FLOAT || w.dims.length !== 2 || b?.dataType !== DataType.FLOAT || inits.has(x))
    return undefined;
  return { x, weight, bias };
}

function planOf(node: NodeProto, inits: ReadonlyMap<string, TensorProto>): Plan {
  if ((node.domain ?? "") !== "" || (node.opType !== "MatMul" && node.opType !== "Gemm")) return { kind: "skip" };
  const [x, wName, bias] = node.input as [string, string, string | undefined];
  const w = inits.get(wName);
  if (!w) return { kind: "skip" }; // a product of two run-time values (attention): nothing to quantise
  if (inits.has(x)) return { kind: "skip", reason: "both operands are constants" };
  if (w.dataType !== DataType.FLOAT || w.dims.length !== 2)
    return { kind: "skip", reason: `weight '${wName}' is not a 2-D float32 tensor` };
  if (node.opType === "MatMul") return { kind: "matmul", x, weight: wName, transposed: false };
  const a = attrs(node.attribute ?? []);
  if ((a["transA"] ?? 0) !== 0) return { kind: "skip", reason: "Gemm with transA" };
  if ((a["alpha"] ?? 1) !== 1 || (bias !== undefined && bias !== "" && (a["beta"] ?? 1) !== 1))
    return { kind: "skip", reason: "Gemm with alpha or beta other than 1" };
  return {
    kind: "matmul",
    x,
    weight: wName,
    transposed: (a["transB"] ?? 0) !== 0,
    ...(bias !== undefined && bias !== "" ? { bias } : {}),
  };
}

function attrs(list: readonly AttributeProto[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of list) {
    // Decoded protos leave out fields at their default (0).
    if (a.type === AttributeType.INT) out[a.name] = a.i ?? 0;
    else if (a.type === AttributeType.FLOAT) out[a.name] = a.f ?? 0;
  }
  return out;
}

function castToFloat(): AttributeProto {
  return { name: "to", type: AttributeType.INT, i: DataType.FLOAT };
}

/** `[rows, cols]` -> `[cols, rows]`, row-major. */
function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = a[i * cols + j]!;
  return out;
}
