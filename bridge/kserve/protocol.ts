/**
 * The KServe v2 / Open Inference Protocol as both sides speak it (the client in this folder, the
 * test server in the tests): tensors and their datatypes, the REST infer messages in JSON and with
 * the binary tensor extension, and the parsers of the metadata and model-configuration replies.
 *
 * REST (`/v2/...`): `GET /v2/health/live|ready`, `GET /v2/models/<m>[/versions/<v>]` (metadata),
 * `.../ready`, `.../config` (Triton's model-configuration extension), `POST .../infer`. An infer
 * request is `{id?, parameters?, inputs: [{name, shape, datatype, parameters?, data?}], outputs?:
 * [{name, parameters?}]}` with `data` flattened row-major. Binary tensor extension: an input with
 * parameter `binary_data_size: n` carries no `data`; its n raw little-endian bytes follow the JSON
 * header, inputs in order, the header's length in the `Inference-Header-Content-Length` HTTP header.
 * An output asked for with parameter `binary_data: true` (or every output, with request parameter
 * `binary_data_output: true`) comes back the same way. An error is an HTTP status with
 * `{"error": "<message>"}`.
 *
 * Every parser takes `unknown` and throws {@link KServeProtocolError} naming the field and value.
 */

/** Bytes per element of every datatype carried here (BYTES and the 16-bit floats are not). */
export const DATATYPE_BYTES = {
  BOOL: 1,
  UINT8: 1,
  UINT16: 2,
  UINT32: 4,
  UINT64: 8,
  INT8: 1,
  INT16: 2,
  INT32: 4,
  INT64: 8,
  FP32: 4,
  FP64: 8,
} as const;

/** A KServe v2 tensor datatype carried here. */
export type Datatype = keyof typeof DATATYPE_BYTES;

/** Typed-array storage of each datatype (BOOL as one byte, 0 or 1, per element). */
export type TensorData =
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigUint64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Float32Array
  | Float64Array;

/** One named tensor: `data` row-major over `shape`. */
export interface Tensor {
  name: string;
  datatype: Datatype;
  shape: number[];
  data: TensorData;
}

/** A message that breaks the protocol (malformed JSON, a wrong field, sizes that do not add up). */
export class KServeProtocolError extends Error {
  override readonly name = "KServeProtocolError";
}

/** Whether `s` is a datatype carried here. */
export function isDatatype(s: unknown): s is Datatype {
  return typeof s === "string" && Object.hasOwn(DATATYPE_BYTES, s);
}

/** Elements of a shape (1 for `[]`); throws on a negative or non-integer dimension. */
export function elementCount(shape: readonly number[], where: string): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0)
      throw new KServeProtocolError(`${where}: shape [${shape.join(", ")}] has an invalid dimension ${d}`);
    n *= d;
  }
  return n;
}

