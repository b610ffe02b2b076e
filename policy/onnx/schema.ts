/**
 * What actionflow writes into an ONNX model and reads back: the protobuf schema of the model file,
 * and the zod schemas of the JSON values it stores in `metadata_props`.
 */
import { z } from "zod";

/**
 * One observation feature as the graphs see it (`actionflow.features` holds an array of them, as JSON).
 * `shape` is the model (padded) shape `[d]` or `[n, d]`; `rawShape` the same with the last dim unpadded.
 * A camera (`kind: "image"`) has `shape` = `rawShape` = `[height, width, 3]`: its graph input
 * `obs.<name>` is uint8 RGB `[batch, height, width, 3]` and its observation value a Uint8Array.
 */
export const FeatureIOSchema = z.object({
  /** Model name (`state`); the graph input is `obs.<name>`. */
  name: z.string().min(1),
  /** Dataset column (`observation.state`). */
  key: z.string(),
  /** Model (padded) shape `[d]` or `[n, d]`; `[height, width, 3]` for a camera. */
  shape: z.array(z.number().int().positive()).min(1).max(3),
  /** Raw (dataset) shape: `shape` with the last dim unpadded. */
  rawShape: z.array(z.number().int().positive()).min(1).max(3),
  /** `image`: a camera, uint8 RGB `[height, width, 3]`; absent: a float32 vector or token set. */
  kind: z.literal("image").optional(),
});
/** One observation feature as the graphs see it (see {@link FeatureIOSchema}). */
export type FeatureIO = z.infer<typeof FeatureIOSchema>;

/** The `actionflow.features` metadata value: the observation features, in graph-input order. */
export const FeaturesMetadataSchema = z.array(FeatureIOSchema);

/**
 * The `actionflow.prompts` metadata value of a head conditioned on a task prompt: the prompt
 * feature's model name (graph input `obs.<feature>`) and its vocabulary in index order. Without
 * `embedding` the input is the prompt's index, int64 `[batch]`. With it, the input is the prompt's
 * embedding, float32 `[batch, dim]`: `table` gives one vector per prompt (other prompts are
 * refused); `encoder` names the folder beside the model holding the text encoder (`model.onnx`,
 * `tokenizer.json`) that embeds any prompt (`normalize`: L2), `vectors` being those of `prompts`.
 */
export const PromptsMetadataSchema = z.object({
  feature: z.string().min(1),
  prompts: z.array(z.string().min(1)).min(1),
  embedding: z
    .discriminatedUnion("source", [
      z.object({
        source: z.literal("table"),
        dim: z.number().int().positive(),
        vectors: z.array(z.array(z.number())),
      }),
      z.object({
        source: z.literal("encoder"),
        dim: z.number().int().positive(),
        normalize: z.boolean(),
        folder: z.string().min(1),
        vectors: z.array(z.array(z.number())),
      }),
    ])
    .optional(),
});
/** See {@link PromptsMetadataSchema}. */
export type PromptsMetadata = z.infer<typeof PromptsMetadataSchema>;

/**
 * The subset of the official ONNX schema (`onnx/onnx.proto3`, package `onnx`) that actionflow
 * writes and reads. Field numbers and types are copied from the official file and must never be
 * changed: a model written with them is read by every ONNX tool. Messages and fields the exporter
 * never uses (training info, sparse tensors, functions, sequence/map types) are left out; a reader
 * skips unknown fields, so files written by other tools still decode.
 */
export const ONNX_PROTO = `
syntax = "proto3";
package onnx;

message AttributeProto {
  enum AttributeType {
    UNDEFINED = 0;
    FLOAT = 1;
    INT = 2;
    STRING = 3;
    TENSOR = 4;
    GRAPH = 5;
    SPARSE_TENSOR = 11;
    FLOATS = 6;
    INTS = 7;
    STRINGS = 8;
    TENSORS = 9;
    GRAPHS = 10;
    SPARSE_TENSORS = 12;
  }
  string name = 1;
  string ref_attr_name = 21;
  string doc_string = 13;
  AttributeType type = 20;
  float f = 2;
  int64 i = 3;
  bytes s = 4;
  TensorProto t = 5;
  GraphProto g = 6;
  repeated float floats = 7;
  repeated int64 ints = 8;
  repeated bytes strings = 9;
  repeated TensorProto tensors = 10;
  repeated GraphProto graphs = 11;
}

message ValueInfoProto {
  string name = 1;
  TypeProto type = 2;
  string doc_string = 3;
}

message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  string name = 3;
  string op_type = 4;
  string domain = 7;
  repeated AttributeProto attribute = 5;
  string doc_string = 6;
}

message ModelProto {
  int64 ir_version = 1;
  repeated OperatorSetIdProto opset_import = 8;
  string producer_name = 2;
  string producer_version = 3;
  string domain = 4;
  int64 model_version = 5;
  string doc_string = 6;
  GraphProto graph = 7;
  repeated StringStringEntryProto metadata_props = 14;
}

message StringStringEntryProto {
  string key = 1;
  string value = 2;
}

message GraphProto {
  repeated NodeProto node = 1;
  string name = 2;
  repeated TensorProto initializer = 5;
  string doc_string = 10;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
  repeated ValueInfoProto value_info = 13;
}

message TensorProto {
  enum DataType {
    UNDEFINED = 0;
    FLOAT = 1;
    UINT8 = 2;
    INT8 = 3;
    UINT16 = 4;
    INT16 = 5;
    INT32 = 6;
    INT64 = 7;
    STRING = 8;
    BOOL = 9;
    FLOAT16 = 10;
    DOUBLE = 11;
    UINT32 = 12;
    UINT64 = 13;
    COMPLEX64 = 14;
    COMPLEX128 = 15;
    BFLOAT16 = 16;
  }
  repeated int64 dims = 1;
  int32 data_type = 2;
  repeated float float_data = 4 [packed = true];
  repeated int32 int32_data = 5 [packed = true];
  repeated bytes string_data = 6;
  repeated int64 int64_data = 7 [packed = true];
  string name = 8;
  string doc_string = 12;
  bytes raw_data = 9;
  repeated StringStringEntryProto external_data = 13;
  repeated double double_data = 10 [packed = true];
  repeated uint64 uint64_data = 11 [packed = true];
}

message TensorShapeProto {
  message Dimension {
    oneof value {
      int64 dim_value = 1;
      string dim_param = 2;
    };
    string denotation = 3;
  };
  repeated Dimension dim = 1;
}

message TypeProto {
  message Tensor {
    int32 elem_type = 1;
    TensorShapeProto shape = 2;
  }
  oneof value {
    Tensor tensor_type = 1;
  }
  string denotation = 6;
}

message OperatorSetIdProto {
  string domain = 1;
  int64 version = 2;
}
`;
