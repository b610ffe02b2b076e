import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { NdArray, decodeMsgpackNumpy, encodeMsgpackNumpy, type MsgMap } from "../../../bridge/codec/msgpack-numpy.ts";
import { OpenpiPolicyServer } from "../../../bridge/server/openpi-server.ts";
import { randomObs } from "../../policy/onnx/fixture.ts";
import { maxAbsDiff } from "../../policy/onnx/helpers.ts";
import { OPENPI_MSGPACK_NUMPY, findPython, pythonMissing, runPythonAsync } from "../python.ts";
import { servedFixture, type ServedFixture } from "./fixture.ts";

const KEY = "test-key-0123456789abcdef";
let fx: ServedFixture;
let server: OpenpiPolicyServer;

beforeAll(async () => {
  fx = await servedFixture();
  server = await OpenpiPolicyServer.start({
    policy: fx.served,
    url: "ws://127.0.0.1:0",
    auth: { mode: "api-key", keys: [KEY] },
    keyMap: { "observation/state": "observation.state", "observation/embedding": "observation.embedding" },
    maxPayloadBytes: 64 * 1024,
    log: () => undefined,
  });
});
afterAll(async () => {
  await server.close();
  await fx.dispose();
});

/** An openpi-style observation (client keys, float64 state like numpy's default, a prompt). */
function openpiObs(seed: number): MsgMap {
  const o = randomObs(1, seed);
  return {
    "observation/state": new NdArray("<f8", [4], Float64Array.from(o["state"]!)),
    "observation/embedding": NdArray.float32(o["emb"]!, [2, 3]),
    prompt: "reach the target",
  };
}
const directObs = (seed: number): Record<string, Float32Array> => randomObs(1, seed);