function allocate(datatype: Datatype, n: number): TensorData {
  switch (datatype) {
    case "BOOL":
    case "UINT8":
      return new Uint8Array(n);
    case "UINT16":
      return new Uint16Array(n);
    case "UINT32":
      return new Uint32Array(n);
    case "UINT64":
      return new BigUint64Array(n);
    case "INT8":
      return new Int8Array(n);
    case "INT16":
      return new Int16Array(n);
    case "INT32":
      return new Int32Array(n);
    case "INT64":
      return new BigInt64Array(n);
    case "FP32":
      return new Float32Array(n);
    case "FP64":
      return new Float64Array(n);
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
if (!LITTLE_ENDIAN) throw new Error("bridge/kserve: a big-endian host is not supported (tensors are little-endian)");

/** A tensor's raw little-endian bytes (a view, no copy). */
export function tensorBytes(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** A tensor from raw little-endian bytes (copied, so the result is aligned); throws when the size does not match. */
export function tensorFromBytes(
  name: string,
  datatype: Datatype,
  shape: readonly number[],
  bytes: Uint8Array,
  where: string,
): Tensor {
  const n = elementCount(shape, `${where} '${name}'`);
  const want = n * DATATYPE_BYTES[datatype];
  if (bytes.byteLength !== want)
    throw new KServeProtocolError(
      `${where} '${name}': ${bytes.byteLength} bytes of data for ${datatype} [${shape.join(", ")}] (expected ${want})`,
    );
  const data = allocate(datatype, n);
  new Uint8Array(data.buffer).set(bytes);
  if (datatype === "BOOL") checkBool(data as Uint8Array, name, where);
  return { name, datatype, shape: [...shape], data };
}

function checkBool(d: Uint8Array, name: string, where: string): void {
  const bad = d.findIndex((x) => x > 1);
  if (bad >= 0) throw new KServeProtocolError(`${where} '${name}': BOOL element ${bad} is ${d[bad]}, not 0 or 1`);
}

function flatten(v: unknown, out: unknown[]): void {
  if (Array.isArray(v)) for (const x of v) flatten(x, out);
  else out.push(v);
}

/** A tensor from a JSON `data` array (flat or nested, row-major); throws naming the element that does not fit. */
export function tensorFromJson(
  name: string,
  datatype: Datatype,
  shape: readonly number[],
  data: unknown,
  where: string,
): Tensor {
  const n = elementCount(shape, `${where} '${name}'`);
  if (!Array.isArray(data)) throw new KServeProtocolError(`${where} '${name}': 'data' must be an array`);
  const flat: unknown[] = [];
  flatten(data, flat);
  if (flat.length !== n)
    throw new KServeProtocolError(
      `${where} '${name}': ${flat.length} elements of data for shape [${shape.join(", ")}] (expected ${n})`,
    );
  const out = allocate(datatype, n);
  for (let i = 0; i < n; i++) {
    const x = flat[i];
    const bad = (): never => {
      throw new KServeProtocolError(
        `${where} '${name}': element ${i} (${JSON.stringify(x)}) is not a ${datatype} value`,
      );
    };
    if (datatype === "BOOL") {
      if (typeof x !== "boolean") bad();
      (out as Uint8Array)[i] = x ? 1 : 0;
    } else if (datatype === "FP32" || datatype === "FP64") {
      if (typeof x !== "number") bad();
      (out as Float32Array)[i] = x as number;
    } else {
      if (typeof x !== "number" || !Number.isSafeInteger(x)) bad();
      if (out instanceof BigInt64Array || out instanceof BigUint64Array) {
        if (out instanceof BigUint64Array && (x as number) < 0) bad();
        out[i] = BigInt(x as number);
      } else {
        const v = x as number;
        out[i] = v;
        if (out[i] !== v) bad(); // out of the type's range
      }
    }
  }
  return { name, datatype, shape: [...shape], data: out };
}

/** A tensor's elements as JSON values (64-bit integers as numbers: exact up to 2^53). */
export function tensorJsonData(t: Tensor): Array<number | boolean> {
  if (t.datatype === "BOOL") return Array.from(t.data as Uint8Array, (x) => x !== 0);
  if (t.data instanceof BigInt64Array || t.data instanceof BigUint64Array) return Array.from(t.data, (x) => Number(x));
  return Array.from(t.data as Float32Array);
}

// ---------------------------------------------------------------------------------------------
// JSON helpers

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(o: Json, key: string, where: string): string {
  const v = o[key];
  if (typeof v !== "string")
    throw new KServeProtocolError(`${where}: '${key}' must be a string, got ${JSON.stringify(v)}`);
  return v;
}

function optStr(o: Json, key: string, where: string): string | undefined {
  return o[key] === undefined || o[key] === null ? undefined : str(o, key, where);
}

/** An int64 field as protobuf JSON writes it (a number, or a decimal string). */
function int(v: unknown, where: string): number {
  const n = typeof v === "string" && /^-?\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isSafeInteger(n))
    throw new KServeProtocolError(`${where}: expected an integer, got ${JSON.stringify(v)}`);
  return n;
}

function intList(v: unknown, where: string): number[] {
  if (v === undefined) return [];
  if (!Array.isArray(v))
    throw new KServeProtocolError(`${where}: expected a list of integers, got ${JSON.stringify(v)}`);
  return v.map((x, i) => int(x, `${where}[${i}]`));
}

function list(o: Json, key: string, where: string): unknown[] {
  const v = o[key];
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new KServeProtocolError(`${where}: '${key}' must be a list, got ${JSON.stringify(v)}`);
  return v;
}

/** `o[snake] ?? o[camel]`: protobuf JSON may use either field name. */
function field(o: Json, snake: string): unknown {
  const camel = snake.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
  return o[snake] ?? o[camel];
}

/** Parses a JSON body, naming `where` when it is not JSON. */
export function parseJsonText(text: string, where: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new KServeProtocolError(`${where}: not valid JSON (${(err as Error).message})`);
  }
}

/** The `error` message of a KServe error body (`{"error": "..."}`), or the body itself when it has none. */
export function errorMessage(body: string): string {
  try {
    const j = JSON.parse(body) as unknown;
    if (isObject(j) && typeof j["error"] === "string") return j["error"];
  } catch {
    // not JSON: the text as it is
  }
  return body.trim().slice(0, 500) || "(empty body)";
}

// ---------------------------------------------------------------------------------------------
// Metadata and model configuration

/** One tensor of a model's metadata (`-1`: a variable dimension, the batch first when batching). */
export interface TensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
}

