import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OpenpiPolicyServer } from "../../../bridge/server/openpi-server.ts";
import { ZmqPolicyServer } from "../../../bridge/server/zmq-server.ts";
import { policyMetadata } from "../../../bridge/server/served-policy.ts";
import { ZmqChunkPolicy } from "../../../bridge/server/remote-policy.ts";
import { Rng } from "../../../policy/random.ts";
import { OnnxPolicy } from "../../../policy/runtime/onnx-policy.ts";
import { ThreadedPolicy } from "../../../policy/runtime/threaded.ts";
import { maxAbsDiff } from "../../policy/onnx/helpers.ts";
import { TRAINED, writeEmbeddingRun } from "../../policy/runtime/text-prompt-fixture.ts";
import { OPENPI_MSGPACK_NUMPY, findPython, pythonMissing, runPythonAsync } from "../python.ts";

const root = mkdtempSync(join(tmpdir(), "actionflow-text-prompt-serve-"));
let served: ThreadedPolicy;
let direct: OnnxPolicy;
const STATE = [0.3, -1.2];
const N = 4 * 3;

beforeAll(async () => {
  const run = await writeEmbeddingRun(join(root, "run"), "encoder");
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

it("the metadata lists the trained prompts and says any prompt is taken", () => {
  expect(policyMetadata(served)).toMatchObject({ prompts: TRAINED, any_prompt: true });
});

const pyWs = findPython(["websockets", "msgpack", "numpy"]);
describe("openpi server with a text-encoder policy, a Python client with openpi's client logic", () => {
  it.skipIf(!pyWs)(
    "follows a paraphrase it was not trained on and a trained prompt, refuses an empty one, and keeps serving",
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
        meta = unpackb(await ws.recv())
        out["prompts"], out["any"] = meta["prompts"], meta["any_prompt"]
        out["paraphrase"] = await infer(ws, "take the right gap")
        out["trained"] = await infer(ws, "Pass through the left gap.")
        out["empty"] = await infer(ws, "   ")
    async with websockets.connect(sys.argv[1], compression=None, max_size=None) as ws:
        await ws.recv()
        out["again"] = await infer(ws, "go through the left gap")
    print(json.dumps(out))
asyncio.run(main())`;
        served.reset(33);
        const out = JSON.parse(
          (await runPythonAsync(pyWs!, script, [server.url, JSON.stringify(STATE)])).toString(),
        ) as {
          prompts: string[];
          any: boolean;
          paraphrase: number[];
          trained: number[];
          empty: string;
          again: number[];
        };
        const rng = new Rng(33);
        const [n1, n2, n3] = [rng.normalArray(N), rng.normalArray(N), rng.normalArray(N)];
        expect(out.prompts).toEqual(TRAINED);
        expect(out.any).toBe(true);
        expect(maxAbsDiff(Float32Array.from(out.paraphrase), await want("take the right gap", n1))).toBeLessThan(1e-5);
        expect(maxAbsDiff(Float32Array.from(out.trained), await want(TRAINED[0]!, n2))).toBeLessThan(1e-5);
        expect(out.empty).toMatch(/a prompt must not be empty/);
        // the refused request drew no noise: the next connection's chunk takes the stream's third draw
        expect(maxAbsDiff(Float32Array.from(out.again), await want("go through the left gap", n3))).toBeLessThan(1e-5);
      } finally {
        await server.close();
      }
    },
  );
  it.skipIf(pyWs !== undefined)(pythonMissing(["websockets", "msgpack", "numpy"]), () => {
    expect(pyWs).toBeUndefined();
  });
});

describe("a remote text-encoder policy over ZeroMQ", () => {
  it("takes any prompt, per call or set", async () => {
    const server = await ZmqPolicyServer.start({
      policy: served,
      endpoint: "tcp://127.0.0.1:0",
      auth: { mode: "insecure" },
      log: () => undefined,
    });
    const remote = await ZmqChunkPolicy.connect({ endpoint: server.endpoint });
    try {
      expect(remote.prompts).toEqual(TRAINED);
      expect(remote.anyPrompt).toBe(true);
      const state = Float32Array.from(STATE);
      const noise = new Rng(11).normalArray(N);
      const a = await remote.sampleChunk({ "observation.state": state }, { seed: 11, prompt: "take the left gap" });
      expect(maxAbsDiff(a, await want("take the left gap", noise))).toBeLessThan(1e-5);
      remote.setPrompt("go through the right gap");
      const b = await remote.sampleChunk({ "observation.state": state }, { seed: 11 });
      expect(maxAbsDiff(b, await want("go through the right gap", noise))).toBeLessThan(1e-5);
      expect(maxAbsDiff(a, b)).toBeGreaterThan(1e-4);
    } finally {
      await remote.close();
      await server.close();
    }
  });
});
