import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LoopExecutor, RtcDelayError } from "../../../bridge/merge.ts";
import { OpenpiPolicyClient } from "../../../bridge/server/openpi-client.ts";
import { OpenpiPolicyServer } from "../../../bridge/server/openpi-server.ts";
import { OpenpiChunkPolicy, servedChunkPolicy, ZmqChunkPolicy } from "../../../bridge/server/remote-policy.ts";
import { ZmqPolicyServer } from "../../../bridge/server/zmq-server.ts";
import { exportOnnx } from "../../../policy/onnx/export.ts";
import { ThreadedPolicy } from "../../../policy/runtime/threaded.ts";
import { randomObs, tinyModel, writeTinyCheckpoint } from "../../policy/onnx/fixture.ts";
import { servedFixture, type ServedFixture } from "./fixture.ts";

let fx: ServedFixture;
const closers: Array<() => Promise<void> | void> = [];
beforeAll(async () => {
  fx = await servedFixture();
}, 120_000);
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  await fx.dispose();
});

const obsOf = (seed: number): Record<string, Float32Array> => {
  const r = randomObs(1, seed);
  return { "observation.state": r["state"]!, "observation.embedding": r["emb"]! };
};

describe("ZmqChunkPolicy", () => {
  it("is the served policy as a ChunkPolicy: same chunk as a direct call with the same seed and prefix", async () => {
    const server = await ZmqPolicyServer.start({
      policy: fx.served,
      endpoint: "tcp://127.0.0.1:0",
      auth: { mode: "insecure" },
    });
    closers.push(() => server.close());
    const remote = await ZmqChunkPolicy.connect({ endpoint: server.endpoint });
    closers.push(() => remote.close());
    expect([remote.horizon, remote.actionDim, remote.fps]).toEqual([4, 3, 10]);
    const obs = obsOf(1);
    const prefix = new Float32Array([0.5, -0.5, 0.25, 0.1, 0.2, 0.3]);
    const got = await remote.sampleChunk(obs, { seed: 9, prefix });
    const want = await fx.direct.sampleChunk(obs, { seed: 9, prefix });
    expect(got.length).toBe(12);
    expect(Math.max(...got.map((x, i) => Math.abs(x - want[i]!)))).toBeLessThan(1e-5);
    // the committed prefix is kept as given
    expect([...got.slice(0, 6)].map((x) => +x.toFixed(5))).toEqual([0.5, -0.5, 0.25, 0.1, 0.2, 0.3]);
    const other = await remote.sampleChunk(obs, { seed: 10 });
    expect(Math.max(...other.map((x, i) => Math.abs(x - got[i]!)))).toBeGreaterThan(1e-3);
  });
});

describe("OpenpiChunkPolicy and the openpi client", () => {
  it("reads the metadata frame, gets the direct chunk, refuses a prefix, and surfaces the server's error text", async () => {
    const server = await OpenpiPolicyServer.start({
      policy: fx.served,
      url: "ws://127.0.0.1:0",
      auth: { mode: "insecure" },
    });
    closers.push(() => server.close());
    const remote = await OpenpiChunkPolicy.connect({ url: server.url });
    closers.push(() => remote.close());
    expect([remote.horizon, remote.actionDim, remote.fps]).toEqual([4, 3, 10]);
    expect(remote.metadata.features.map((f) => f.key)).toEqual(["observation.state", "observation.embedding"]);
    const chunk = await remote.sampleChunk(obsOf(2));
    expect(chunk.length).toBe(12);
    expect(chunk.every(Number.isFinite)).toBe(true);
    await expect(remote.sampleChunk(obsOf(2), { prefix: new Float32Array(3) })).rejects.toThrow(
      "the openpi protocol carries no prefix",
    );
    // a missing feature: the server answers with a text frame and closes this connection only
    const bad = await OpenpiPolicyClient.connect({ url: server.url });
    await expect(bad.infer({ "observation.state": new Float32Array(4) })).rejects.toThrow(
      /openpi server error: BadRequestError: observation feature 'observation.embedding'.*is missing/,
    );
    await expect(remote.sampleChunk(obsOf(3))).resolves.toHaveLength(12);
  });

  it("sends the API key and reports a refusal with its HTTP status", async () => {
    const key = "k".repeat(24);
    const server = await OpenpiPolicyServer.start({
      policy: fx.served,
      url: "ws://127.0.0.1:0",
      auth: { mode: "api-key", keys: [key] },
    });
    closers.push(() => server.close());
    await expect(OpenpiPolicyClient.connect({ url: server.url, apiKey: "w".repeat(24) })).rejects.toThrow(
      "refused the connection (HTTP 401)",
    );
    const ok = await OpenpiPolicyClient.connect({ url: server.url, apiKey: key });
    closers.push(() => ok.close());
    expect(ok.metadata.horizon).toBe(4);
  });
});