/** A model's metadata (`GET /v2/models/<m>`, gRPC `ModelMetadata`). */
export interface ModelMetadata {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
  /** The optional `parameters` of the Open Inference Protocol's metadata, as strings (Triton sends none). */
  parameters: Record<string, string>;
}

function parseTensorMetadata(v: unknown, where: string): TensorMetadata {
  if (!isObject(v)) throw new KServeProtocolError(`${where}: expected an object, got ${JSON.stringify(v)}`);
  return {
    name: str(v, "name", where),
    datatype: str(v, "datatype", where),
    shape: intList(v["shape"], `${where}.shape`),
  };
}

function parameterStrings(v: unknown, where: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isObject(v)) throw new KServeProtocolError(`${where}: expected an object, got ${JSON.stringify(v)}`);
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) {
    // REST: plain values; gRPC InferParameter / ModelParameter: {string_param}, {string_value}, ...
    const inner = isObject(x)
      ? (field(x, "string_value") ??
        field(x, "string_param") ??
        field(x, "int64_param") ??
        field(x, "bool_param") ??
        field(x, "double_param") ??
        field(x, "uint64_param"))
      : x;
    if (typeof inner === "string") out[k] = inner;
    else if (typeof inner === "number" || typeof inner === "boolean") out[k] = String(inner);
    else throw new KServeProtocolError(`${where}.${k}: expected a string, number or boolean, got ${JSON.stringify(x)}`);
  }
  return out;
}

/** Parses model metadata (REST JSON, or a gRPC `ModelMetadataResponse` decoded with snake_case names). */
export function parseModelMetadata(v: unknown, where: string): ModelMetadata {
  if (!isObject(v))
    throw new KServeProtocolError(`${where}: model metadata must be an object, got ${JSON.stringify(v)}`);
  const versions = list(v, "versions", where).map((x, i) => {
    if (typeof x !== "string") throw new KServeProtocolError(`${where}: versions[${i}] must be a string`);
    return x;
  });
  return {
    name: str(v, "name", where),
    versions,
    platform: optStr(v, "platform", where) ?? "",
    inputs: list(v, "inputs", where).map((x, i) => parseTensorMetadata(x, `${where}: inputs[${i}]`)),
    outputs: list(v, "outputs", where).map((x, i) => parseTensorMetadata(x, `${where}: outputs[${i}]`)),
    parameters: parameterStrings(v["parameters"], `${where}: parameters`),
  };
}

/** One input or output of a model configuration. */
export interface ConfigTensor {
  name: string;
  /** Triton's name, e.g. `TYPE_FP32`. */
  dataType: string;
  /** Without the batch dimension when `maxBatchSize > 0`. */
  dims: number[];
  /** `reshape.shape`, when given. */
  reshape?: number[];
  optional: boolean;
}

