import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { OpenpiPolicyServer } from "../../../bridge/server/openpi-server.ts";
import { ZmqPolicyServer } from "../../../bridge/server/zmq-server.ts";
import { policyMetadata } from "../../../bridge/server/served-policy.ts";
import { ZmqChunkPolicy } from "../../../bridge/server/remote-policy.ts";
import { Rng } from "../../../policy/random.ts";
import { OnnxPolicy } from "../../../policy/runtime/onnx-policy.ts";
import { ThreadedPolicy } from "../../../policy/runtime/threaded.ts";
import { maxAbsDiff } from "../../policy/onnx/helpers.ts";
import { PROMPTS, writePromptRun } from "../../policy/runtime/prompt-fixture.ts";
import { OPENPI_MSGPACK_NUMPY, findPython, pythonMissing, runPythonAsync } from "../python.ts";

const root = mkdtempSync(join(tmpdir(), "actionflow-prompt-serve-"));
let served: ThreadedPolicy;
let direct: OnnxPolicy;
const STATE = [0.3, -1.2];
const N = 4 * 3;

beforeAll(async () => {
  await tf.setBackend("cpu");
  const run = await writePromptRun(join(root, "run"), "transformer");
  served = await ThreadedPolicy.start(run, { threads: 1 });
  direct = await OnnxPolicy.load(run, { threads: 1 });
});
afterAll(async () => {
  await served.close();
  await direct.release();
  rmSync(root, { recursive: true, force: true });
});

const want = (prompt: string, noise: Float32Array): Promise<Float32Array> =>
  direct.sampleChunk({ state: Float32Array.from(STATE) }, { noise, prompt });

it("the metadata lists the known prompts", () => {
  expect(policyMetadata(served).prompts).toEqual(PROMPTS);
});

const pyWs = findPython(["websockets", "msgpack", "numpy"]);
describe("openpi server, a Python client with openpi's client logic", () => {
  it.skipIf(!pyWs)(
    "follows the prompt in every observation; an unknown one gets an error naming the known ones and the server keeps serving",
    async () => {
      const server = await OpenpiPolicyServer.start({
        policy: served,
        url: "ws://127.0.0.1:0",
        auth: { mode: "insecure" },
        keyMap: { "observation/state": "observation.state" },
        log: () => undefined,
      });
      try {
        const script = `${OPENPI_MSGPACK_NUMPY}
import asyncio, json, sys, websockets
async def infer(ws, prompt):
    await ws.send(packb({"observation/state": np.array(json.loads(sys.argv[2])), "prompt": prompt}))
    r = await ws.recv()
    if isinstance(r, str): return r
    return unpackb(r)["actions"].ravel().tolist()
async def main():
    out = {}
    async with websockets.connect(sys.argv[1], compression=None, max_size=None) as ws:
        out["prompts"] = unpackb(await ws.recv())["prompts"]
        out["left"] = await infer(ws, "pass through the left gap")
        out["right"] = await infer(ws, "Pass through the RIGHT gap.")
        out["unknown"] = await infer(ws, "fly to the moon")
    async with websockets.connect(sys.argv[1], compression=None, max_size=None) as ws:
        await ws.recv()
        out["again"] = await infer(ws, "stay")
    print(json.dumps(out))
asyncio.run(main())`;
        served.reset(33);
        const out = JSON.parse(
          (await runPythonAsync(pyWs!, script, [server.url, JSON.stringify(STATE)])).toString(),
        ) as { prompts: string[]; left: number[]; right: number[]; unknown: string; again: number[] };
        const rng = new Rng(33);
        const [n1, n2, n3] = [rng.normalArray(N), rng.normalArray(N), rng.normalArray(N)];
        expect(out.prompts).toEqual(PROMPTS);
        expect(maxAbsDiff(Float32Array.from(out.left), await want(PROMPTS[0]!, n1))).toBeLessThan(1e-5);
        expect(maxAbsDiff(Float32Array.from(out.right), await want(PROMPTS[1]!, n2))).toBeLessThan(1e-5);
        expect(maxAbsDiff(Float32Array.from(out.left), Float32Array.from(out.right))).toBeGreaterThan(1e-3);
        expect(out.unknown).toMatch(
          /unknown prompt "fly to the moon": the policy knows "pass through the left gap", "pass through the right gap", "stay"/,
        );
        // The refused request drew no noise: the next connection's chunk takes the stream's third draw.
        expect(maxAbsDiff(Float32Array.from(out.again), await want(PROMPTS[2]!, n3))).toBeLessThan(1e-5);
      } finally {
        await server.close();
      }
    },
  );
  it.skipIf(pyWs !== undefined)(pythonMissing(["websockets", "msgpack", "numpy"]), () => {
    expect(pyWs).toBeUndefined();
  });
});

