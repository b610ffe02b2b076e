/**
 * One pixels-in sample graph from a head trained on a frozen encoder's embeddings: the user's ONNX
 * image encoder is composed in front of the head's embedding feature, so the written `policy.onnx`
 * takes the camera as `obs.<name>` uint8 RGB `[batch, H, W, 3]` exactly like a head trained end to
 * end on pixels (`cameraInput` in graphs.ts).
 *
 * Inside the graph, per camera: Cast to float, / 255, (x - mean) / std per channel with the mean and
 * std `dataset embed` used, Transpose to NCHW `[batch, 3, H, W]`, the encoder's own nodes and
 * initializers (every value renamed under the prefix `encoder.<name>/`, so nothing clashes with the
 * head's), its output (`[batch, D]` or `[batch, T, D]`, taken as `dataset embed` took it: no
 * pooling), then the head's feature normalisation and the rest of the sample graph unchanged.
 *
 * The encoder's default-domain opset must be 13..17 (the export's is 17; older graphs use operators
 * whose definition changed, newer ones operators the export's opset lacks): anything else is refused
 * naming the opset. Other domains are merged when the head does not import them at another version.
 * Weights stored as external data beside the encoder are inlined (up to {@link MAX_INLINED_BYTES}), so
 * `policy.onnx` stays one self-contained file; a model with local functions or sparse initializers is
 * refused. The metadata lists the feature as a camera (kind `image`, key the source camera,
 * `[H, W, 3]`) and records the encoder under `actionflow.encoders`.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, join } from "node:path";
import protobuf from "protobufjs";
import { parseJson } from "../io/json.ts";
import {
  DataType,
  OPSET,
  decodeModel,
  floatTensor,
  metadataOf,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type OperatorSetIdProto,
  type TensorProto,
  type ValueInfoProto,
} from "./proto.ts";
import { FeaturesMetadataSchema, type FeatureIO } from "./schema.ts";
import { obsInputName } from "./graphs.ts";

/** The oldest default-domain opset of an encoder that composes unchanged into the export's opset 17. */
export const MIN_ENCODER_OPSET = 13;
/** External data inlined into `policy.onnx` at most (protobuf files stop at 2 GiB). */
export const MAX_INLINED_BYTES = 1024 ** 3;
/** The metadata key recording the composed encoders. */
export const ENCODERS_METADATA = "actionflow.encoders";

/**
 * Operators of the default domain whose meaning changed between opset 13 and 17, with the opset of
 * the change: an encoder of an older opset using one is refused.
 */
const CHANGED_SINCE_13: Readonly<Record<string, number>> = { RoiAlign: 16 };

/** A frozen image encoder and the preprocessing `dataset embed` ran it with. */
export interface FrozenEncoder {
  /** The encoder file (errors name it). */
  file: string;
  /** Its model, external data inlined ({@link loadEncoderModel}). */
  model: ModelProto;
  /** SHA-256 (hex) of the file. */
  sha256: string;
  /** The image input `[N, 3, H, W]` float32 and the embedding output (`pooler_output`, ...). */
  input: string;
  output: string;
  /** The size the camera is fed at (`[batch, height, width, 3]`). */
  size: { width: number; height: number };
  /** Per-channel mean and std in [0, 1] pixel units. */
  mean: readonly number[];
  std: readonly number[];
  /** The source camera key (`observation.images.front`): the composed feature's key. */
  camera: string;
  /** The embedding feature key the head was trained on (`observation.embeddings.front`). */
  feature: string;
  /** Per-frame embedding shape `dataset embed` recorded: `[D]` or `[T, D]`. */
  shape: readonly number[];
}

/** What `actionflow.encoders` records per composed feature (model name). */
export interface ComposedEncoderRecord {
  file: string;
  sha256: string;
  input: string;
  output: string;
  camera: string;
  feature: string;
  shape: number[];
  size: { width: number; height: number };
  mean: number[];
  std: number[];
}

/**
 * Reads an encoder file: its bytes' SHA-256 and its model with external data (files beside it)
 * inlined. Throws naming the file when it cannot be read, is not ONNX, holds local functions or
 * sparse initializers, or its external data is missing or too large.
 */
