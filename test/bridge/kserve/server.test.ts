/**
 * The test KServe server speaks the protocol as Triton does, checked with raw requests: REST JSON,
 * the binary tensor extension and gRPC (raw and typed contents) give the same tensors as running the
 * repository's model.onnx directly; errors come back as Triton's statuses with `{"error": ...}` and
 * the server keeps serving; dynamic batching joins concurrent requests; readiness follows loading.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inferenceService, type GrpcInferResponse } from "../../../bridge/kserve/grpc-codec.ts";
import { HEADER_LENGTH } from "../../../bridge/kserve/http-transport.ts";
import {
  decodeRestInferResponse,
  encodeRestInferRequest,
  type InferRequest,
  type Tensor,
} from "../../../bridge/kserve/protocol.ts";
import { exportTriton } from "../../../policy/onnx/triton.ts";
import { randomObs, tinyModel, writeTinyCheckpoint } from "../../policy/onnx/fixture.ts";
import { maxAbsDiff, runModel } from "../../policy/onnx/helpers.ts";
import { Rng } from "../../../policy/random.ts";
import { KServeTestServer } from "./server.ts";
import { waitFor } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "actionflow-kserve-server-"));
let repo: string;
let model: string;
let server: KServeTestServer;
const closers: Array<() => unknown> = [];

beforeAll(async () => {
  await tf.setBackend("cpu");
  const run = join(dir, "run");
  await writeTinyCheckpoint(run, tinyModel("mlp"));
  const r = await exportTriton(run, { repo: join(dir, "repo"), steps: 2, maxBatch: 8, queueDelayUs: 20_000 });
  repo = r.repo;
  model = r.model;
  server = await KServeTestServer.start({ repo });
  expect(await waitFor(() => server.ready(), 30_000)).toBe(true);
}, 120_000);
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** One request's tensors (batch `b`), from seeded values. */
function request(seed: number, b = 1): InferRequest {
  const o = randomObs(b, seed);
  const rng = new Rng(seed + 1);
  const f32 = (name: string, shape: number[], data: Float32Array): Tensor => ({ name, datatype: "FP32", shape, data });
  return {
    id: `r${seed}`,
    inputs: [
      f32("obs.state", [b, 4], o["state"]!),
      f32("obs.emb", [b, 2, 3], o["emb"]!),
      f32("prefix", [b, 4, 3], new Float32Array(b * 12)),
      { name: "prefix_len", datatype: "INT64", shape: [b, 1], data: new BigInt64Array(b) },
      f32("noise", [b, 4, 5], rng.normalArray(b * 20)),
    ],
    outputs: ["actions"],
  };
}

/** The same inputs run on model.onnx directly (prefix_len as the graph's [batch]). */
async function expected(req: InferRequest): Promise<Float32Array> {
  const feeds: Record<string, [Float32Array | BigInt64Array, number[]]> = {};
  for (const t of req.inputs)
    feeds[t.name] = [t.data as Float32Array, t.name === "prefix_len" ? [t.shape[0]!] : t.shape];
  return (await runModel(readFileSync(model), feeds))["actions"]!.data;
}

async function post(
  path: string,
  body: Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Buffer; headers: Headers }> {
  const r = await fetch(`${server.httpUrl}${path}`, { method: "POST", body, headers });
  return { status: r.status, body: Buffer.from(await r.arrayBuffer()), headers: r.headers };
}

function grpcClient(url = server.grpcUrl): grpc.Client & Record<string, (...a: unknown[]) => unknown> {
  const Service = inferenceService();
  const c = new Service(url.replace("grpc://", ""), grpc.credentials.createInsecure()) as grpc.Client &
    Record<string, (...a: unknown[]) => unknown>;
  closers.push(() => c.close());
  return c;
}

function unary<T>(c: Record<string, (...a: unknown[]) => unknown>, method: string, req: unknown): Promise<T> {
  return new Promise((resolve, reject) =>
    c[method]!(req, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res))),
  );
}

