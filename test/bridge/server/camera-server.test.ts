import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { NdArray, decodeMsgpackNumpy, encodeMsgpackNumpy, type MsgMap } from "../../../bridge/codec/msgpack-numpy.ts";
import { OpenpiPolicyServer } from "../../../bridge/server/openpi-server.ts";
import { ZmqPolicyServer } from "../../../bridge/server/zmq-server.ts";
import { ZmqPolicyClient, ZmqServerError } from "../../../bridge/server/zmq-client.ts";
import { resizeWithPad } from "../../../bridge/server/resize-with-pad.ts";
import { OpenpiChunkPolicy, ZmqChunkPolicy } from "../../../bridge/server/remote-policy.ts";
import { policyCameras } from "../../../bridge/cameras.ts";
import { BadRequestError, observationFrom, policyMetadata } from "../../../bridge/server/served-policy.ts";
import { OPENPI_MSGPACK_NUMPY, findPython, pythonMissing, runPythonAsync } from "../python.ts";
import { RecordingImagePolicy, cameraFeature, testImage } from "./camera-fixture.ts";

const FRONT = cameraFeature("front", 4, 6);
const WRIST = cameraFeature("wrist", 2, 2);
const state = (): NdArray => NdArray.float32(Float32Array.of(0.5, -1));
const u8 = (h: number, w: number, seed: number, c = 3): NdArray => {
  const img = c === 3 ? testImage(h, w, seed) : new Uint8Array(h * w * c).fill(seed);
  return new NdArray("|u1", [h, w, c], img);
};

