import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROTO_DIR } from "../../../bridge/kserve/grpc-codec.ts";
import { buildSampleModel } from "../../../policy/onnx/graphs.ts";
import { decodeModel, encodeModel } from "../../../policy/onnx/proto.ts";
import {
  exportTriton,
  formatModelConfig,
  pbtxtString,
  preferredBatchSizes,
  tritonModelConfig,
} from "../../../policy/onnx/triton.ts";
import { modelConfigProto } from "../../bridge/kserve/server.ts";
import { parseTextProto } from "../../bridge/kserve/pbtxt.ts";
import { tinyModel, writeTinyCheckpoint } from "./fixture.ts";
import { checkOnnxFile, onnxCheckerUnavailable } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "actionflow-triton-"));
let run: string;
beforeAll(async () => {
  await tf.setBackend("cpu");
  run = join(dir, "run");
  const m = tinyModel("transformer");
  await writeTinyCheckpoint(run, { ...m, config: { ...m.config, fps: 20 } });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sampleModel = (): ReturnType<typeof decodeModel> => {
  const m = tinyModel("mlp");
  return decodeModel(
    encodeModel(buildSampleModel(m.head, m.weights, m.features, m.norms, { steps: 2, solver: "euler" }).model),
  );
};

describe("tritonModelConfig", () => {
  it("declares every graph input and output without the batch dimension, prefix_len as dims [1] reshaped to []", () => {
    const cfg = tritonModelConfig(sampleModel());
    expect(cfg).toMatchObject({ name: "policy", platform: "onnxruntime_onnx", maxBatchSize: 32 });
    expect(cfg.input).toEqual([
      { name: "obs.state", dataType: "TYPE_FP32", dims: [4] },
      { name: "obs.emb", dataType: "TYPE_FP32", dims: [2, 3] },
      { name: "prefix", dataType: "TYPE_FP32", dims: [4, 3] },
      { name: "prefix_len", dataType: "TYPE_INT64", dims: [1], reshape: [] },
      { name: "noise", dataType: "TYPE_FP32", dims: [4, 5] },
    ]);
    expect(cfg.output).toEqual([{ name: "actions", dataType: "TYPE_FP32", dims: [4, 3] }]);
    expect(cfg.dynamicBatching).toEqual({ preferredBatchSize: [4, 8, 16, 32], maxQueueDelayMicroseconds: 500 });
    expect(cfg.instanceGroup).toBeUndefined();
    expect(cfg.parameters["actionflow.horizon"]).toBe("4");
    expect(cfg.parameters["actionflow.action_dim"]).toBe("3");
    expect(JSON.parse(cfg.parameters["actionflow.features"]!)).toHaveLength(2);
    // the normalisation and head config stay in model.onnx only
    expect(Object.keys(cfg.parameters)).not.toContain("actionflow.normalization");
    expect(Object.keys(cfg.parameters)).not.toContain("actionflow.config");
  });

  it("keeps the batch dimension with --max-batch 0, writes a GPU instance group, and refuses bad options by name", () => {
    const m = sampleModel();
    const flat = tritonModelConfig(m, { maxBatch: 0, gpus: [0, 1], name: "arm-7" });
    expect(flat.input[0]).toEqual({ name: "obs.state", dataType: "TYPE_FP32", dims: [-1, 4] });
    expect(flat.input[3]).toEqual({ name: "prefix_len", dataType: "TYPE_INT64", dims: [-1] });
    expect(flat.dynamicBatching).toBeUndefined();
    expect(flat.instanceGroup).toEqual({ count: 1, kind: "KIND_GPU", gpus: [0, 1] });
    expect(() => tritonModelConfig(m, { name: "a/b" })).toThrow("--name 'a/b'");
    expect(() => tritonModelConfig(m, { gpus: [1, 1] })).toThrow("--gpus 1,1: a GPU is listed twice");
    expect(() => tritonModelConfig(m, { maxBatch: -1 })).toThrow("--max-batch -1");
    expect(preferredBatchSizes(6)).toEqual([4, 6]);
    expect(preferredBatchSizes(1)).toEqual([1]);
  });

  it("escapes strings for text format, and the test server's reader reads back exactly what was written", () => {
    expect(pbtxtString('a"b\\c\nd')).toBe('"a\\"b\\\\c\\nd"');
    const cfg = tritonModelConfig(sampleModel());
    cfg.parameters["odd"] = 'quote " backslash \\ tab \t newline \n bell \x07 unicode é';
    const parsed = parseTextProto(
      formatModelConfig(cfg, "a comment\nover two lines"),
      modelConfigProto(),
      "config.pbtxt",
    );
    expect((parsed["parameters"] as Record<string, { string_value: string }>)["odd"]?.string_value).toBe(
      cfg.parameters["odd"],
    );
    expect(parsed["max_batch_size"]).toBe(32);
    expect((parsed["input"] as Array<{ dims: number[] }>)[1]?.dims).toEqual([2, 3]);
    expect(() => parseTextProto("max_batch_size: 4\nno_such_field: 1\n", modelConfigProto(), "x.pbtxt")).toThrow(
      "x.pbtxt: line 2: unknown field 'no_such_field' in inference.ModelConfig",
    );
  });
});

describe("exportTriton", () => {
  it("writes <repo>/<name>/config.pbtxt and <repo>/<name>/1/model.onnx, the model being the policy.onnx export", async () => {
    const repo = join(dir, "repo");
    const r = await exportTriton(run, { repo, steps: 2, maxBatch: 8, queueDelayUs: 100 });
    expect(r.config).toBe(join(repo, "policy", "config.pbtxt"));
    expect(r.model).toBe(join(repo, "policy", "1", "model.onnx"));
    expect([r.horizon, r.actionDim, r.maxBatchSize, r.queueDelayUs]).toEqual([4, 3, 8, 100]);
    const text = readFileSync(r.config, "utf8");
    expect(text).toContain('platform: "onnxruntime_onnx"');
    expect(text).toContain("max_queue_delay_microseconds: 100");
    expect(text).toContain("preferred_batch_size: [ 4, 8 ]");
    const meta = decodeModel(readFileSync(r.model));
    expect(meta.metadataProps?.find((e) => e.key === "actionflow.fps")?.value).toBe("20");
    expect(r.parameters).toContain("actionflow.fps");
    await expect(exportTriton(join(dir, "nothing"), { repo })).rejects.toThrow("no checkpoint found");
  });
});

const why = onnxCheckerUnavailable();
if (why) console.warn(`skipping the official ONNX checker test of the Triton model: ${why}`);

describe.skipIf(why !== undefined)("the Triton model and the official ONNX checker", () => {
  it("accepts <repo>/policy/1/model.onnx", async () => {
    const r = await exportTriton(run, { repo: join(dir, "checked"), steps: 2 });
    expect(checkOnnxFile(r.model)).toBe("");
  });
});

/** Why protoc + python3-protobuf cannot parse config.pbtxt here, or undefined. */
function textFormatUnavailable(): string | undefined {
  const protoc = spawnSync("protoc", ["--version"], { encoding: "utf8" });
  if (protoc.error || protoc.status !== 0) return "protoc not installed (run test/setup/install-protobuf.sh)";
  const py = spawnSync("/usr/bin/python3", ["-c", "import google.protobuf.text_format"], { encoding: "utf8" });
  if (py.error || py.status !== 0) return "python3-protobuf not installed (run test/setup/install-protobuf.sh)";
  return undefined;
}

const noParser = textFormatUnavailable();
if (noParser) console.warn(`skipping the config.pbtxt text-format test: ${noParser}`);

/** Parses `pbtxt` with protobuf's own text_format against the compiled model_config.proto; JSON of the message. */
function officialParse(pbtxt: string): { ok: true; json: Record<string, unknown> } | { ok: false; error: string } {
  const out = mkdtempSync(join(dir, "protoc-"));
  const c = spawnSync("protoc", [`-I${PROTO_DIR}`, `--python_out=${out}`, join(PROTO_DIR, "model_config.proto")], {
    encoding: "utf8",
  });
  if (c.status !== 0) throw new Error(`protoc failed: ${c.stderr}`);
  const file = join(out, "config.pbtxt");
  writeFileSync(file, pbtxt);
  const code = [
    "import sys, json",
    `sys.path.insert(0, ${JSON.stringify(out)})`,
    "from google.protobuf import text_format, json_format",
    "import model_config_pb2",
    "m = model_config_pb2.ModelConfig()",
    "text_format.Parse(open(sys.argv[1]).read(), m)",
    "print(json_format.MessageToJson(m, preserving_proto_field_name=True))",
  ].join("\n");
  const r = spawnSync("/usr/bin/python3", ["-c", code, file], { encoding: "utf8" });
  if (r.status !== 0) return { ok: false, error: r.stderr };
  return { ok: true, json: JSON.parse(r.stdout) as Record<string, unknown> };
}

describe.skipIf(noParser !== undefined)(
  "config.pbtxt against Triton's model_config.proto (protoc + text_format)",
  () => {
    it("parses, with every input, output, batching setting, instance group and parameter as written", async () => {
      const r = await exportTriton(run, { repo: join(dir, "parsed"), steps: 2, gpus: [0, 2] });
      const res = officialParse(readFileSync(r.config, "utf8"));
      if (!res.ok) throw new Error(res.error);
      const j = res.json;
      expect(j["name"]).toBe("policy");
      expect(j["platform"]).toBe("onnxruntime_onnx");
      expect(j["max_batch_size"]).toBe(32);
      // proto3 JSON writes int64 as strings
      expect(j["input"]).toEqual([
        { name: "obs.state", data_type: "TYPE_FP32", dims: ["4"] },
        { name: "obs.emb", data_type: "TYPE_FP32", dims: ["2", "3"] },
        { name: "prefix", data_type: "TYPE_FP32", dims: ["4", "3"] },
        { name: "prefix_len", data_type: "TYPE_INT64", dims: ["1"], reshape: {} },
        { name: "noise", data_type: "TYPE_FP32", dims: ["4", "5"] },
      ]);
      expect(j["output"]).toEqual([{ name: "actions", data_type: "TYPE_FP32", dims: ["4", "3"] }]);
      expect(j["dynamic_batching"]).toEqual({
        preferred_batch_size: [4, 8, 16, 32],
        max_queue_delay_microseconds: "500",
      });
      expect(j["instance_group"]).toEqual([{ count: 1, kind: "KIND_GPU", gpus: [0, 2] }]);
      const params = j["parameters"] as Record<string, { string_value: string }>;
      expect(params["actionflow.horizon"]).toEqual({ string_value: "4" });
      expect(params["actionflow.fps"]).toEqual({ string_value: "20" });
      expect(JSON.parse(params["actionflow.features"]!.string_value)).toEqual([
        { name: "state", key: "observation.state", shape: [6], rawShape: [4] },
        { name: "emb", key: "observation.embedding", shape: [2, 3], rawShape: [2, 3] },
      ]);
    });

    it("round-trips awkward strings, and refuses a config that breaks the schema", () => {
      const cfg = tritonModelConfig(sampleModel());
      cfg.parameters["odd"] = 'quote " backslash \\ tab \t newline \n bell \x07 unicode é';
      const ok = officialParse(formatModelConfig(cfg));
      if (!ok.ok) throw new Error(ok.error);
      expect((ok.json["parameters"] as Record<string, { string_value: string }>)["odd"]?.string_value).toBe(
        cfg.parameters["odd"],
      );
      const bad = officialParse(formatModelConfig(cfg).replace("data_type: TYPE_FP32", "data_type: TYPE_FLOAT"));
      expect(bad.ok).toBe(false);
      expect(bad.ok ? "" : bad.error).toMatch(/TYPE_FLOAT/);
    });
  },
);
