import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as zmq from "zeromq";
import { encode } from "@msgpack/msgpack";
import { NdArray, decodeMsgpackNumpy, encodeMsgpackNumpy, type MsgMap } from "../../../bridge/codec/msgpack-numpy.ts";
import { ZmqPolicyServer } from "../../../bridge/server/zmq-server.ts";
import { ZmqPolicyClient, ZmqServerError } from "../../../bridge/server/zmq-client.ts";
import { curveKeyPair, z85Encode, type ZapDecision } from "../../../bridge/server/zap.ts";
import { randomObs } from "../../policy/onnx/fixture.ts";
import { maxAbsDiff } from "../../policy/onnx/helpers.ts";
import { OPENPI_MSGPACK_NUMPY, findPython, pythonMissing, runPythonAsync } from "../python.ts";
import { servedFixture, type ServedFixture } from "./fixture.ts";

let fx: ServedFixture;
let server: ZmqPolicyServer;
const logs: string[] = [];

beforeAll(async () => {
  fx = await servedFixture();
  server = await ZmqPolicyServer.start({
    policy: fx.served,
    endpoint: "tcp://127.0.0.1:0",
    pub: "tcp://127.0.0.1:0",
    auth: { mode: "insecure" },
    keyMap: { "observation/state": "observation.state" },
    maxMessageBytes: 1 << 20,
    log: (m) => logs.push(m),
  });
});
afterAll(async () => {
  await server.close();
  await fx.dispose();
});

const obsOf = (seed: number): Record<string, Float32Array> => {
  const o = randomObs(1, seed);
  return { "observation.state": o["state"]!, "observation.embedding": o["emb"]! };
};