/** The parts of a Triton model configuration (`inference.ModelConfig`) a client needs. */
export interface ModelConfigInfo {
  name: string;
  platform: string;
  maxBatchSize: number;
  inputs: ConfigTensor[];
  outputs: ConfigTensor[];
  /** `parameters` map, string values. */
  parameters: Record<string, string>;
}

/** Triton's `TYPE_*` name of a KServe datatype (`FP32` -> `TYPE_FP32`). */
export function tritonType(datatype: string): string {
  return `TYPE_${datatype}`;
}

function parseConfigTensor(v: unknown, where: string): ConfigTensor {
  if (!isObject(v)) throw new KServeProtocolError(`${where}: expected an object, got ${JSON.stringify(v)}`);
  const dt = field(v, "data_type");
  // protobuf JSON writes enums by name; a binary decoder may hand over the number
  const dataType = typeof dt === "string" ? dt : typeof dt === "number" ? (TRITON_TYPE_NAMES[dt] ?? String(dt)) : "";
  if (!dataType.startsWith("TYPE_"))
    throw new KServeProtocolError(`${where}: 'data_type' must be a Triton TYPE_* name, got ${JSON.stringify(dt)}`);
  const reshape = field(v, "reshape");
  return {
    name: str(v, "name", where),
    dataType,
    dims: intList(v["dims"], `${where}.dims`),
    ...(isObject(reshape) ? { reshape: intList(reshape["shape"], `${where}.reshape.shape`) } : {}),
    optional: v["optional"] === true,
  };
}

/** `inference.DataType` numbers -> names (model_config.proto). */
const TRITON_TYPE_NAMES: Readonly<Record<number, string>> = {
  0: "TYPE_INVALID",
  1: "TYPE_BOOL",
  2: "TYPE_UINT8",
  3: "TYPE_UINT16",
  4: "TYPE_UINT32",
  5: "TYPE_UINT64",
  6: "TYPE_INT8",
  7: "TYPE_INT16",
  8: "TYPE_INT32",
  9: "TYPE_INT64",
  10: "TYPE_FP16",
  11: "TYPE_FP32",
  12: "TYPE_FP64",
  13: "TYPE_STRING",
  14: "TYPE_BF16",
};

/**
 * Parses a model configuration: Triton's REST `/config` JSON (snake_case field names, int64 as
 * numbers or strings), or a gRPC `ModelConfigResponse.config` decoded with snake_case names.
 */
export function parseModelConfig(v: unknown, where: string): ModelConfigInfo {
  if (!isObject(v)) throw new KServeProtocolError(`${where}: model config must be an object, got ${JSON.stringify(v)}`);
  const mbs = field(v, "max_batch_size");
  return {
    name: str(v, "name", where),
    platform: optStr(v, "platform", where) ?? "",
    maxBatchSize: mbs === undefined ? 0 : int(mbs, `${where}: max_batch_size`),
    inputs: list(v, "input", where).map((x, i) => parseConfigTensor(x, `${where}: input[${i}]`)),
    outputs: list(v, "output", where).map((x, i) => parseConfigTensor(x, `${where}: output[${i}]`)),
    parameters: parameterStrings(v["parameters"], `${where}: parameters`),
  };
}

// ---------------------------------------------------------------------------------------------
// REST infer messages

/** An inference request as a client builds it. */
export interface InferRequest {
  /** Echoed in the response. */
  id?: string;
  inputs: Tensor[];
  /** Outputs to return (default: all). */
  outputs?: string[];
}

/** An inference response. */
export interface InferResponse {
  modelName: string;
  modelVersion?: string;
  id?: string;
  outputs: Tensor[];
}

/** An HTTP body and, with the binary extension, the length of its JSON header. */
export interface RestBody {
  body: Buffer;
  /** `Inference-Header-Content-Length`; absent for a body that is all JSON. */
  headerLength?: number;
}