describe("KServe test server: REST", () => {
  it("answers health, metadata (batch dimension -1) and Triton's config with the actionflow parameters", async () => {
    expect((await fetch(`${server.httpUrl}/v2/health/live`)).status).toBe(200);
    expect((await fetch(`${server.httpUrl}/v2/health/ready`)).status).toBe(200);
    expect((await fetch(`${server.httpUrl}/v2/models/policy/ready`)).status).toBe(200);
    expect((await fetch(`${server.httpUrl}/v2/models/policy/versions/1/ready`)).status).toBe(200);
    expect((await fetch(`${server.httpUrl}/v2/models/policy/versions/2/ready`)).status).toBe(400);
    const meta = (await (await fetch(`${server.httpUrl}/v2/models/policy`)).json()) as Record<string, unknown>;
    expect(meta).toMatchObject({ name: "policy", versions: ["1"], platform: "onnxruntime_onnx" });
    expect(meta["inputs"]).toContainEqual({ name: "prefix_len", datatype: "INT64", shape: [-1, 1] });
    expect(meta["outputs"]).toEqual([{ name: "actions", datatype: "FP32", shape: [-1, 4, 3] }]);
    const cfg = (await (await fetch(`${server.httpUrl}/v2/models/policy/config`)).json()) as Record<string, unknown>;
    expect(cfg).toMatchObject({ name: "policy", max_batch_size: 8, backend: "onnxruntime" });
    expect((cfg["parameters"] as Record<string, unknown>)["actionflow.horizon"]).toEqual({ string_value: "4" });
    expect((cfg["dynamic_batching"] as Record<string, unknown>)["max_queue_delay_microseconds"]).toBe(20_000);
  });

  it("infers from JSON and from binary tensors, answering in the form asked, the model's own numbers", async () => {
    const req = request(1);
    const want = await expected(req);
    // all JSON: no header length, `data` arrays
    const json = await post("/v2/models/policy/infer", encodeRestInferRequest(req, { binary: false }).body, {
      "content-type": "application/json",
    });
    expect(json.status).toBe(200);
    expect(json.headers.get(HEADER_LENGTH)).toBeNull();
    const j = JSON.parse(json.body.toString()) as { id: string; outputs: Array<{ data: number[]; shape: number[] }> };
    expect(j.id).toBe("r1");
    expect(j.outputs[0]!.shape).toEqual([1, 4, 3]);
    expect(maxAbsDiff(Float32Array.from(j.outputs[0]!.data), want)).toBeLessThan(1e-6);
    // binary both ways
    const enc = encodeRestInferRequest(req);
    const bin = await post("/v2/models/policy/infer", enc.body, { [HEADER_LENGTH]: String(enc.headerLength) });
    expect(bin.status).toBe(200);
    const hl = Number(bin.headers.get(HEADER_LENGTH));
    expect(bin.body.byteLength).toBe(hl + 4 * 12);
    const res = decodeRestInferResponse(bin.body, hl);
    expect(maxAbsDiff(res.outputs[0]!.data as Float32Array, want)).toBe(0);
    // JSON inputs, one binary output (the parameter per output)
    const mixed = JSON.parse(encodeRestInferRequest(req, { binary: false }).body.toString()) as Record<string, unknown>;
    mixed["outputs"] = [{ name: "actions", parameters: { binary_data: true } }];
    const m = await post("/v2/models/policy/infer", Buffer.from(JSON.stringify(mixed)));
    expect(m.headers.get("content-type")).toBe("application/octet-stream");
    const mr = decodeRestInferResponse(m.body, Number(m.headers.get(HEADER_LENGTH)));
    expect(maxAbsDiff(mr.outputs[0]!.data as Float32Array, want)).toBe(0);
  });

  it("answers bad requests as Triton does, naming the input, and keeps serving", async () => {
    const bad = async (body: Buffer, headers: Record<string, string> = {}, path = "/v2/models/policy/infer") => {
      const r = await post(path, body, headers);
      return { status: r.status, error: (JSON.parse(r.body.toString()) as { error: string }).error };
    };
    const enc = (req: InferRequest): Buffer => encodeRestInferRequest(req, { binary: false }).body;
    expect(await bad(enc(request(2)), {}, "/v2/models/nope/infer")).toEqual({
      status: 404,
      error: "Request for unknown model: 'nope' is not found",
    });
    expect(await bad(Buffer.from("{not json"))).toMatchObject({
      status: 400,
      error: expect.stringContaining("not valid JSON"),
    });
    const wrongType = request(2);
    wrongType.inputs[0] = { ...wrongType.inputs[0]!, datatype: "FP64", data: new Float64Array(4) };
    expect(await bad(enc(wrongType))).toEqual({
      status: 400,
      error: "[request id: r2] inference input 'obs.state' data-type is 'FP64', but model 'policy' expects 'FP32'",
    });
    const missing = request(2);
    missing.inputs = missing.inputs.filter((t) => t.name !== "noise");
    expect(await bad(enc(missing))).toMatchObject({
      status: 400,
      error: expect.stringContaining("missing required input(s) ['noise']"),
    });
    const shape = request(2);
    shape.inputs[0] = { ...shape.inputs[0]!, shape: [1, 5], data: new Float32Array(5) };
    expect(await bad(enc(shape))).toMatchObject({
      status: 400,
      error: expect.stringContaining(
        "unexpected shape for input 'obs.state' for model 'policy'. Expected [-1,4], got [1,5]",
      ),
    });
    expect(await bad(enc(request(2, 9)))).toMatchObject({
      status: 400,
      error: expect.stringContaining("batch-size must be <= 8"),
    });
    const e = encodeRestInferRequest(request(2));
    expect(
      await bad(e.body.subarray(0, e.body.byteLength - 4), { [HEADER_LENGTH]: String(e.headerLength) }),
    ).toMatchObject({
      status: 400,
      error: expect.stringContaining(
        "'noise': binary_data_size 80 at offset 96 runs past the 172 bytes after the JSON header",
      ),
    });
    const get = await fetch(`${server.httpUrl}/v2/models/policy/infer`);
    expect(get.status).toBe(405);
    // still serving
    const ok = await post("/v2/models/policy/infer", enc(request(3)));
    expect(ok.status).toBe(200);
  });

  it("joins concurrent requests into dynamic batches, each answered with its own rows", async () => {
    const before = server.batchSizes()["policy"]!.length;
    const reqs = Array.from({ length: 6 }, (_, i) => request(10 + i));
    const answers = await Promise.all(
      reqs.map(async (req) => {
        const e = encodeRestInferRequest(req);
        const r = await post("/v2/models/policy/infer", e.body, { [HEADER_LENGTH]: String(e.headerLength) });
        return decodeRestInferResponse(r.body, Number(r.headers.get(HEADER_LENGTH)));
      }),
    );
    const sizes = server.batchSizes()["policy"]!.slice(before);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(6);
    expect(Math.max(...sizes)).toBeGreaterThan(1);
    for (const [i, a] of answers.entries()) {
      expect(a.id).toBe(`r${10 + i}`);
      expect(maxAbsDiff(a.outputs[0]!.data as Float32Array, await expected(reqs[i]!))).toBeLessThan(1e-5);
    }
  });
});