export async function loadEncoderModel(file: string): Promise<{ model: ModelProto; sha256: string }> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(file));
  } catch (err) {
    throw new Error(`${file}: cannot read the encoder`, { cause: err });
  }
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  const extra = unsupportedParts(bytes, file);
  if (extra.length > 0)
    throw new Error(`${file}: the encoder holds ${extra.join(" and ")}, which cannot be composed; export it without`);
  const model = decodeModel(bytes, file);
  if (!model.graph) throw new Error(`${file}: the ONNX file has no graph`);
  await inlineExternalData(model.graph, file);
  return { model, sha256 };
}

/** SHA-256 (hex) of a file's bytes. */
export async function fileSha256(file: string): Promise<string> {
  return createHash("sha256")
    .update(await readFile(file))
    .digest("hex");
}

/**
 * Composes each encoder in front of the sample graph's feature of that model name (`front`): see the
 * module comment, and what `actionflow.encoders` records. `sample` is not modified. Throws naming the encoder file and the feature when the
 * encoder does not fit (input, output, shape, opset, domain).
 */
export function composeEncoders(
  sample: ModelProto,
  encoders: Readonly<Record<string, FrozenEncoder>>,
): { model: ModelProto; encoders: Record<string, ComposedEncoderRecord> } {
  const meta = metadataOf(sample);
  const features = parseJson(
    meta["actionflow.features"] ?? "",
    FeaturesMetadataSchema,
    "sample graph: metadata 'actionflow.features'",
  );
  const taken = valueNames(sample.graph);
  let graph: GraphProto = {
    ...sample.graph,
    node: [...sample.graph.node],
    initializer: [...sample.graph.initializer],
    input: [...sample.graph.input],
    valueInfo: [...(sample.graph.valueInfo ?? [])],
  };
  let opsets = sample.opsetImport.map((o) => ({ ...o }));
  const records: Record<string, ComposedEncoderRecord> = {};
  const outFeatures: FeatureIO[] = features.map((f) => ({ ...f }));
  const docs: string[] = [];
  for (const [name, enc] of Object.entries(encoders)) {
    const at = outFeatures.findIndex((f) => f.name === name);
    const f = outFeatures[at];
    if (!f) throw new Error(`${enc.file}: the head has no observation feature '${name}' to feed`);
    if (f.kind === "image")
      throw new Error(`${enc.file}: feature '${name}' (${f.key}) is already a camera; an encoder feeds an embedding`);
    if (f.key !== enc.feature)
      throw new Error(
        `${enc.file}: made the embedding '${enc.feature}', but the head's feature '${name}' reads '${f.key}'`,
      );
    if (!sameDims(enc.shape, f.rawShape))
      throw new Error(
        `${enc.file}: embedding '${enc.feature}' is [${enc.shape.join(", ")}] per frame, the head's feature '${name}' takes [${f.rawShape.join(", ")}]`,
      );
    let prefix = `encoder.${name}/`;
    for (let k = 2; [...taken].some((n) => n.startsWith(prefix)); k++) prefix = `encoder${k}.${name}/`;
    opsets = mergeOpsets(opsets, enc);
    const built = encoderNodes(enc, obsInputName(name), prefix, f.rawShape);
    const inputName = obsInputName(name);
    const index = graph.input.findIndex((i) => i.name === inputName);
    if (index < 0) throw new Error(`sample graph: no input '${inputName}' for feature '${name}'`);
    const input = [...graph.input];
    input[index] = built.input;
    graph = {
      ...graph,
      // the encoder's nodes first (they only read the camera input), then the head reading its output
      node: [
        ...built.nodes,
        ...graph.node.map((n) => ({ ...n, input: n.input.map((x) => (x === inputName ? built.output : x)) })),
      ],
      initializer: [...built.initializers, ...graph.initializer],
      input,
      valueInfo: [...built.valueInfo, ...(graph.valueInfo ?? [])],
    };
    for (const n of built.names) taken.add(n);
    const [h, w] = [enc.size.height, enc.size.width];
    outFeatures[at] = { name, key: enc.camera, shape: [h, w, 3], rawShape: [h, w, 3], kind: "image" };
    records[name] = {
      file: enc.file,
      sha256: enc.sha256,
      input: enc.input,
      output: enc.output,
      camera: enc.camera,
      feature: enc.feature,
      shape: [...enc.shape],
      size: { ...enc.size },
      mean: [...enc.mean],
      std: [...enc.std],
    };
    docs.push(`${inputName} uint8 [batch, ${h}, ${w}, 3] through the frozen encoder ${enc.file} (${enc.output})`);
  }
  const metadataProps = (sample.metadataProps ?? [])
    .map((e) => (e.key === "actionflow.features" ? { key: e.key, value: JSON.stringify(outFeatures) } : e))
    .filter((e) => e.key !== ENCODERS_METADATA);
  metadataProps.push({ key: ENCODERS_METADATA, value: JSON.stringify(records) });
  const doc = [sample.docString ?? "", ...docs].filter(Boolean).join("; ");
  return {
    model: { ...sample, opsetImport: opsets, docString: doc, graph: { ...graph, docString: doc }, metadataProps },
    encoders: records,
  };
}