/** The REST infer request: binary tensors (default) or JSON `data`; outputs asked for in the same form. */
export function encodeRestInferRequest(req: InferRequest, opts: { binary?: boolean } = {}): RestBody {
  const binary = opts.binary ?? true;
  const header = {
    ...(req.id !== undefined ? { id: req.id } : {}),
    inputs: req.inputs.map((t) => ({
      name: t.name,
      shape: t.shape,
      datatype: t.datatype,
      ...(binary ? { parameters: { binary_data_size: t.data.byteLength } } : { data: tensorJsonData(t) }),
    })),
    ...(req.outputs !== undefined
      ? { outputs: req.outputs.map((name) => ({ name, ...(binary ? { parameters: { binary_data: true } } : {}) })) }
      : {}),
    ...(binary && req.outputs === undefined ? { parameters: { binary_data_output: true } } : {}),
  };
  const json = Buffer.from(JSON.stringify(header));
  if (!binary) return { body: json };
  return { body: Buffer.concat([json, ...req.inputs.map((t) => tensorBytes(t))]), headerLength: json.byteLength };
}

/** What the server needs to know of one requested output. */
export interface RequestedOutput {
  name: string;
  binary: boolean;
}

/** A REST infer request as the server reads it. */
export interface DecodedInferRequest {
  id?: string;
  inputs: Tensor[];
  /** Requested outputs; undefined: all outputs, in binary when `binaryOutputs`. */
  outputs?: RequestedOutput[];
  binaryOutputs: boolean;
}

/** Splits a body into its JSON header and the binary section (`headerLength` from the HTTP header). */
function splitBody(body: Buffer, headerLength: number | undefined, where: string): { header: unknown; rest: Buffer } {
  const len = headerLength ?? body.byteLength;
  if (!Number.isInteger(len) || len < 0 || len > body.byteLength)
    throw new KServeProtocolError(
      `${where}: Inference-Header-Content-Length ${headerLength} does not fit a body of ${body.byteLength} bytes`,
    );
  return { header: parseJsonText(body.subarray(0, len).toString("utf8"), where), rest: body.subarray(len) };
}

function binarySize(params: unknown, where: string): number | undefined {
  if (params === undefined) return undefined;
  if (!isObject(params)) throw new KServeProtocolError(`${where}: 'parameters' must be an object`);
  const v = params["binary_data_size"];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0)
    throw new KServeProtocolError(`${where}: 'binary_data_size' must be an integer >= 0, got ${JSON.stringify(v)}`);
  return v;
}

/** Reads the tensors of an infer request or response (`inputs` or `outputs`), JSON or binary. */
function readTensors(items: unknown[], rest: Buffer, where: string, dataRequired: boolean): Tensor[] {
  let at = 0;
  const tensors = items.map((x, i) => {
    const w = `${where}[${i}]`;
    if (!isObject(x)) throw new KServeProtocolError(`${w}: expected an object, got ${JSON.stringify(x)}`);
    const name = str(x, "name", w);
    const datatype = x["datatype"];
    if (!isDatatype(datatype))
      throw new KServeProtocolError(
        `${w} '${name}': datatype ${JSON.stringify(datatype)} is not supported (${Object.keys(DATATYPE_BYTES).join(", ")})`,
      );
    const shape = intList(x["shape"], `${w} '${name}' shape`);
    const size = binarySize(x["parameters"], `${w} '${name}'`);
    if (size !== undefined) {
      if (x["data"] !== undefined)
        throw new KServeProtocolError(`${w} '${name}': has both 'data' and a 'binary_data_size' parameter`);
      if (at + size > rest.byteLength)
        throw new KServeProtocolError(
          `${w} '${name}': binary_data_size ${size} at offset ${at} runs past the ${rest.byteLength} bytes after the JSON header`,
        );
      const t = tensorFromBytes(name, datatype, shape, rest.subarray(at, at + size), w);
      at += size;
      return t;
    }
    if (x["data"] === undefined && dataRequired)
      throw new KServeProtocolError(`${w} '${name}': has neither 'data' nor a 'binary_data_size' parameter`);
    return tensorFromJson(name, datatype, shape, x["data"], w);
  });
  if (at !== rest.byteLength)
    throw new KServeProtocolError(
      `${where}: ${rest.byteLength - at} bytes after the JSON header belong to no tensor (binary_data_size adds up to ${at})`,
    );
  return tensors;
}