describe("a prefix-trained policy over the network", () => {
  it("announces rtc_max_delay and fps from the export, and a remote rtc loop refuses a larger delay", async () => {
    const root = mkdtempSync(join(tmpdir(), "actionflow-rtc-remote-"));
    closers.push(() => rmSync(root, { recursive: true, force: true }));
    const m = tinyModel("transformer");
    const run = join(root, "run");
    await writeTinyCheckpoint(run, { ...m, config: { ...m.config, rtcMaxDelay: 1, fps: 20 } });
    await exportOnnx(run, { steps: 2, solver: "euler" });
    // no fps option: both rates come from the export's metadata
    const served = await ThreadedPolicy.start(run, { threads: 1 });
    closers.push(() => served.close());
    expect([served.rtcMaxDelay, served.fps]).toEqual([1, 20]);
    const zmq = await ZmqPolicyServer.start({
      policy: served,
      endpoint: "tcp://127.0.0.1:0",
      auth: { mode: "insecure" },
    });
    closers.push(() => zmq.close());
    const ws = await OpenpiPolicyServer.start({ policy: served, url: "ws://127.0.0.1:0", auth: { mode: "insecure" } });
    closers.push(() => ws.close());
    const remote = await ZmqChunkPolicy.connect({ endpoint: zmq.endpoint });
    closers.push(() => remote.close());
    expect(remote.metadata.rtc_max_delay).toBe(1);
    expect([remote.rtcMaxDelay, remote.fps]).toEqual([1, 20]);
    const openpi = await OpenpiChunkPolicy.connect({ url: ws.url });
    closers.push(() => openpi.close());
    expect([openpi.rtcMaxDelay, openpi.fps]).toEqual([1, 20]);
    // the loop's executor over the remote policy, as `sim run --via zmq --merge rtc` builds it
    const ex = new LoopExecutor({ mode: "rtc" }, remote, 20);
    expect(() => ex.request(0, 2)).toThrow(RtcDelayError);
    expect(() => ex.request(0, 2)).toThrow("d = 2 control steps exceeds the policy's rtcMaxDelay 1");
    const ticket = ex.request(0, 1);
    expect(ticket.s0).toBe(0);
  });

  it("refuses metadata with a malformed rtc_max_delay or fps, naming the field", async () => {
    const fake = {
      horizon: 2,
      actionDim: 1,
      reset: (): void => {},
      sampleChunk: () => Promise.resolve(new Float32Array(2)),
    };
    for (const [bad, field] of [
      [{ rtcMaxDelay: 2 }, "rtc_max_delay"],
      [{ rtcMaxDelay: 0.5 }, "rtc_max_delay"],
      [{ fps: -1 }, "fps"],
    ] as const) {
      const served = servedChunkPolicy(
        { ...fake, ...bad },
        {
          features: [{ name: "state", key: "observation.state", shape: [2], rawShape: [2] }],
        },
      );
      const server = await ZmqPolicyServer.start({
        policy: served,
        endpoint: "tcp://127.0.0.1:0",
        auth: { mode: "insecure" },
      });
      closers.push(() => server.close());
      await expect(ZmqChunkPolicy.connect({ endpoint: server.endpoint })).rejects.toThrow(
        `metadata '${field}' must be`,
      );
    }
  });
});

describe("servedChunkPolicy", () => {
  it("serves any ChunkPolicy: the servers check its announced features", async () => {
    let seen: Record<string, Float32Array> | undefined;
    const fake = {
      horizon: 2,
      actionDim: 1,
      reset: (): void => {},
      sampleChunk: (obs: Record<string, Float32Array>): Promise<Float32Array> => {
        seen = obs;
        return Promise.resolve(new Float32Array([obs["observation.state"]![0]! + 1, 7]));
      },
    };
    const served = servedChunkPolicy(fake, {
      features: [{ name: "state", key: "observation.state", shape: [2], rawShape: [2] }],
    });
    const server = await ZmqPolicyServer.start({
      policy: served,
      endpoint: "tcp://127.0.0.1:0",
      auth: { mode: "insecure" },
    });
    closers.push(() => server.close());
    const remote = await ZmqChunkPolicy.connect({ endpoint: server.endpoint });
    closers.push(() => remote.close());
    expect([...(await remote.sampleChunk({ "observation.state": new Float32Array([2, 3]) }))]).toEqual([3, 7]);
    expect([...seen!["observation.state"]!]).toEqual([2, 3]);
    await expect(remote.sampleChunk({ "observation.state": new Float32Array([1, 2, 3]) })).rejects.toThrow(
      /observation.state/,
    );
  });
});