describe("camera features in a request", () => {
  const one = [FRONT];
  const two = [FRONT, WRIST];

  it("finds a camera under its key, its slash form, its model name and (one camera) observation/image", () => {
    for (const key of ["observation.images.front", "observation/images/front", "front", "observation/image"]) {
      const obs = observationFrom({ [key]: u8(4, 6, 1) }, one);
      expect(obs["observation.images.front"]).toEqual(testImage(4, 6, 1));
    }
  });

  it("ignores LIBERO's observation/wrist_image for a one-camera policy", () => {
    const obs = observationFrom({ "observation/image": u8(4, 6, 2), "observation/wrist_image": u8(4, 6, 9) }, one);
    expect(Object.keys(obs)).toEqual(["observation.images.front"]);
    expect(obs["observation.images.front"]).toEqual(testImage(4, 6, 2));
  });

  it("resizes another size with padding, as openpi's resize_with_pad", () => {
    const obs = observationFrom({ front: u8(8, 6, 3) }, one);
    expect(obs["observation.images.front"]).toEqual(resizeWithPad(testImage(8, 6, 3), 8, 6, 4, 6));
    // 8x6 into 4x6: ratio 2, scaled to 4x3 and pasted at column int((6 - 3) / 2) = 1: columns 0, 4 and 5 black
    const img = obs["observation.images.front"]!;
    expect(Array.from(img.subarray(0, 3))).toEqual([0, 0, 0]);
    expect(Array.from(img.subarray(5 * 3, 6 * 3))).toEqual([0, 0, 0]);
  });

  it("refuses observation/image for a policy with two cameras, naming both, unless a key map says which", () => {
    expect(() => observationFrom({ "observation/image": u8(4, 6, 1), wrist: u8(2, 2, 1) }, two)).toThrow(
      /'observation\/image' is ambiguous: the policy has 2 cameras \(observation\.images\.front, observation\.images\.wrist\)/,
    );
    const obs = observationFrom({ "observation/image": u8(4, 6, 1), "observation/wrist_image": u8(2, 2, 5) }, two, {
      "observation/image": "observation.images.front",
      "observation/wrist_image": "observation.images.wrist",
    });
    expect(obs["observation.images.front"]).toEqual(testImage(4, 6, 1));
    expect(obs["observation.images.wrist"]).toEqual(testImage(2, 2, 5));
  });

  it("refuses one camera sent under two of its names", () => {
    expect(() => observationFrom({ front: u8(4, 6, 1), "observation/image": u8(4, 6, 1) }, one)).toThrow(
      /'observation\.images\.front' is given twice \(as 'front' and 'observation\/image'\)/,
    );
  });

  it("names the key and the expected dtype and shape for a wrong dtype, rank or channel count", () => {
    const cases: Array<[MsgMap, RegExp]> = [
      [
        { front: NdArray.float32(new Float32Array(72), [4, 6, 3]) },
        /camera 'front' \(observation\.images\.front\) must be a uint8 array of shape \(height, width, 3\).*got dtype float32 \('<f4'\) of shape \(4, 6, 3\)/,
      ],
      [
        { "observation/image": new NdArray("<f8", [4, 6, 3], new Float64Array(72)) },
        /'observation\/image'.*uint8.*got dtype float64/,
      ],
      [
        { front: new NdArray("|u1", [1, 4, 6, 3], testImage(4, 6, 0)) },
        /got shape \(1, 4, 6, 3\): send one sample, without a batch dim/,
      ],
      [
        { front: new NdArray("|u1", [72], testImage(4, 6, 0)) },
        /'front'.*uint8 array of shape \(height, width, 3\).*got shape \(72\)/,
      ],
      [{ front: u8(4, 6, 7, 4) }, /'front'.*got shape \(4, 6, 4\)/],
      [{ front: new NdArray("|u1", [3, 4, 6], testImage(4, 6, 0)) }, /got shape \(3, 4, 6\): channels last, not first/],
      [{ front: [1, 2, 3] }, /'front'.*uint8.*got a list/],
      [{ front: testImage(4, 6, 0) }, /'front'.*got raw bytes without a shape/],
      [
        { state: state() },
        /camera 'observation\.images\.front' \(model name 'front', shape \[4, 6, 3\], uint8\) is missing/,
      ],
    ];
    for (const [dict, re] of cases) {
      let caught: unknown;
      try {
        observationFrom(dict, one);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(BadRequestError);
      expect((caught as Error).message).toMatch(re);
    }
  });

  it("lists cameras with their kind, dtype and size in the metadata", () => {
    const meta = policyMetadata(new RecordingImagePolicy(two));
    expect(meta.features).toEqual([
      { name: "state", key: "observation.state", shape: [2], kind: "vector", dtype: "float32" },
      { name: "front", key: "observation.images.front", shape: [4, 6, 3], kind: "image", dtype: "uint8" },
      { name: "wrist", key: "observation.images.wrist", shape: [2, 2, 3], kind: "image", dtype: "uint8" },
    ]);
  });
});

describe("the openpi server with a camera policy", () => {
  const policy = new RecordingImagePolicy([FRONT]);
  let server: OpenpiPolicyServer;
  beforeAll(async () => {
    server = await OpenpiPolicyServer.start({
      policy,
      url: "ws://127.0.0.1:0",
      auth: { mode: "insecure" },
      keyMap: { "observation/state": "observation.state" },
      log: () => undefined,
    });
  });
  afterAll(async () => server.close());

  /** Sends `frames` on one connection; resolves with the metadata, the replies and how it closed. */
  async function exchange(frames: MsgMap[]): Promise<{ meta: MsgMap; replies: Array<MsgMap | string>; close: number }> {
    const ws = new WebSocket(server.url);
    const got: Array<MsgMap | string> = [];
    let meta: MsgMap | undefined;
    return new Promise((resolve, reject) => {
      ws.on("error", reject);
      ws.on("message", (data: Buffer, binary: boolean) => {
        if (!meta) {
          meta = decodeMsgpackNumpy(data) as MsgMap;
          for (const f of frames) ws.send(encodeMsgpackNumpy(f));
          return;
        }
        got.push(binary ? (decodeMsgpackNumpy(data) as MsgMap) : data.toString());
        if (got.length === frames.length) ws.close(1000);
      });
      ws.on("close", (code) => resolve({ meta: meta!, replies: got, close: code }));
    });
  }

  it("serves a uint8 image under observation/image and resizes one of another size", async () => {
    const r = await exchange([
      { "observation/state": state(), "observation/image": u8(4, 6, 1) },
      { "observation/state": state(), "observation/image": u8(40, 30, 2), "observation/wrist_image": u8(4, 6, 3) },
    ]);
    expect(r.close).toBe(1000);
    const cams = (r.meta["features"] as MsgMap[]).filter((f) => f["kind"] === "image");
    expect(cams).toEqual([
      { name: "front", key: "observation.images.front", shape: [4, 6, 3], kind: "image", dtype: "uint8" },
    ]);
    const want = [testImage(4, 6, 1), resizeWithPad(testImage(40, 30, 2), 40, 30, 4, 6)];
    r.replies.forEach((reply, i) => {
      const a = ((reply as MsgMap)["actions"] as NdArray).toFloat32();
      expect(a[0]).toBe(want[i]!.reduce((s, v) => s + v, 0));
    });
    expect(policy.seen.slice(-2).map((o) => o["observation.images.front"])).toEqual(want);
  });

  it("answers a float32 image with a text error naming the key and uint8, closes that client and keeps serving", async () => {
    const before = policy.seen.length;
    const bad = await exchange([
      { "observation/state": state(), "observation/image": NdArray.float32(new Float32Array(72), [4, 6, 3]) },
    ]);
    expect(bad.close).toBe(1011);
    expect(bad.replies[0]).toMatch(
      /BadRequestError: camera 'observation\/image' \(observation\.images\.front\) must be a uint8 array/,
    );
    const rank = await exchange([
      { "observation/state": state(), front: new NdArray("|u1", [72], testImage(4, 6, 0)) },
    ]);
    expect(rank.close).toBe(1011);
    expect(rank.replies[0]).toMatch(/camera 'front'.*got shape \(72\)/);
    expect(policy.seen.length).toBe(before);
    const good = await exchange([{ "observation/state": state(), front: u8(4, 6, 4) }]);
    expect(good.close).toBe(1000);
    expect(policy.seen.length).toBe(before + 1);
  });
});

describe("the ZeroMQ server with a camera policy", () => {
  const policy = new RecordingImagePolicy([FRONT, WRIST]);
  let server: ZmqPolicyServer;
  beforeAll(async () => {
    server = await ZmqPolicyServer.start({
      policy,
      endpoint: "tcp://127.0.0.1:0",
      auth: { mode: "insecure" },
      log: () => undefined,
    });
  });
  afterAll(async () => server.close());

  it("serves uint8 images, refuses a wrong dtype or channel count naming the key, and keeps serving that client", async () => {
    const c = ZmqPolicyClient.connect({ endpoint: server.endpoint });
    try {
      const meta = await c.metadata();
      expect(meta.features.map((f) => [f.key, f.kind, f.shape])).toEqual([
        ["observation.state", "vector", [2]],
        ["observation.images.front", "image", [4, 6, 3]],
        ["observation.images.wrist", "image", [2, 2, 3]],
      ]);
      // a plain Uint8Array goes as uint8 in the metadata's shape
      const ok = await c.infer({
        "observation.state": Float32Array.of(2, 0),
        "observation.images.front": testImage(4, 6, 5),
        "observation/images/wrist": u8(8, 8, 6),
      });
      const wrist = resizeWithPad(testImage(8, 8, 6), 8, 8, 2, 2);
      expect(Array.from(ok.actions.subarray(0, 3))).toEqual([
        testImage(4, 6, 5).reduce((s, v) => s + v, 0),
        wrist.reduce((s, v) => s + v, 0),
        2,
      ]);
      const bad: Array<[MsgMap, RegExp]> = [
        [
          { "observation.state": state(), front: NdArray.float32(new Float32Array(72), [4, 6, 3]), wrist: u8(2, 2, 1) },
          /camera 'front' \(observation\.images\.front\) must be a uint8 array of shape \(height, width, 3\).*got dtype float32/,
        ],
        [
          { "observation.state": state(), front: u8(4, 6, 1), wrist: u8(2, 2, 1, 1) },
          /camera 'wrist'.*got shape \(2, 2, 1\)/,
        ],
        [
          { "observation.state": state(), "observation/image": u8(4, 6, 1), wrist: u8(2, 2, 1) },
          /'observation\/image' is ambiguous/,
        ],
      ];
      for (const [obs, re] of bad) {
        const err = await c.request({ type: "infer", obs }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(ZmqServerError);
        expect((err as ZmqServerError).code).toBe("bad_request");
        expect((err as Error).message).toMatch(re);
      }
      const again = await c.infer({
        state: Float32Array.of(3, 0),
        front: testImage(4, 6, 0),
        wrist: testImage(2, 2, 0),
      });
      expect(again.actions[2]).toBe(3);
    } finally {
      await c.close();
    }
  });
});

describe("remote policies with cameras (what serve --robot --via zmq|openpi sends)", () => {
  it("send a Uint8Array camera as uint8 in the metadata's shape, and name the cameras for the loop", async () => {
    const policy = new RecordingImagePolicy([FRONT]);
    const zmqServer = await ZmqPolicyServer.start({
      policy,
      endpoint: "tcp://127.0.0.1:0",
      auth: { mode: "insecure" },
      log: () => undefined,
    });
    const wsServer = await OpenpiPolicyServer.start({
      policy,
      url: "ws://127.0.0.1:0",
      auth: { mode: "insecure" },
      log: () => undefined,
    });
    const zmq = await ZmqChunkPolicy.connect({ endpoint: zmqServer.endpoint });
    const openpi = await OpenpiChunkPolicy.connect({ url: wsServer.url });
    try {
      for (const remote of [zmq, openpi]) {
        expect(policyCameras(remote)).toEqual([{ key: "observation.images.front", height: 4, width: 6 }]);
        const obs = { "observation.state": Float32Array.of(1.5, 0), "observation.images.front": testImage(4, 6, 8) };
        const chunk = await remote.sampleChunk(obs);
        expect(Array.from(chunk.subarray(0, 2))).toEqual([testImage(4, 6, 8).reduce((s, v) => s + v, 0), 1.5]);
        expect(policy.seen.at(-1)!["observation.images.front"]).toEqual(testImage(4, 6, 8));
      }
    } finally {
      await zmq.close();
      openpi.close();
      await zmqServer.close();
      await wsServer.close();
    }
  });
});

const py = findPython(["websockets", "msgpack", "numpy"]);

describe("a Python openpi-style client sending camera images", () => {
  const policy = new RecordingImagePolicy([cameraFeature("front", 224, 224)]);
  let server: OpenpiPolicyServer;
  beforeAll(async () => {
    server = await OpenpiPolicyServer.start({
      policy,
      url: "ws://127.0.0.1:0",
      auth: { mode: "insecure" },
      keyMap: { "observation/state": "observation.state" },
      log: () => undefined,
    });
  });
  afterAll(async () => server.close());

  it.skipIf(!py)("gets a chunk for a uint8 (480, 640, 3) image and an error text frame for a float32 one", async () => {
    const script = `${OPENPI_MSGPACK_NUMPY}
import asyncio, json, sys, websockets
async def send(url, obs):
    async with websockets.connect(url, compression=None, max_size=None) as ws:
        meta = unpackb(await ws.recv())
        await ws.send(packb(obs))
        r = await ws.recv()
        return meta, r
async def main():
    url = sys.argv[1]
    img = (np.arange(480 * 640 * 3, dtype=np.int64) % 251).astype(np.uint8).reshape(480, 640, 3)
    meta, r = await send(url, {"observation/state": np.array([0.25, 0.0]), "observation/image": img,
                               "observation/wrist_image": img, "prompt": "pick"})
    if isinstance(r, str): raise RuntimeError(f"Error in inference server:\\n{r}")
    r = unpackb(r)
    _, err = await send(url, {"observation/state": np.array([0.25, 0.0]), "observation/image": img.astype(np.float32) / 255})
    print(json.dumps({"cameras": [[f["key"], list(f["shape"])] for f in meta["features"] if f["kind"] == "image"],
      "actions": r["actions"].ravel().tolist(), "error": err if isinstance(err, str) else None}))
asyncio.run(main())`;
    const before = policy.seen.length;
    const out = JSON.parse((await runPythonAsync(py!, script, [server.url])).toString()) as {
      cameras: Array<[string, number[]]>;
      actions: number[];
      error: string | null;
    };
    expect(out.cameras).toEqual([["observation.images.front", [224, 224, 3]]]);
    // the image the policy saw is the client's, resized with padding to 224x224
    const img = new Uint8Array(480 * 640 * 3).map((_, i) => i % 251);
    const want = resizeWithPad(img, 480, 640, 224, 224);
    expect(policy.seen.length).toBe(before + 1);
    expect(policy.seen[before]!["observation.images.front"]).toEqual(want);
    expect(out.actions[0]).toBe(want.reduce((s, v) => s + v, 0));
    expect(out.error).toMatch(
      /camera 'observation\/image' \(observation\.images\.front\) must be a uint8 array.*got dtype float32/,
    );
  });

  it.skipIf(py !== undefined)(pythonMissing(["websockets", "msgpack", "numpy"]), () => {
    expect(py).toBeUndefined();
  });
});