/** Parses a REST infer request (server side). Throws {@link KServeProtocolError} naming the input. */
export function decodeRestInferRequest(body: Buffer, headerLength: number | undefined): DecodedInferRequest {
  const where = "infer request";
  const { header, rest } = splitBody(body, headerLength, where);
  if (!isObject(header)) throw new KServeProtocolError(`${where}: the JSON header must be an object`);
  const params = header["parameters"];
  if (params !== undefined && !isObject(params))
    throw new KServeProtocolError(`${where}: 'parameters' must be an object`);
  const binaryOutputs = isObject(params) && params["binary_data_output"] === true;
  if (!Array.isArray(header["inputs"])) throw new KServeProtocolError(`${where}: 'inputs' must be a list`);
  const inputs = readTensors(header["inputs"], rest, `${where}: inputs`, true);
  const outs = header["outputs"];
  let outputs: RequestedOutput[] | undefined;
  if (outs !== undefined) {
    if (!Array.isArray(outs)) throw new KServeProtocolError(`${where}: 'outputs' must be a list`);
    outputs = outs.map((o, i) => {
      const w = `${where}: outputs[${i}]`;
      if (!isObject(o)) throw new KServeProtocolError(`${w}: expected an object`);
      const p = o["parameters"];
      if (p !== undefined && !isObject(p)) throw new KServeProtocolError(`${w}: 'parameters' must be an object`);
      const b = isObject(p) ? p["binary_data"] : undefined;
      if (b !== undefined && typeof b !== "boolean")
        throw new KServeProtocolError(`${w}: 'binary_data' must be a boolean, got ${JSON.stringify(b)}`);
      return { name: str(o, "name", w), binary: b ?? binaryOutputs };
    });
  }
  const id = optStr(header, "id", where);
  return { ...(id !== undefined ? { id } : {}), inputs, ...(outputs ? { outputs } : {}), binaryOutputs };
}

/** The REST infer response (server side): each output in binary or as JSON `data`. */
export function encodeRestInferResponse(res: InferResponse, binary: (name: string) => boolean): RestBody {
  const bin = res.outputs.filter((t) => binary(t.name));
  const header = {
    model_name: res.modelName,
    ...(res.modelVersion !== undefined ? { model_version: res.modelVersion } : {}),
    ...(res.id !== undefined ? { id: res.id } : {}),
    outputs: res.outputs.map((t) => ({
      name: t.name,
      datatype: t.datatype,
      shape: t.shape,
      ...(binary(t.name) ? { parameters: { binary_data_size: t.data.byteLength } } : { data: tensorJsonData(t) }),
    })),
  };
  const json = Buffer.from(JSON.stringify(header));
  if (bin.length === 0) return { body: json };
  return { body: Buffer.concat([json, ...bin.map((t) => tensorBytes(t))]), headerLength: json.byteLength };
}

/** Parses a REST infer response (client side). Throws {@link KServeProtocolError} naming the output. */
export function decodeRestInferResponse(body: Buffer, headerLength: number | undefined): InferResponse {
  const where = "infer response";
  const { header, rest } = splitBody(body, headerLength, where);
  if (!isObject(header)) throw new KServeProtocolError(`${where}: the JSON header must be an object`);
  if (!Array.isArray(header["outputs"])) throw new KServeProtocolError(`${where}: 'outputs' must be a list`);
  const id = optStr(header, "id", where);
  const version = optStr(header, "model_version", where);
  return {
    modelName: optStr(header, "model_name", where) ?? "",
    ...(version !== undefined ? { modelVersion: version } : {}),
    ...(id !== undefined ? { id } : {}),
    outputs: readTensors(header["outputs"], rest, `${where}: outputs`, true),
  };
}