/** The renamed encoder and its preprocessing, ready to put in front of the head. */
interface EncoderPart {
  input: ValueInfoProto;
  nodes: NodeProto[];
  initializers: TensorProto[];
  valueInfo: ValueInfoProto[];
  /** The renamed embedding output the head reads. */
  output: string;
  /** Every value name the part defines. */
  names: Set<string>;
}

function encoderNodes(enc: FrozenEncoder, inputName: string, prefix: string, rawShape: readonly number[]): EncoderPart {
  const g = enc.model.graph;
  const r = (n: string): string => (n === "" ? "" : prefix + n);
  const inits = new Set(g.initializer.map((t) => t.name ?? ""));
  const inputs = g.input.filter((i) => !inits.has(i.name));
  const listed = g.input.map((i) => `'${i.name}'`).join(", ");
  if (inputs.length !== 1 || inputs[0]!.name !== enc.input)
    throw new Error(
      `${enc.file}: the encoder must take one input '${enc.input}' [N, 3, H, W] float32 (inputs: ${listed || "none"})`,
    );
  const img = inputs[0]!;
  const it = img.type?.tensorType;
  const dims = it?.shape?.dim ?? [];
  const { width: W, height: H } = enc.size;
  if (it?.elemType !== DataType.FLOAT || dims.length !== 4)
    throw new Error(`${enc.file}: input '${enc.input}' must be float32 [N, 3, H, W]`);
  for (const [axis, want] of [
    [1, 3],
    [2, H],
    [3, W],
  ] as const) {
    const d = dims[axis]!;
    if ("dimValue" in d && d.dimValue !== undefined && d.dimValue > 0 && d.dimValue !== want)
      throw new Error(
        `${enc.file}: input '${enc.input}' has ${d.dimValue} at axis ${axis}, the embedding was made at [N, 3, ${H}, ${W}]`,
      );
  }
  const out = g.output.find((o) => o.name === enc.output);
  if (!out)
    throw new Error(
      `${enc.file}: no output '${enc.output}' (outputs: ${g.output.map((o) => `'${o.name}'`).join(", ") || "none"})`,
    );
  const od = out.type?.tensorType?.shape?.dim;
  if (out.type?.tensorType?.elemType !== DataType.FLOAT)
    throw new Error(`${enc.file}: output '${enc.output}' is not float32`);
  if (od) {
    const per = od.slice(1);
    const bad =
      per.length !== rawShape.length ||
      per.some((d, i) => "dimValue" in d && d.dimValue !== undefined && d.dimValue > 0 && d.dimValue !== rawShape[i]);
    if (bad)
      throw new Error(
        `${enc.file}: output '${enc.output}' is [${od.map(dimText).join(", ")}], the head takes [N, ${rawShape.join(", ")}]`,
      );
  }
  for (const n of allNodes(g)) {
    const domain = n.domain ?? "";
    if ((domain === "" || domain === "ai.onnx") && n.opType in CHANGED_SINCE_13) {
      const v = defaultOpset(enc.model.opsetImport);
      if (v < CHANGED_SINCE_13[n.opType]!)
        throw new Error(
          `${enc.file}: operator ${n.opType} changed at opset ${CHANGED_SINCE_13[n.opType]} and the encoder is opset ${v}; re-export it at opset ${CHANGED_SINCE_13[n.opType]}..${OPSET}`,
        );
    }
  }

  // Preprocessing: uint8 [batch, H, W, 3] -> (x / 255 - mean) / std -> NCHW, named under the prefix.
  const pre: NodeProto[] = [];
  const consts: TensorProto[] = [
    floatTensor(`${prefix}pre/255`, Float32Array.of(255), []),
    floatTensor(`${prefix}pre/mean`, Float32Array.from(enc.mean), [3]),
    floatTensor(`${prefix}pre/std`, Float32Array.from(enc.std), [3]),
  ];
  const node = (opType: string, input: string[], output: string, attribute: NodeProto["attribute"] = []): string => {
    pre.push({ opType, input, output: [output], name: output, attribute });
    return output;
  };
  const x = node("Cast", [inputName], `${prefix}pre/float`, [{ name: "to", type: 2, i: DataType.FLOAT }]);
  const unit = node("Div", [x, `${prefix}pre/255`], `${prefix}pre/unit`);
  const centred = node("Sub", [unit, `${prefix}pre/mean`], `${prefix}pre/centred`);
  const normed = node("Div", [centred, `${prefix}pre/std`], `${prefix}pre/normalized`);
  node("Transpose", [normed], r(enc.input), [{ name: "perm", type: 7, ints: [0, 3, 1, 2] }]);

  const renamed = renameGraph(g, r);
  const names = new Set<string>([...pre.flatMap((n) => n.output), ...consts.map((t) => t.name ?? "")]);
  for (const n of valueNames(renamed)) names.add(n);
  return {
    input: {
      name: inputName,
      type: {
        tensorType: {
          elemType: DataType.UINT8,
          shape: { dim: [{ dimParam: "batch" }, { dimValue: H }, { dimValue: W }, { dimValue: 3 }] },
        },
      },
    },
    nodes: [...pre, ...renamed.node],
    initializers: [...consts, ...renamed.initializer],
    valueInfo: [...(renamed.valueInfo ?? []), ...renamed.output.filter((o) => o.name === r(enc.output))],
    output: r(enc.output),
    names,
  };
}

