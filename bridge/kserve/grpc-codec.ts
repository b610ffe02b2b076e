/**
 * The gRPC side of the KServe v2 protocol, shared by the client and the test server: the
 * `inference.GRPCInferenceService` definition loaded from `proto/grpc_service.proto` (with
 * `@grpc/proto-loader`: snake_case field names, int64 as numbers, enums by name, bytes as
 * Buffers), and the conversion of infer messages to and from {@link Tensor}s. Tensors travel in
 * `raw_input_contents` / `raw_output_contents` (little-endian, in the order of `inputs` /
 * `outputs`); typed `contents` are read too.
 */
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import {
  DATATYPE_BYTES,
  KServeProtocolError,
  elementCount,
  isDatatype,
  tensorBytes,
  tensorFromBytes,
  tensorFromJson,
  type Datatype,
  type InferRequest,
  type InferResponse,
  type Tensor,
} from "./protocol.ts";

/** The folder of the `.proto` files. */
export const PROTO_DIR = fileURLToPath(new URL("./proto/", import.meta.url));

let service: grpc.ServiceClientConstructor | undefined;

/** The `inference.GRPCInferenceService` client constructor (also the server's service definition: `.service`). */
export function inferenceService(): grpc.ServiceClientConstructor {
  if (!service) {
    const def = protoLoader.loadSync("grpc_service.proto", {
      includeDirs: [PROTO_DIR],
      keepCase: true,
      longs: Number,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      inference: { GRPCInferenceService: grpc.ServiceClientConstructor };
    };
    service = pkg.inference.GRPCInferenceService;
  }
  return service;
}

/** A decoded (or to-be-encoded) `InferTensorContents`. */
type Contents = Partial<
  Record<
    | "bool_contents"
    | "int_contents"
    | "int64_contents"
    | "uint_contents"
    | "uint64_contents"
    | "fp32_contents"
    | "fp64_contents",
    unknown[]
  >
>;

/** A tensor entry of an infer request or response message. */
interface TensorMessage {
  name: string;
  datatype: string;
  shape: number[];
  parameters?: Record<string, unknown>;
  contents?: Contents | null;
}

/** `ModelInferRequest` as proto-loader hands it over (snake_case). */
export interface GrpcInferRequest {
  model_name: string;
  model_version: string;
  id: string;
  parameters?: Record<string, unknown>;
  inputs: TensorMessage[];
  outputs: Array<{ name: string; parameters?: Record<string, unknown> }>;
  raw_input_contents: Buffer[];
}

/** `ModelInferResponse` as proto-loader hands it over (snake_case). */
export interface GrpcInferResponse {
  model_name: string;
  model_version: string;
  id: string;
  outputs: TensorMessage[];
  raw_output_contents: Buffer[];
}

function contentsField(datatype: Datatype): keyof Contents {
  switch (datatype) {
    case "BOOL":
      return "bool_contents";
    case "INT8":
    case "INT16":
    case "INT32":
      return "int_contents";
    case "INT64":
      return "int64_contents";
    case "UINT8":
    case "UINT16":
    case "UINT32":
      return "uint_contents";
    case "UINT64":
      return "uint64_contents";
    case "FP32":
      return "fp32_contents";
    case "FP64":
      return "fp64_contents";
  }
}

/** Reads the tensors of a message: `raw` contents in order when given (one per tensor), else typed `contents`. */
function readTensors(items: readonly TensorMessage[], raw: readonly Buffer[], where: string): Tensor[] {
  if (raw.length > 0 && raw.length !== items.length)
    throw new KServeProtocolError(`${where}: ${raw.length} raw contents for ${items.length} tensors`);
  return items.map((t, i) => {
    const w = `${where}[${i}]`;
    if (!isDatatype(t.datatype))
      throw new KServeProtocolError(
        `${w} '${t.name}': datatype ${JSON.stringify(t.datatype)} is not supported (${Object.keys(DATATYPE_BYTES).join(", ")})`,
      );
    const shape = t.shape.map(Number);
    if (raw.length > 0) {
      const c = t.contents ? Object.values(t.contents).some((v) => Array.isArray(v) && v.length > 0) : false;
      if (c) throw new KServeProtocolError(`${w} '${t.name}': has both typed contents and raw contents`);
      return tensorFromBytes(t.name, t.datatype, shape, raw[i]!, w);
    }
    const values = t.contents?.[contentsField(t.datatype)] ?? [];
    if (values.length === 0 && elementCount(shape, w) > 0)
      throw new KServeProtocolError(`${w} '${t.name}': has no contents (neither raw nor ${contentsField(t.datatype)})`);
    return tensorFromJson(t.name, t.datatype, shape, values, w);
  });
}

/** A client's `ModelInferRequest`: tensors as raw contents. */
export function toGrpcInferRequest(model: string, version: string | undefined, req: InferRequest): GrpcInferRequest {
  return {
    model_name: model,
    model_version: version ?? "",
    id: req.id ?? "",
    inputs: req.inputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape })),
    outputs: (req.outputs ?? []).map((name) => ({ name })),
    raw_input_contents: req.inputs.map((t) => Buffer.from(tensorBytes(t))),
  };
}

/** The server's view of a `ModelInferRequest` (raw or typed contents). */
export function fromGrpcInferRequest(m: GrpcInferRequest): { id?: string; inputs: Tensor[]; outputs?: string[] } {
  const inputs = readTensors(m.inputs ?? [], m.raw_input_contents ?? [], "infer request: inputs");
  const outputs = (m.outputs ?? []).map((o) => o.name);
  return { ...(m.id ? { id: m.id } : {}), inputs, ...(outputs.length > 0 ? { outputs } : {}) };
}

/** A server's `ModelInferResponse`: tensors as raw contents. */
export function toGrpcInferResponse(res: InferResponse): GrpcInferResponse {
  return {
    model_name: res.modelName,
    model_version: res.modelVersion ?? "",
    id: res.id ?? "",
    outputs: res.outputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape })),
    raw_output_contents: res.outputs.map((t) => Buffer.from(tensorBytes(t))),
  };
}

/** The client's view of a `ModelInferResponse`. */
export function fromGrpcInferResponse(m: GrpcInferResponse): InferResponse {
  return {
    modelName: m.model_name,
    ...(m.model_version ? { modelVersion: m.model_version } : {}),
    ...(m.id ? { id: m.id } : {}),
    outputs: readTensors(m.outputs ?? [], m.raw_output_contents ?? [], "infer response: outputs"),
  };
}
