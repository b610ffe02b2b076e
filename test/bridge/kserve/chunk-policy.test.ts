import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KServeChunkPolicy, type KServeChunkPolicyOptions } from "../../../bridge/kserve/chunk-policy.ts";
import { HttpTransport } from "../../../bridge/kserve/http-transport.ts";
import type { InferResponse, ModelMetadata } from "../../../bridge/kserve/protocol.ts";
import { KServeError, type KServeTransport } from "../../../bridge/kserve/transport.ts";
import { exportOnnx } from "../../../policy/onnx/export.ts";
import { exportTriton } from "../../../policy/onnx/triton.ts";
import { OnnxPolicy } from "../../../policy/runtime/onnx-policy.ts";
import { randomObs, tinyModel, writeTinyCheckpoint } from "../../policy/onnx/fixture.ts";
import { maxAbsDiff } from "../../policy/onnx/helpers.ts";
import { KServeTestServer } from "./server.ts";
import { waitFor } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "actionflow-kserve-policy-"));
let repo: string;
let server: KServeTestServer;
let direct: OnnxPolicy;
const closers: Array<() => unknown> = [];

beforeAll(async () => {
  await tf.setBackend("cpu");
  const run = join(dir, "run");
  const m = tinyModel("transformer");
  await writeTinyCheckpoint(run, { ...m, config: { ...m.config, fps: 10 } });
  await exportOnnx(run, { steps: 4 });
  repo = (await exportTriton(run, { repo: join(dir, "repo"), steps: 4 })).repo;
  direct = await OnnxPolicy.load(run, { threads: 1 });
  server = await KServeTestServer.start({ repo });
  expect(await waitFor(() => server.ready(), 30_000)).toBe(true);
}, 120_000);
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  await server?.close();
  await direct?.release();
  rmSync(dir, { recursive: true, force: true });
});

const obsOf = (seed: number): Record<string, Float32Array> => {
  const r = randomObs(1, seed);
  return { "observation.state": r["state"]!, "observation.embedding": r["emb"]! };
};

async function connect(o: Partial<KServeChunkPolicyOptions> = {}): Promise<KServeChunkPolicy> {
  const p = await KServeChunkPolicy.connect({ url: server.httpUrl, model: "policy", ...o });
  closers.push(() => p.close());
  return p;
}

/** A transport that passes calls to a real one, with some answers replaced. */
function patched(
  over: Partial<Pick<KServeTransport, "modelMetadata" | "modelConfig" | "infer">>,
): KServeTransport & { inferCalls: number } {
  const real = new HttpTransport(server.httpUrl);
  const t: KServeTransport & { inferCalls: number } = {
    protocol: real.protocol,
    url: real.url,
    inferCalls: 0,
    serverLive: real.serverLive.bind(real),
    serverReady: real.serverReady.bind(real),
    modelReady: real.modelReady.bind(real),
    modelMetadata: over.modelMetadata ?? real.modelMetadata.bind(real),
    modelConfig: over.modelConfig ?? real.modelConfig.bind(real),
    infer: (...a: Parameters<KServeTransport["infer"]>) => {
      t.inferCalls++;
      return (over.infer ?? real.infer.bind(real))(...a);
    },
    close: () => real.close(),
  };
  return t;
}