function dimText(d: { dimValue?: number; dimParam?: string }): string {
  return d.dimValue !== undefined ? String(d.dimValue) : (d.dimParam ?? "?");
}

function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** The default-domain opset of an import list (1 when absent, as ONNX reads it). */
function defaultOpset(imports: readonly OperatorSetIdProto[]): number {
  return imports.find((o) => (o.domain ?? "") === "" || o.domain === "ai.onnx")?.version ?? 1;
}

/** The head's opset imports with the encoder's merged in; throws naming the opset or domain that cannot be. */
function mergeOpsets(head: readonly OperatorSetIdProto[], enc: FrozenEncoder): OperatorSetIdProto[] {
  const out = head.map((o) => ({ ...o }));
  for (const o of enc.model.opsetImport) {
    const domain = o.domain ?? "";
    const v = Number(o.version);
    if (domain === "" || domain === "ai.onnx") {
      if (v > OPSET)
        throw new Error(
          `${enc.file}: the encoder is opset ${v} of the default domain (ai.onnx); the export is opset ${OPSET}: re-export the encoder at opset ${MIN_ENCODER_OPSET}..${OPSET}`,
        );
      if (v < MIN_ENCODER_OPSET)
        throw new Error(
          `${enc.file}: the encoder is opset ${v} of the default domain (ai.onnx); operators changed at opset 13 (Squeeze, Unsqueeze, Split, ReduceSum take axes as inputs): re-export it at opset ${MIN_ENCODER_OPSET}..${OPSET}`,
        );
      continue;
    }
    const mine = out.find((x) => (x.domain ?? "") === domain);
    if (mine && Number(mine.version) !== v)
      throw new Error(
        `${enc.file}: the encoder imports domain '${domain}' at version ${v}, the head at version ${mine.version}; they cannot be merged`,
      );
    if (!mine) out.push({ domain, version: v });
  }
  return out;
}

/** Every node of a graph and of its subgraphs (If, Loop, Scan bodies). */
function allNodes(g: GraphProto): NodeProto[] {
  const out: NodeProto[] = [];
  for (const n of g.node) {
    out.push(n);
    for (const a of n.attribute ?? []) for (const sub of subgraphs(a)) out.push(...allNodes(sub));
  }
  return out;
}

/** The subgraph values of an attribute as decoded (`g`, `graphs`; absent from the TS shape). */
function subgraphs(a: object): GraphProto[] {
  const x = a as { g?: GraphProto; graphs?: GraphProto[] };
  return [...(x.g ? [x.g] : []), ...(x.graphs ?? [])];
}