describe("the remote chunk policies", () => {
  it("list the served prompts and send the call's or the set prompt", async () => {
    const server = await ZmqPolicyServer.start({
      policy: served,
      endpoint: "tcp://127.0.0.1:0",
      auth: { mode: "insecure" },
      log: () => undefined,
    });
    const remote = await ZmqChunkPolicy.connect({ endpoint: server.endpoint });
    try {
      expect(remote.prompts).toEqual(PROMPTS);
      const state = Float32Array.from(STATE);
      const noise = new Rng(11).normalArray(N);
      const a = await remote.sampleChunk(
        { "observation.state": state },
        { seed: 11, prompt: "Pass through the right gap" },
      );
      expect(maxAbsDiff(a, await want(PROMPTS[1]!, noise))).toBeLessThan(1e-5);
      expect(() => remote.setPrompt("sing")).toThrow(/unknown prompt "sing"/);
      remote.setPrompt("stay");
      const b = await remote.sampleChunk({ "observation.state": state }, { seed: 11 });
      expect(maxAbsDiff(b, await want(PROMPTS[2]!, noise))).toBeLessThan(1e-5);
    } finally {
      await remote.close();
      await server.close();
    }
  });
});

const pyZmq = findPython(["zmq", "msgpack", "numpy"]);
describe("ZeroMQ server, a Python client", () => {
  it.skipIf(!pyZmq)(
    "reads the prompt from the obs dict, refuses an unknown one by name, and keeps serving",
    async () => {
      const server = await ZmqPolicyServer.start({
        policy: served,
        endpoint: "tcp://127.0.0.1:0",
        auth: { mode: "insecure" },
        keyMap: { "observation/state": "observation.state" },
        log: () => undefined,
      });
      try {
        const script = `${OPENPI_MSGPACK_NUMPY}
import sys, json, zmq
s = zmq.Context().socket(zmq.REQ)
s.setsockopt(zmq.RCVTIMEO, 20000)
s.connect(sys.argv[1])
def ask(m):
    s.send(packb(m))
    return unpackb(s.recv())
out = {"prompts": ask({"type": "metadata"})["metadata"]["prompts"]}
state = np.array(json.loads(sys.argv[2]))
r = ask({"type": "infer", "id": 1, "obs": {"observation/state": state, "prompt": "pass through the right gap"}, "seed": 11})
out["right"] = r["actions"].ravel().tolist()
r = ask({"type": "infer", "id": 2, "obs": {"observation/state": state, "prompt": "dance"}, "seed": 11})
out["unknown"] = {k: v for k, v in r.items() if k != "id"}
r = ask({"type": "infer", "id": 3, "obs": {"observation/state": state, "prompt": "stay"}, "seed": 11})
out["again"] = r["actions"].ravel().tolist()
print(json.dumps(out))`;
        const out = JSON.parse(
          (await runPythonAsync(pyZmq!, script, [server.endpoint, JSON.stringify(STATE)])).toString(),
        ) as { prompts: string[]; right: number[]; unknown: { type: string; message: string }; again: number[] };
        const noise = new Rng(11).normalArray(N);
        expect(out.prompts).toEqual(PROMPTS);
        expect(maxAbsDiff(Float32Array.from(out.right), await want(PROMPTS[1]!, noise))).toBeLessThan(1e-5);
        expect(out.unknown.type).toBe("error");
        expect(out.unknown.message).toMatch(/unknown prompt "dance": the policy knows "pass through the left gap"/);
        expect(maxAbsDiff(Float32Array.from(out.again), await want(PROMPTS[2]!, noise))).toBeLessThan(1e-5);
      } finally {
        await server.close();
      }
    },
  );
  it.skipIf(pyZmq !== undefined)(pythonMissing(["zmq", "msgpack", "numpy"]), () => {
    expect(pyZmq).toBeUndefined();
  });
});