describe("ZeroMQ policy server", () => {
  it("binds 127.0.0.1 on a free port and answers metadata, ping, reset and infer", async () => {
    expect(server.endpoint).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    const c = ZmqPolicyClient.connect({ endpoint: server.endpoint });
    try {
      const meta = await c.metadata();
      expect(meta).toEqual({
        features: [
          { name: "state", key: "observation.state", shape: [4], kind: "vector", dtype: "float32" },
          { name: "emb", key: "observation.embedding", shape: [2, 3], kind: "vector", dtype: "float32" },
        ],
        horizon: 4,
        action_dim: 3,
        fps: 10,
        rtc_max_delay: 0,
        solver: "euler",
        steps: 4,
        key_map: { "observation/state": "observation.state" },
      });
      expect(Math.abs((await c.ping()) - Date.now())).toBeLessThan(5000);
      const chunk = await c.infer(obsOf(1), { seed: 42 });
      const [want] = await fx.expected([{ obs: obsOf(1), seed: 42 }]);
      expect(chunk.shape).toEqual([4, 3]);
      expect(maxAbsDiff(chunk.actions, want!)).toBeLessThan(1e-5);
      expect(chunk.timing.batch).toBeGreaterThanOrEqual(1);
      expect(chunk.timing.infer_ms).toBeGreaterThan(0);
      // The key map: `observation/state` stands for `observation.state`.
      const mapped = await c.infer(
        { "observation/state": obsOf(1)["observation.state"]!, emb: obsOf(1)["observation.embedding"]! },
        { seed: 42 },
      );
      expect(maxAbsDiff(mapped.actions, want!)).toBeLessThan(1e-5);
      // A committed prefix (real-time chunking) comes back unchanged as the chunk's first steps.
      const prefix = Float32Array.of(0.5, -0.25, 1, 0.75, 0, -1);
      const kept = await c.infer(obsOf(1), { seed: 42, prefix, prefixLen: 2 });
      expect(maxAbsDiff(kept.actions.subarray(0, 6), prefix)).toBeLessThan(1e-4);
      expect(maxAbsDiff(kept.actions.subarray(6), want!.subarray(6))).toBeGreaterThan(1e-4);
      // reset restarts this client's stream: same seed, same chunks.
      await c.reset(7);
      const r1 = await c.infer(obsOf(2));
      const r2 = await c.infer(obsOf(2));
      await c.reset(7);
      const r3 = await c.infer(obsOf(2));
      expect(Array.from(r3.actions)).toEqual(Array.from(r1.actions));
      expect(maxAbsDiff(r1.actions, r2.actions)).toBeGreaterThan(1e-3);
    } finally {
      await c.close();
    }
  });

  it("answers 32 concurrent clients x 100 requests, each with its own chunk", async () => {
    const clients = Array.from({ length: 32 }, () => ZmqPolicyClient.connect({ endpoint: server.endpoint }));
    const before = fx.served.stats();
    try {
      const results = await Promise.all(
        clients.map(async (c, ci) => {
          const out: Array<{ seed: number; obsSeed: number; actions: Float32Array }> = [];
          // Each client keeps 4 requests in flight.
          for (let i = 0; i < 100; i += 4) {
            const batch = await Promise.all(
              [0, 1, 2, 3].map(async (k) => {
                const seed = ci * 1000 + i + k;
                const obsSeed = ci * 7 + ((i + k) % 5);
                return { seed, obsSeed, actions: (await c.infer(obsOf(obsSeed), { seed })).actions };
              }),
            );
            out.push(...batch);
          }
          return out;
        }),
      );
      const flat = results.flat();
      expect(flat.length).toBe(3200);
      const want = await fx.expected(flat.map((r) => ({ obs: obsOf(r.obsSeed), seed: r.seed })));
      let worst = 0;
      flat.forEach((r, i) => (worst = Math.max(worst, maxAbsDiff(r.actions, want[i]!))));
      expect(worst).toBeLessThan(1e-5);
      const after = fx.served.stats();
      expect(after.requests - before.requests).toBe(3200);
      // Batching happened: far fewer runs than requests.
      expect(after.batches - before.batches).toBeLessThan(3200 / 2);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  it("answers every malformed frame with an error and keeps serving good requests", async () => {
    const c = ZmqPolicyClient.connect({ endpoint: server.endpoint });
    try {
      const nan = obsOf(3);
      nan["observation.state"]![2] = Number.NaN;
      const bad: Array<[MsgMap, RegExp, string]> = [
        [{ type: "teleport" }, /unknown request type 'teleport'/, "unknown_type"],
        [{ kind: "infer" }, /no string 'type'/, "malformed"],
        [{ type: "infer" }, /needs 'obs'/, "bad_request"],
        [
          { type: "infer", obs: { "observation.state": NdArray.float32(new Float32Array(4)) } },
          /'observation\.embedding'.*missing/,
          "bad_request",
        ],
        [
          {
            type: "infer",
            obs: { ...enc(obsOf(3)), "observation.state": NdArray.float32(new Float32Array(6), [2, 3]) },
          },
          /'observation\.state' has shape \[2, 3\], expected \[4\]/,
          "bad_request",
        ],
        [{ type: "infer", obs: enc(nan) }, /'observation\.state' has a non-finite value NaN at index 2/, "bad_request"],
        [
          { type: "infer", obs: { ...enc(obsOf(3)), "observation.state": "x" } },
          /must be a numeric array/,
          "bad_request",
        ],
        [{ type: "infer", obs: enc(obsOf(3)), seed: 1.5 }, /'seed' must be an integer/, "bad_request"],
        [
          { type: "infer", obs: enc(obsOf(3)), noise: NdArray.float32(new Float32Array(3)) },
          /noise has 3 values, expected 20/,
          "bad_request",
        ],
        [{ type: "reset" }, /needs an integer 'seed'/, "bad_request"],
      ];
      const raw: Array<Array<Uint8Array | string>> = [
        [Uint8Array.of(0xc1, 0x00)],
        ["not msgpack at all"],
        [encode([1, 2, 3])],
        [encode({ x: { __ndarray__: true, data: new Uint8Array(8), dtype: "<c8", shape: [1] } })],
        [encodeMsgpackNumpy({ type: "ping" }), encodeMsgpackNumpy({ type: "ping" })],
        [new Uint8Array(0)],
      ];
      const good: Array<Promise<Float32Array>> = [];
      const refused: Array<Promise<unknown>> = [];
      for (let round = 0; round < 5; round++) {
        for (const [body, re, code] of bad) {
          refused.push(
            c.request(body).then(
              () => {
                throw new Error(`accepted ${JSON.stringify(Object.keys(body))}`);
              },
              (err: unknown) => {
                expect(err).toBeInstanceOf(ZmqServerError);
                expect((err as ZmqServerError).message).toMatch(re);
                expect((err as ZmqServerError).code).toBe(code);
              },
            ),
          );
          good.push(c.infer(obsOf(round), { seed: round }).then((r) => r.actions));
        }
        for (const frames of raw) await c.sendRaw(frames);
      }
      await Promise.all(refused);
      const got = await Promise.all(good);
      const want = await fx.expected([0, 1, 2, 3, 4].map((r) => ({ obs: obsOf(r), seed: r })));
      got.forEach((a, i) => expect(maxAbsDiff(a, want[Math.floor(i / bad.length)]!)).toBeLessThan(1e-5));
      // Every raw frame got its error reply (id null).
      const deadline = Date.now() + 5000;
      while (c.unmatched.length < raw.length * 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(c.unmatched.length).toBe(raw.length * 5);
      expect(c.unmatched.every((r) => r.type === "error" && r.id === null)).toBe(true);
      const messages = c.unmatched.slice(0, raw.length).map((r) => (r.type === "error" ? r.message : ""));
      expect(messages[3]).toMatch(/'x': dtype '<c8' \(complex\) is refused/);
      expect(messages[4]).toMatch(/expected one payload frame, got 2/);
      expect(messages[2]).toMatch(/must be a msgpack map/);
      expect(await c.ping()).toBeGreaterThan(0);
    } finally {
      await c.close();
    }
  });

  it("drops a client whose message exceeds maxMessageBytes and keeps serving the others", async () => {
    const big = ZmqPolicyClient.connect({ endpoint: server.endpoint, timeoutMs: 1500 });
    const ok = ZmqPolicyClient.connect({ endpoint: server.endpoint });
    try {
      const img = new NdArray("|u1", [2 << 20], new Uint8Array(2 << 20));
      await expect(big.request({ type: "infer", obs: { ...enc(obsOf(1)), img } })).rejects.toThrow(/no reply/);
      const [want] = await fx.expected([{ obs: obsOf(1), seed: 3 }]);
      expect(maxAbsDiff((await ok.infer(obsOf(1), { seed: 3 })).actions, want!)).toBeLessThan(1e-5);
    } finally {
      await Promise.all([big.close(), ok.close()]);
    }
  });

  it("publishes served chunks and timings on the PUB stream", async () => {
    const sub = new zmq.Subscriber({ linger: 0 });
    sub.connect(server.pubEndpoint!);
    sub.subscribe("chunk");
    const c = ZmqPolicyClient.connect({ endpoint: server.endpoint });
    try {
      const first = sub.receive();
      let got: Buffer[] | undefined;
      void first.then((f) => (got = f));
      // A subscription takes a moment to reach the publisher: keep asking until one arrives.
      for (let i = 0; i < 100 && !got; i++) {
        await c.infer(obsOf(5), { seed: 5 });
        await new Promise((r) => setTimeout(r, 20));
      }
      const [topic, payload] = (await first) as Buffer[];
      expect(topic!.toString()).toBe("chunk");
      const m = decodeMsgpackNumpy(payload!) as MsgMap;
      expect((m["actions"] as NdArray).shape).toEqual([4, 3]);
      const [want] = await fx.expected([{ obs: obsOf(5), seed: 5 }]);
      expect(maxAbsDiff((m["actions"] as NdArray).toFloat32(), want!)).toBeLessThan(1e-5);
      expect((m["timing"] as MsgMap)["infer_ms"]).toBeGreaterThan(0);
    } finally {
      sub.close();
      await c.close();
    }
  });
});

describe("ZeroMQ CURVE allow-list", () => {
  it("admits an allow-listed key and refuses other keys and plaintext clients", async () => {
    const serverKeys = curveKeyPair();
    const friend = curveKeyPair();
    const stranger = curveKeyPair();
    const decisions: ZapDecision[] = [];
    const secure = await ZmqPolicyServer.start({
      policy: fx.served,
      endpoint: "tcp://127.0.0.1:0",
      auth: { mode: "curve", serverKeys, allow: [friend.publicKey] },
      onAuth: (d) => decisions.push(d),
      log: (m) => logs.push(m),
    });
    const ok = ZmqPolicyClient.connect({
      endpoint: secure.endpoint,
      curve: { serverPublicKey: serverKeys.publicKey, keys: friend },
    });
    const bad = ZmqPolicyClient.connect({
      endpoint: secure.endpoint,
      curve: { serverPublicKey: serverKeys.publicKey, keys: stranger },
      timeoutMs: 1500,
    });
    const plain = ZmqPolicyClient.connect({ endpoint: secure.endpoint, timeoutMs: 1500 });
    const authFailed = new Promise<string>((resolve) => bad.events.on("handshake:error:auth", (e) => resolve(e.type)));
    try {
      const chunk = await ok.infer(obsOf(1), { seed: 42 });
      const [want] = await fx.expected([{ obs: obsOf(1), seed: 42 }]);
      expect(maxAbsDiff(chunk.actions, want!)).toBeLessThan(1e-5);
      await expect(bad.infer(obsOf(1), { seed: 1 })).rejects.toThrow(/no reply .* within 1500 ms/);
      expect(await authFailed).toBe("handshake:error:auth");
      await expect(plain.ping()).rejects.toThrow(/no reply/);
      expect(decisions.some((d) => d.clientKey === friend.publicKey && d.allowed)).toBe(true);
      expect(decisions.some((d) => d.clientKey === stranger.publicKey && !d.allowed)).toBe(true);
      expect(decisions.some((d) => d.allowed && d.clientKey !== friend.publicKey)).toBe(false);
    } finally {
      await Promise.all([ok.close(), bad.close(), plain.close()]);
      await secure.close();
    }
  });

  it("encodes keys as ZeroMQ's Z85 and refuses a server without an allow-list", async () => {
    // The Z85 test vector of the ZeroMQ RFC 32.
    expect(z85Encode(Uint8Array.of(0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b))).toBe("HelloWorld");
    await expect(
      ZmqPolicyServer.start({
        policy: fx.served,
        endpoint: "tcp://127.0.0.1:0",
        auth: { mode: "curve", serverKeys: curveKeyPair(), allow: [] },
      }),
    ).rejects.toThrow(/at least one allowed client key/);
  });
});

const py = findPython(["zmq", "msgpack", "numpy"]);

describe("a Python client (pyzmq + openpi's msgpack_numpy)", () => {
  it.skipIf(!py)("gets the right chunk over a REQ socket", async () => {
    const obs = obsOf(9);
    const script = `${OPENPI_MSGPACK_NUMPY}
import sys, json, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.REQ)
s.setsockopt(zmq.RCVTIMEO, 20000)
s.connect(sys.argv[1])
s.send(packb({"type": "metadata"}))
meta = unpackb(s.recv())["metadata"]
obs = {"observation/state": np.array(json.loads(sys.argv[2]), dtype=np.float64),
       "observation.embedding": np.array(json.loads(sys.argv[3]), dtype=np.float32).reshape(2, 3)}
s.send(packb({"type": "infer", "id": 7, "obs": obs, "seed": 11}))
r = unpackb(s.recv())
print(json.dumps({"type": r["type"], "id": r["id"], "dtype": r["actions"].dtype.str, "shape": list(r["actions"].shape),
  "actions": r["actions"].ravel().tolist(), "horizon": meta["horizon"]}))`;
    const out = (
      await runPythonAsync(py!, script, [
        server.endpoint,
        JSON.stringify(Array.from(obs["observation.state"]!)),
        JSON.stringify(Array.from(obs["observation.embedding"]!)),
      ])
    ).toString();
    const r = JSON.parse(out) as {
      type: string;
      id: number;
      dtype: string;
      shape: number[];
      actions: number[];
      horizon: number;
    };
    expect([r.type, r.id, r.dtype, r.shape, r.horizon]).toEqual(["chunk", 7, "<f4", [4, 3], 4]);
    const [want] = await fx.expected([{ obs, seed: 11 }]);
    // float64 state on the wire -> float32 in the server: the same values as the direct call.
    expect(maxAbsDiff(Float32Array.from(r.actions), want!)).toBeLessThan(1e-5);
  });

  it.skipIf(py !== undefined)(pythonMissing(["zmq", "msgpack", "numpy"]), () => {
    expect(py).toBeUndefined();
  });
});

function enc(o: Record<string, Float32Array>): MsgMap {
  const out: MsgMap = {};
  for (const [k, v] of Object.entries(o))
    out[k] = k === "observation.embedding" ? NdArray.float32(v, [2, 3]) : NdArray.float32(v);
  return out;
}