describe("KServe test server: gRPC", () => {
  it("answers raw and typed contents with the model's numbers, and errors with Triton's status codes", async () => {
    const c = grpcClient();
    expect(await unary<{ live: boolean }>(c, "ServerLive", {})).toEqual({ live: true });
    expect(await unary<{ ready: boolean }>(c, "ModelReady", { name: "policy", version: "" })).toEqual({ ready: true });
    expect(await unary<{ ready: boolean }>(c, "ModelReady", { name: "nope", version: "" })).toEqual({ ready: false });
    const req = request(4);
    const want = await expected(req);
    const raw = await unary<GrpcInferResponse>(c, "ModelInfer", {
      model_name: "policy",
      id: "g1",
      inputs: req.inputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape })),
      raw_input_contents: req.inputs.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)),
    });
    expect(raw.id).toBe("g1");
    expect(raw.outputs[0]).toMatchObject({ name: "actions", datatype: "FP32", shape: [1, 4, 3] });
    const rawOut = raw.raw_output_contents[0]!;
    const got = new Float32Array(rawOut.buffer.slice(rawOut.byteOffset, rawOut.byteOffset + rawOut.byteLength));
    expect(maxAbsDiff(got, want)).toBe(0);
    const typed = await unary<GrpcInferResponse>(c, "ModelInfer", {
      model_name: "policy",
      inputs: req.inputs.map((t) => ({
        name: t.name,
        datatype: t.datatype,
        shape: t.shape,
        contents:
          t.datatype === "INT64" ? { int64_contents: [0] } : { fp32_contents: Array.from(t.data as Float32Array) },
      })),
    });
    const t = typed.raw_output_contents[0]!;
    expect(maxAbsDiff(new Float32Array(t.buffer.slice(t.byteOffset, t.byteOffset + t.byteLength)), want)).toBe(0);
    await expect(unary(c, "ModelInfer", { model_name: "nope", inputs: [] })).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
      details: "Request for unknown model: 'nope' is not found",
    });
    await expect(
      unary(c, "ModelInfer", {
        model_name: "policy",
        inputs: req.inputs.map((x) => ({ name: x.name, datatype: x.datatype, shape: x.shape })),
        raw_input_contents: req.inputs.slice(1).map((x) => Buffer.from(x.data.buffer)),
      }),
    ).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: "infer request: inputs: 4 raw contents for 5 tensors",
    });
    const cfg = await unary<{ config: Record<string, unknown> }>(c, "ModelConfig", { name: "policy" });
    expect(cfg.config).toMatchObject({ name: "policy", max_batch_size: 8 });
    expect((cfg.config["parameters"] as Record<string, unknown>)["actionflow.action_dim"]).toEqual({
      string_value: "3",
    });
  });
});

