import { describe, expect, it } from "vitest";
import { fromGrpcInferRequest, toGrpcInferRequest } from "../../../bridge/kserve/grpc-codec.ts";
import {
  decodeRestInferRequest,
  decodeRestInferResponse,
  encodeRestInferRequest,
  encodeRestInferResponse,
  parseModelConfig,
  parseModelMetadata,
  tensorFromJson,
  type InferRequest,
} from "../../../bridge/kserve/protocol.ts";

const req: InferRequest = {
  id: "7",
  inputs: [
    { name: "x", datatype: "FP32", shape: [2, 2], data: new Float32Array([1.5, -2, 3.25, 0]) },
    { name: "n", datatype: "INT64", shape: [2, 1], data: BigInt64Array.from([3n, -9007199254740991n]) },
    { name: "b", datatype: "BOOL", shape: [3], data: new Uint8Array([1, 0, 1]) },
    { name: "u", datatype: "UINT8", shape: [1], data: new Uint8Array([255]) },
    { name: "d", datatype: "FP64", shape: [], data: new Float64Array([Math.PI]) },
  ],
  outputs: ["y"],
};

const values = (r: { inputs: Array<{ name: string; datatype: string; shape: number[]; data: ArrayLike<unknown> }> }) =>
  r.inputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape, data: Array.from(t.data) }));

describe("KServe v2 REST messages", () => {
  it("carry every datatype the same in JSON and in the binary extension (little-endian, inputs in order)", () => {
    const bin = encodeRestInferRequest(req);
    const header = JSON.parse(bin.body.subarray(0, bin.headerLength).toString()) as {
      inputs: Array<{ parameters: { binary_data_size: number }; data?: unknown }>;
      outputs: Array<{ parameters: { binary_data: boolean } }>;
    };
    expect(header.inputs.map((i) => i.parameters.binary_data_size)).toEqual([16, 16, 3, 1, 8]);
    expect(header.inputs.every((i) => i.data === undefined)).toBe(true);
    expect(header.outputs[0]!.parameters.binary_data).toBe(true);
    expect(bin.body.byteLength).toBe(bin.headerLength! + 44);
    expect(bin.body.readFloatLE(bin.headerLength!)).toBe(1.5);
    const fromBin = decodeRestInferRequest(bin.body, bin.headerLength);
    const json = encodeRestInferRequest(req, { binary: false });
    expect(json.headerLength).toBeUndefined();
    expect((JSON.parse(json.body.toString()) as { inputs: Array<{ data: unknown }> }).inputs[2]!.data).toEqual([
      true,
      false,
      true,
    ]);
    const fromJson = decodeRestInferRequest(json.body, undefined);
    expect(values(fromBin)).toEqual(values(req));
    expect(values(fromJson)).toEqual(values(req));
    expect(fromBin.outputs).toEqual([{ name: "y", binary: true }]);
    expect(fromJson.outputs).toEqual([{ name: "y", binary: false }]);
    expect(fromBin.id).toBe("7");
  });

  it("refuses what does not add up, naming the tensor", () => {
    const bin = encodeRestInferRequest(req);
    expect(() => decodeRestInferRequest(bin.body, bin.body.byteLength + 1)).toThrow(
      "Inference-Header-Content-Length " + (bin.body.byteLength + 1) + " does not fit a body",
    );
    expect(() => decodeRestInferRequest(Buffer.concat([bin.body, Buffer.alloc(2)]), bin.headerLength)).toThrow(
      "2 bytes after the JSON header belong to no tensor",
    );
    expect(() => tensorFromJson("x", "FP32", [2, 2], [1, 2, 3], "input")).toThrow(
      "input 'x': 3 elements of data for shape [2, 2] (expected 4)",
    );
    expect(() => tensorFromJson("k", "INT8", [1], [300], "input")).toThrow("element 0 (300) is not a INT8 value");
    expect(() => tensorFromJson("b", "BOOL", [1], [1], "input")).toThrow("element 0 (1) is not a BOOL value");
    expect(
      tensorFromJson(
        "x",
        "FP32",
        [2, 2],
        [
          [1, 2],
          [3, 4],
        ],
        "input",
      ).data,
    ).toEqual(new Float32Array([1, 2, 3, 4]));
    const bad = Buffer.from(JSON.stringify({ inputs: [{ name: "s", datatype: "BYTES", shape: [1], data: ["a"] }] }));
    expect(() => decodeRestInferRequest(bad, undefined)).toThrow("'s': datatype \"BYTES\" is not supported");
  });

  it("round-trip a response with binary and JSON outputs side by side", () => {
    const res = {
      modelName: "policy",
      modelVersion: "1",
      id: "7",
      outputs: [
        { name: "y", datatype: "FP32" as const, shape: [1, 2], data: new Float32Array([0.5, 0.25]) },
        { name: "k", datatype: "INT32" as const, shape: [1], data: new Int32Array([-4]) },
      ],
    };
    const enc = encodeRestInferResponse(res, (n) => n === "y");
    const back = decodeRestInferResponse(enc.body, enc.headerLength);
    expect(back).toMatchObject({ modelName: "policy", modelVersion: "1", id: "7" });
    expect(back.outputs.map((t) => [t.name, Array.from(t.data as ArrayLike<unknown>)])).toEqual([
      ["y", [0.5, 0.25]],
      ["k", [-4]],
    ]);
  });
});

describe("KServe v2 gRPC messages", () => {
  it("carry tensors as raw contents in input order", () => {
    const m = toGrpcInferRequest("policy", undefined, req);
    expect(m.raw_input_contents.map((b) => b.byteLength)).toEqual([16, 16, 3, 1, 8]);
    expect(m.model_version).toBe("");
    expect(values(fromGrpcInferRequest(m))).toEqual(values(req));
  });
});

describe("metadata and model-configuration parsers", () => {
  it("read Triton's REST JSON and protobuf JSON alike (int64 as strings, camelCase names)", () => {
    const cfg = parseModelConfig(
      {
        name: "policy",
        maxBatchSize: "32",
        input: [{ name: "prefix_len", dataType: "TYPE_INT64", dims: ["1"], reshape: { shape: [] } }],
        output: [{ name: "actions", data_type: "TYPE_FP32", dims: [16, 6] }],
        parameters: { "actionflow.horizon": { stringValue: "16" } },
      },
      "config",
    );
    expect(cfg).toEqual({
      name: "policy",
      platform: "",
      maxBatchSize: 32,
      inputs: [{ name: "prefix_len", dataType: "TYPE_INT64", dims: [1], reshape: [], optional: false }],
      outputs: [{ name: "actions", dataType: "TYPE_FP32", dims: [16, 6], optional: false }],
      parameters: { "actionflow.horizon": "16" },
    });
    expect(() => parseModelConfig({ name: "p", input: [{ name: "x", data_type: "FP32" }] }, "config")).toThrow(
      "config: input[0]: 'data_type' must be a Triton TYPE_* name, got \"FP32\"",
    );
    expect(() =>
      parseModelMetadata({ name: "p", inputs: [{ name: "x", datatype: "FP32", shape: [-1, 1.5] }] }, "meta"),
    ).toThrow("meta: inputs[0].shape[1]: expected an integer, got 1.5");
  });
});