describe("KServeChunkPolicy", () => {
  for (const [label, opts] of [
    ["HTTP, binary tensors", {}],
    ["HTTP, JSON tensors", { binary: false }],
    ["gRPC", { protocol: "grpc" }],
  ] as const)
    it(`over ${label}: the chunk equals the local ONNX policy's for the same seed, prefix and episode stream`, async () => {
      const p = await connect({ ...opts, ...("protocol" in opts ? { url: server.grpcUrl } : {}) });
      expect([p.horizon, p.actionDim, p.modelActionDim, p.fps, p.rtcMaxDelay]).toEqual([4, 3, 5, 10, 0]);
      expect(p.features.map((f) => f.key)).toEqual(["observation.state", "observation.embedding"]);
      const prefix = new Float32Array([0.5, -0.5, 0.25, 0.1, 0.2, 0.3]);
      const got = await p.sampleChunk(obsOf(1), { seed: 9, prefix });
      const want = await direct.sampleChunk(obsOf(1), { seed: 9, prefix });
      expect(maxAbsDiff(got, want)).toBeLessThan(1e-5);
      expect([...got.slice(0, 6)].map((x) => +x.toFixed(5))).toEqual([0.5, -0.5, 0.25, 0.1, 0.2, 0.3]);
      // reset(seed) restarts the same per-call noise stream as the local policy's
      p.reset(7);
      direct.reset(7);
      for (let i = 0; i < 2; i++)
        expect(maxAbsDiff(await p.sampleChunk(obsOf(2)), await direct.sampleChunk(obsOf(2)))).toBeLessThan(1e-5);
      const other = await p.sampleChunk(obsOf(2), { seed: 10 });
      expect(maxAbsDiff(other, got)).toBeGreaterThan(1e-3);
      expect(p.stats()).toMatchObject({ errors: 0, retries: 0, chunks: 4 });
    });

  it("refuses a bad observation before sending anything, naming the feature", async () => {
    const p = await connect();
    const before = server.counts.http;
    const nan = obsOf(3);
    nan["observation.state"]![2] = Number.NaN;
    await expect(p.sampleChunk(nan)).rejects.toThrow(
      "observation feature 'observation.state' has a non-finite value NaN at index 2",
    );
    await expect(p.sampleChunk({ "observation.state": new Float32Array(4) })).rejects.toThrow(
      "observation feature 'observation.embedding' (model name 'emb') is missing",
    );
    await expect(p.sampleChunk({ ...obsOf(3), "observation.state": new Float32Array(5) })).rejects.toThrow(
      "has 5 values, expected 4",
    );
    expect(server.counts.http).toBe(before);
  });

  it("checks at start that the served signature is what it sends, naming the input, and the loop's observation keys", async () => {
    const real = new HttpTransport(server.httpUrl);
    closers.push(() => real.close());
    const meta = await real.modelMetadata("policy", undefined, { timeoutMs: 5000 });
    const withMeta = (f: (m: ModelMetadata) => ModelMetadata): KServeTransport =>
      patched({ modelMetadata: () => Promise.resolve(f(structuredClone(meta))) });
    const prefix = (m: ModelMetadata): ModelMetadata => {
      m.inputs.find((t) => t.name === "prefix")!.shape = [-1, 4, 2];
      return m;
    };
    await expect(connect({ transport: withMeta(prefix) })).rejects.toThrow(
      `model 'policy' at ${server.httpUrl}: input 'prefix' is FP32 [-1, 4, 2], but actionflow sends FP32 [1, 4, 3]`,
    );
    const extra = (m: ModelMetadata): ModelMetadata => ({
      ...m,
      inputs: [...m.inputs, { name: "image", datatype: "UINT8", shape: [-1, 224, 224, 3] }],
    });
    await expect(connect({ transport: withMeta(extra) })).rejects.toThrow(
      "the model needs inputs actionflow does not send: 'image' UINT8 [-1, 224, 224, 3]",
    );
    const noNoise = (m: ModelMetadata): ModelMetadata => ({ ...m, inputs: m.inputs.filter((t) => t.name !== "noise") });
    await expect(connect({ transport: withMeta(noNoise) })).rejects.toThrow("the model has no input 'noise'");
    const bare = patched({ modelConfig: () => Promise.resolve(undefined) });
    await expect(connect({ transport: bare })).rejects.toThrow("the model has no actionflow parameters");
    await expect(connect({ observationKeys: ["observation.state"] })).rejects.toThrow(
      "needs observation feature 'observation.embedding' (shape [2, 3]), which is not among what the loop sends (observation.state)",
    );
  });

  it("over REST reads the parameters from the metadata when the server has no model-configuration endpoint", async () => {
    const plain = await KServeTestServer.start({ repo, configEndpoint: false });
    closers.push(() => plain.close());
    expect(await waitFor(() => plain.ready(), 30_000)).toBe(true);
    const res = await fetch(`${plain.httpUrl}/v2/models/policy/config`);
    expect(res.status).toBe(404);
    const p = await connect({ url: plain.httpUrl });
    expect(p.config).toBeUndefined();
    expect(
      maxAbsDiff(await p.sampleChunk(obsOf(4), { seed: 1 }), await direct.sampleChunk(obsOf(4), { seed: 1 })),
    ).toBeLessThan(1e-5);
    // gRPC's ModelMetadataResponse (Triton's) has no parameters: without ModelConfig the model cannot be described
    await expect(connect({ url: plain.grpcUrl })).rejects.toThrow("the model has no actionflow parameters");
  });

  it("never delivers a late chunk: at the deadline the call fails and the server's late reply is dropped", async () => {
    const slow = await KServeTestServer.start({ repo, inferDelayMs: 400 });
    closers.push(() => slow.close());
    expect(await waitFor(() => slow.ready(), 30_000)).toBe(true);
    for (const url of [slow.httpUrl, slow.grpcUrl]) {
      const p = await connect({ url, timeoutMs: 150 });
      const t0 = performance.now();
      const err = await p.sampleChunk(obsOf(5)).then(
        () => undefined,
        (e: unknown) => e as KServeError,
      );
      expect(err).toBeInstanceOf(KServeError);
      expect(err?.kind).toBe("timeout");
      expect(err?.message).toMatch(/no reply within|no chunk within/);
      expect(performance.now() - t0).toBeLessThan(400);
      expect(p.stats()).toMatchObject({ timeouts: 1, chunks: 0, retries: 0 });
    }
    // the server did answer both, later: nobody took those replies
    expect(await waitFor(() => slow.counts.http === 1 && slow.counts.grpc === 1, 5000)).toBe(true);
  });

  it("retries a failed send at once only while the observation is fresh, then holds calls back without sending", async () => {
    let failures = 2;
    const flaky = patched({
      infer: (model, version, req, o) => {
        if (failures-- > 0) return Promise.reject(new KServeError("connect ECONNREFUSED", "unreachable"));
        return new HttpTransport(server.httpUrl).infer(model, version, req, o);
      },
    });
    const p = await connect({ transport: flaky, retries: 1 });
    // attempt + one immediate retry, both refused: the call fails
    await expect(p.sampleChunk(obsOf(6), { seed: 2 })).rejects.toMatchObject({ kind: "unreachable" });
    expect(flaky.inferCalls).toBe(2);
    // within the back-off the next call waits for its end and fails without sending its observation
    const t0 = performance.now();
    await expect(p.sampleChunk(obsOf(6), { seed: 2 })).rejects.toThrow("was held back");
    expect(performance.now() - t0).toBeGreaterThanOrEqual(30);
    expect(flaky.inferCalls).toBe(2);
    // after it, a call is sent at once and succeeds
    const chunk = await p.sampleChunk(obsOf(6), { seed: 2 });
    expect(maxAbsDiff(chunk, await direct.sampleChunk(obsOf(6), { seed: 2 }))).toBeLessThan(1e-5);
    expect(flaky.inferCalls).toBe(3);
    expect(p.stats()).toMatchObject({ calls: 3, chunks: 1, retries: 1, heldBack: 1, errors: 2 });
  });

  it("refuses a reply that is for another request, of the wrong shape, or holds NaN", async () => {
    const real = new HttpTransport(server.httpUrl);
    closers.push(() => real.close());
    const tamper = (f: (r: InferResponse) => InferResponse): KServeTransport =>
      patched({ infer: async (...a) => f(await real.infer(...a)) });
    const other = await connect({ transport: tamper((r) => ({ ...r, id: "999" })) });
    await expect(other.sampleChunk(obsOf(7))).rejects.toThrow("the reply is for request '999', not '1'; discarded");
    const nan = await connect({
      transport: tamper((r) => {
        (r.outputs[0]!.data as Float32Array)[4] = Number.POSITIVE_INFINITY;
        return r;
      }),
    });
    await expect(nan.sampleChunk(obsOf(7))).rejects.toThrow("non-finite action Infinity at step 1, dim 1");
    const shape = await connect({
      transport: tamper((r) => ({ ...r, outputs: [{ ...r.outputs[0]!, shape: [1, 3, 4] }] })),
    });
    await expect(shape.sampleChunk(obsOf(7))).rejects.toThrow("'actions' is FP32 [1, 3, 4], expected FP32 [1, 4, 3]");
  });
});