describe("KServe test server: loading", () => {
  it("is live at once, ready only once its models are, and refuses a model whose config does not match it", async () => {
    const slow = await KServeTestServer.start({ repo, loadDelayMs: 400 });
    closers.push(() => slow.close());
    expect((await fetch(`${slow.httpUrl}/v2/health/live`)).status).toBe(200);
    expect((await fetch(`${slow.httpUrl}/v2/health/ready`)).status).toBe(400);
    expect((await fetch(`${slow.httpUrl}/v2/models/policy/ready`)).status).toBe(400);
    const early = await fetch(`${slow.httpUrl}/v2/models/policy/infer`, {
      method: "POST",
      body: encodeRestInferRequest(request(5)).body,
    });
    expect(early.status).toBe(503);
    expect(await waitFor(async () => (await fetch(`${slow.httpUrl}/v2/health/ready`)).status === 200, 30_000)).toBe(
      true,
    );

    const broken = join(dir, "broken");
    cpSync(repo, broken, { recursive: true });
    const cfgPath = join(broken, "policy", "config.pbtxt");
    writeFileSync(cfgPath, readFileSync(cfgPath, "utf8").replace("dims: [ 4 ]", "dims: [ 5 ]"));
    const b = await KServeTestServer.start({ repo: broken });
    closers.push(() => b.close());
    expect(await waitFor(() => b.states()["policy"]!.state !== "LOADING", 30_000)).toBe(true);
    expect(b.states()["policy"]).toEqual({
      state: "UNAVAILABLE",
      reason:
        "unable to load model 'policy': input 'obs.state' dims [-1,5] in the config do not match [-1,4] in the model",
    });
    expect((await fetch(`${b.httpUrl}/v2/health/ready`)).status).toBe(400);
    writeFileSync(
      cfgPath,
      readFileSync(cfgPath, "utf8").replace("max_batch_size: 8", "max_batch_size: 8\nmax_batch: 1"),
    );
    await expect(KServeTestServer.start({ repo: broken })).rejects.toThrow(
      "config.pbtxt: line 6: unknown field 'max_batch' in inference.ModelConfig",
    );
  });
});