/** A copy of `g` with every value and node name mapped through `r`, subgraphs included. */
function renameGraph(g: GraphProto, r: (n: string) => string): GraphProto {
  const vi = (v: ValueInfoProto): ValueInfoProto => ({ ...v, name: r(v.name) });
  return {
    ...g,
    node: g.node.map((n) => ({
      ...n,
      input: n.input.map(r),
      output: n.output.map(r),
      ...(n.name ? { name: r(n.name) } : {}),
      attribute: (n.attribute ?? []).map((a) => {
        const x = a as { g?: GraphProto; graphs?: GraphProto[] };
        return {
          ...a,
          ...(x.g ? { g: renameGraph(x.g, r) } : {}),
          ...(x.graphs ? { graphs: x.graphs.map((s) => renameGraph(s, r)) } : {}),
        };
      }),
    })),
    initializer: g.initializer.map((t) => ({ ...t, name: r(t.name ?? "") })),
    input: g.input.map(vi),
    output: g.output.map(vi),
    valueInfo: (g.valueInfo ?? []).map(vi),
  };
}

/** Every value name a graph defines or reads (inputs, initializers, node inputs and outputs). */
function valueNames(g: GraphProto): Set<string> {
  const s = new Set<string>();
  for (const i of g.input) s.add(i.name);
  for (const t of g.initializer) s.add(t.name ?? "");
  for (const n of allNodes(g)) for (const x of [...n.input, ...n.output]) if (x) s.add(x);
  return s;
}

let partsType: protobuf.Type | undefined;

/** What of a ModelProto the export cannot carry over: local functions (25), sparse initializers (graph 15). */
function unsupportedParts(bytes: Uint8Array, file: string): string[] {
  partsType ??= protobuf
    .parse(
      `syntax = "proto2"; package c;
       message Graph { repeated bytes sparse_initializer = 15; }
       message Model { optional Graph graph = 7; repeated bytes functions = 25; }`,
    )
    .root.lookupType("c.Model");
  let m: { graph?: { sparse_initializer?: unknown[] }; functions?: unknown[] };
  try {
    m = partsType.toObject(partsType.decode(bytes), { arrays: true }) as typeof m;
  } catch (err) {
    throw new Error(`${file}: not a valid ONNX protobuf file`, { cause: err });
  }
  const out: string[] = [];
  if ((m.functions?.length ?? 0) > 0) out.push(`${m.functions!.length} local functions`);
  if ((m.graph?.sparse_initializer?.length ?? 0) > 0)
    out.push(`${m.graph!.sparse_initializer!.length} sparse initializers`);
  return out;
}

/** Moves every external-data initializer's bytes (files beside `file`) into its `rawData`. */
async function inlineExternalData(g: GraphProto, file: string): Promise<void> {
  const cache = new Map<string, Uint8Array>();
  let total = 0;
  for (const t of g.initializer) {
    const ext = (t as { externalData?: { key: string; value: string }[] }).externalData;
    if (!ext || ext.length === 0) continue;
    const get = (k: string): string | undefined => ext.find((e) => e.key === k)?.value;
    const location = get("location");
    if (!location || isAbsolute(location) || location.split(/[\\/]/).includes(".."))
      throw new Error(
        `${file}: initializer '${t.name}' names its external data at '${location ?? "(none)"}'; it must be a file beside the model`,
      );
    const path = join(dirname(file), location);
    let data = cache.get(path);
    if (!data) {
      try {
        data = new Uint8Array(await readFile(path));
      } catch (err) {
        throw new Error(`${file}: initializer '${t.name}': cannot read its external data ${path}`, { cause: err });
      }
      cache.set(path, data);
    }
    const offset = Number(get("offset") ?? 0);
    const length = get("length") !== undefined ? Number(get("length")) : data.length - offset;
    if (!(offset >= 0 && length >= 0 && offset + length <= data.length))
      throw new Error(
        `${file}: initializer '${t.name}': offset ${offset} + length ${length} is past the end of ${path} (${data.length} bytes)`,
      );
    total += length;
    if (total > MAX_INLINED_BYTES)
      throw new Error(
        `${file}: more than ${MAX_INLINED_BYTES} bytes of external data; too large to inline into one policy.onnx`,
      );
    t.rawData = data.slice(offset, offset + length);
    delete (t as { externalData?: unknown }).externalData;
  }
}