/** A connected client that collects frames in order. */
async function connect(headers: Record<string, string> = { Authorization: `Api-Key ${KEY}` }): Promise<{
  ws: WebSocket;
  next(): Promise<{ data: Buffer; binary: boolean }>;
  closed: Promise<{ code: number; reason: string }>;
}> {
  const ws = new WebSocket(server.url, { headers });
  const frames: Array<{ data: Buffer; binary: boolean }> = [];
  const waiters: Array<(f: { data: Buffer; binary: boolean }) => void> = [];
  ws.on("message", (data: Buffer, binary: boolean) => {
    const f = { data, binary };
    const w = waiters.shift();
    if (w) w(f);
    else frames.push(f);
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  return {
    ws,
    next: () => {
      const f = frames.shift();
      return f ? Promise.resolve(f) : new Promise((resolve) => waiters.push(resolve));
    },
    closed,
  };
}

describe("openpi-compatible WebSocket server", () => {
  it("answers GET /healthz and refuses plain HTTP elsewhere", async () => {
    const base = server.url.replace("ws://", "http://");
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/`)).status).toBe(426);
  });

  it("sends the metadata frame, then answers each observation with the chunk", async () => {
    const c = await connect();
    try {
      const meta = decodeMsgpackNumpy((await c.next()).data) as MsgMap;
      expect(meta["horizon"]).toBe(4);
      expect(meta["action_dim"]).toBe(3);
      expect(meta["fps"]).toBe(10);
      expect(meta["rtc_max_delay"]).toBe(0);
      expect([meta["solver"], meta["steps"]]).toEqual(["euler", 4]);
      expect(meta["features"]).toEqual([
        { name: "state", key: "observation.state", shape: [4], kind: "vector", dtype: "float32" },
        { name: "emb", key: "observation.embedding", shape: [2, 3], kind: "vector", dtype: "float32" },
      ]);
      // The policy's stream restarted from 21: the first chunk uses Rng(21)'s first draw.
      fx.served.reset(21);
      c.ws.send(encodeMsgpackNumpy(openpiObs(3)));
      const r1 = decodeMsgpackNumpy((await c.next()).data) as MsgMap;
      const actions = r1["actions"] as NdArray;
      expect([actions.dtype, actions.shape]).toEqual(["<f4", [4, 3]]);
      const want = await fx.direct.sampleChunk(directObs(3), { seed: 21 });
      expect(maxAbsDiff(actions.toFloat32(), want)).toBeLessThan(1e-5);
      expect((r1["policy_timing"] as MsgMap)["infer_ms"]).toBeGreaterThan(0);
      expect((r1["server_timing"] as MsgMap)["infer_ms"]).toBeGreaterThan(0);
      expect((r1["server_timing"] as MsgMap)["prev_total_ms"]).toBeUndefined();
      c.ws.send(encodeMsgpackNumpy(openpiObs(3)));
      const r2 = decodeMsgpackNumpy((await c.next()).data) as MsgMap;
      expect((r2["server_timing"] as MsgMap)["prev_total_ms"]).toBeGreaterThan(0);
      expect(maxAbsDiff((r2["actions"] as NdArray).toFloat32(), want)).toBeGreaterThan(1e-3);
    } finally {
      c.ws.close();
    }
  });

  it("sends an error as text and closes 1011 for that client only; others keep being served", async () => {
    const good = await connect();
    const cases: Array<[Uint8Array | string, RegExp]> = [
      [
        encodeMsgpackNumpy({ "observation/state": NdArray.float32(new Float32Array(4)) }),
        /'observation\.embedding'.*missing/,
      ],
      [
        encodeMsgpackNumpy({ ...openpiObs(1), "observation/state": NdArray.float32(new Float32Array(5)) }),
        /has shape \[5\], expected \[4\]/,
      ],
      [
        encodeMsgpackNumpy({ ...openpiObs(1), "observation/state": NdArray.float32(Float32Array.of(0, NaN, 0, 0)) }),
        /non-finite value NaN at index 1/,
      ],
      [Uint8Array.of(0xc1), /msgpack/],
      [encodeMsgpackNumpy([1, 2]), /one observation dict/],
      ['{"json": true}', /expected a binary msgpack frame/],
    ];
    try {
      await good.next();
      for (const [frame, re] of cases) {
        const bad = await connect();
        await bad.next();
        bad.ws.send(frame);
        const err = await bad.next();
        expect(err.binary).toBe(false);
        expect(err.data.toString()).toMatch(re);
        expect((await bad.closed).code).toBe(1011);
        good.ws.send(encodeMsgpackNumpy(openpiObs(2)));
        const ok = decodeMsgpackNumpy((await good.next()).data) as MsgMap;
        expect((ok["actions"] as NdArray).shape).toEqual([4, 3]);
      }
      // Over maxPayload (64 KiB): closed 1009 by the WebSocket layer.
      const big = await connect();
      await big.next();
      big.ws.send(encodeMsgpackNumpy({ img: new NdArray("|u1", [100_000], new Uint8Array(100_000)) }));
      expect((await big.closed).code).toBe(1009);
    } finally {
      good.ws.close();
    }
  });

  it("refuses a missing or wrong API key before the upgrade", async () => {
    const refused = async (headers: Record<string, string>): Promise<number> =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(server.url, { headers });
        ws.on("unexpected-response", (_req, res) => {
          resolve(res.statusCode ?? 0);
          ws.terminate();
        });
        ws.on("open", () => reject(new Error("connected without a valid key")));
        ws.on("error", () => undefined);
      });
    const before = server.stats().refused;
    expect(await refused({})).toBe(401);
    expect(await refused({ Authorization: "Api-Key wrong-key-0123456789abcdef" })).toBe(401);
    expect(await refused({ Authorization: `Bearer ${KEY}` })).toBe(401);
    expect(server.stats().refused - before).toBe(3);
  });

  it("serves 32 concurrent clients x 25 requests, every one answered", async () => {
    const clients = await Promise.all(Array.from({ length: 32 }, () => connect()));
    try {
      const counts = await Promise.all(
        clients.map(async (c, i) => {
          await c.next();
          let n = 0;
          for (let k = 0; k < 25; k++) {
            c.ws.send(encodeMsgpackNumpy(openpiObs(i)));
            const r = decodeMsgpackNumpy((await c.next()).data) as MsgMap;
            const a = (r["actions"] as NdArray).toFloat32();
            if (a.length === 12 && a.every(Number.isFinite)) n++;
          }
          return n;
        }),
      );
      expect(counts.reduce((a, b) => a + b, 0)).toBe(32 * 25);
    } finally {
      for (const c of clients) c.ws.close();
    }
  });
});

const py = findPython(["websockets", "msgpack", "numpy"]);

describe("a Python client with openpi's client logic (websockets + msgpack_numpy)", () => {
  it.skipIf(!py)("gets the metadata and a chunk, and raises on an error frame", async () => {
    const script = `${OPENPI_MSGPACK_NUMPY}
import asyncio, json, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1], compression=None, max_size=None,
                                  extra_headers={"Authorization": "Api-Key " + sys.argv[2]}) as ws:
        meta = unpackb(await ws.recv())
        obs = {"observation/state": np.array(json.loads(sys.argv[3])),
               "observation/embedding": np.array(json.loads(sys.argv[4]), dtype=np.float32).reshape(2, 3),
               "prompt": "reach"}
        await ws.send(packb(obs))
        r = await ws.recv()
        if isinstance(r, str): raise RuntimeError(f"Error in inference server:\\n{r}")
        r = unpackb(r)
        await ws.send(packb({"prompt": "no state"}))
        err = await ws.recv()
        print(json.dumps({"horizon": meta["horizon"], "shape": list(r["actions"].shape), "dtype": r["actions"].dtype.str,
          "actions": r["actions"].ravel().tolist(), "timing": sorted(r["server_timing"]), "error_is_text": isinstance(err, str)}))
asyncio.run(main())`;
    const o = randomObs(1, 4);
    fx.served.reset(33);
    const out = await runPythonAsync(py!, script, [
      server.url,
      KEY,
      JSON.stringify(Array.from(o["state"]!)),
      JSON.stringify(Array.from(o["emb"]!)),
    ]);
    const r = JSON.parse(out.toString()) as {
      horizon: number;
      shape: number[];
      dtype: string;
      actions: number[];
      timing: string[];
      error_is_text: boolean;
    };
    expect([r.horizon, r.shape, r.dtype, r.timing, r.error_is_text]).toEqual([4, [4, 3], "<f4", ["infer_ms"], true]);
    const want = await fx.direct.sampleChunk(directObs(4), { seed: 33 });
    expect(maxAbsDiff(Float32Array.from(r.actions), want)).toBeLessThan(1e-5);
  });

  it.skipIf(py !== undefined)(pythonMissing(["websockets", "msgpack", "numpy"]), () => {
    expect(py).toBeUndefined();
  });
});
