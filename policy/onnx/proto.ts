/**
 * ONNX protobuf messages: plain TypeScript shapes for the subset actionflow writes, and
 * `encodeModel` / `decodeModel` through protobufjs with the official field numbers
 * (`policy/onnx/schema.ts`).
 *
 * Field names are protobufjs's camelCase of the official snake_case names (`opsetImport` for
 * `opset_import`). int64 fields are written from JS numbers (exact up to 2^53) and decoded back
 * to numbers.
 */
import protobuf from "protobufjs";
import { ONNX_PROTO } from "./schema.ts";

/** ONNX opset of every graph actionflow writes (Debian's python3-onnx 1.12 checks up to 17). */
export const OPSET = 17;
/** ONNX IR version of every file actionflow writes. */
export const IR_VERSION = 8;

/** `TensorProto.DataType` values used here. */
export const DataType = { FLOAT: 1, UINT8: 2, INT32: 6, INT64: 7, BOOL: 9, DOUBLE: 11 } as const;

/** `AttributeProto.AttributeType` values. */
export const AttributeType = {
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
} as const;

/** A serialized tensor: row-major `rawData` (little-endian) of `dims` and `dataType`. */
export interface TensorProto {
  name?: string;
  dims: number[];
  dataType: number;
  rawData?: Uint8Array;
  floatData?: number[];
  int64Data?: number[];
  int32Data?: number[];
  docString?: string;
}

/** A node attribute: exactly one value field, named by `type`. */
export interface AttributeProto {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  t?: TensorProto;
  floats?: number[];
  ints?: number[];
}

/** One operator application: `opType` over named `input` values producing named `output` values. */
export interface NodeProto {
  input: string[];
  output: string[];
  name?: string;
  opType: string;
  domain?: string;
  attribute?: AttributeProto[];
  docString?: string;
}

/** One dimension: a static size or a symbolic name (`batch`). */
export type DimensionProto = { dimValue: number } | { dimParam: string };

/** The type of a graph input, output or intermediate value (tensors only). */
export interface TypeProto {
  tensorType: { elemType: number; shape?: { dim: DimensionProto[] } };
}

/** A named, typed value. */
export interface ValueInfoProto {
  name: string;
  type: TypeProto;
  docString?: string;
}

/** A computation graph: nodes in topological order, constant initializers, typed inputs/outputs. */
export interface GraphProto {
  name: string;
  node: NodeProto[];
  initializer: TensorProto[];
  input: ValueInfoProto[];
  output: ValueInfoProto[];
  valueInfo?: ValueInfoProto[];
  docString?: string;
}

/** `(domain, version)` of an operator set; the default domain is the empty string (absent when decoded). */
export interface OperatorSetIdProto {
  domain?: string;
  version: number;
}

/** A key/value metadata entry. */
export interface StringStringEntryProto {
  key: string;
  value: string;
}

/** A whole ONNX model file. */
export interface ModelProto {
  irVersion: number;
  opsetImport: OperatorSetIdProto[];
  producerName?: string;
  producerVersion?: string;
  domain?: string;
  modelVersion?: number;
  docString?: string;
  graph: GraphProto;
  metadataProps?: StringStringEntryProto[];
}

let modelType: protobuf.Type | undefined;

function ModelType(): protobuf.Type {
  if (!modelType) modelType = protobuf.parse(ONNX_PROTO, { keepCase: false }).root.lookupType("onnx.ModelProto");
  return modelType;
}

/** Serialises a model to ONNX protobuf bytes; throws naming the first invalid field. */
export function encodeModel(model: ModelProto): Uint8Array {
  const T = ModelType();
  const problem = T.verify(model);
  if (problem) throw new Error(`invalid ONNX model: ${problem}`);
  return T.encode(T.fromObject(model)).finish();
}

/**
 * Parses ONNX protobuf bytes (from any producer) into a `ModelProto`; `source` names the file in
 * errors. Fields at their default value (empty string, 0) are absent from the result.
 */
export function decodeModel(bytes: Uint8Array, source = "model"): ModelProto {
  const T = ModelType();
  let msg: protobuf.Message;
  try {
    msg = T.decode(bytes);
  } catch (err) {
    throw new Error(`${source}: not a valid ONNX protobuf file`, { cause: err });
  }
  return T.toObject(msg, { longs: Number, bytes: Uint8Array, defaults: false, arrays: true }) as unknown as ModelProto;
}

/** A float32 tensor proto with little-endian raw data. */
export function floatTensor(name: string, data: Float32Array, dims: readonly number[]): TensorProto {
  const raw = new Uint8Array(data.length * 4);
  const view = new DataView(raw.buffer);
  for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i]!, true);
  return { name, dims: [...dims], dataType: DataType.FLOAT, rawData: raw };
}

/** An int64 tensor proto (values must be exact integers). */
export function int64Tensor(name: string, data: readonly number[], dims: readonly number[]): TensorProto {
  return { name, dims: [...dims], dataType: DataType.INT64, int64Data: [...data] };
}

/** The float32 values of a tensor proto written by `floatTensor` (raw data) or with `floatData`. */
export function floatValues(t: TensorProto): Float32Array {
  if (t.rawData && t.rawData.length > 0) {
    const view = new DataView(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength);
    const out = new Float32Array(t.rawData.byteLength / 4);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
    return out;
  }
  return Float32Array.from(t.floatData ?? []);
}

/** Metadata of a model as a plain record. */
export function metadataOf(model: ModelProto): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of model.metadataProps ?? []) out[e.key] = e.value;
  return out;
}
