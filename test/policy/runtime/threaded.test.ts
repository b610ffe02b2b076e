import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { exportOnnx } from "../../../policy/onnx/export.ts";
import { OnnxPolicy } from "../../../policy/runtime/onnx-policy.ts";
import { PolicyBusyError, ThreadedPolicy } from "../../../policy/runtime/threaded.ts";
import { Rng } from "../../../policy/random.ts";
import { maxAbsDiff } from "../onnx/helpers.ts";
import { RAW, randomObs, tinyModel, writeTinyCheckpoint } from "../onnx/fixture.ts";

const root = mkdtempSync(join(tmpdir(), "actionflow-threaded-"));
const run = join(root, "run");
const m = tinyModel("transformer");
let direct: OnnxPolicy;
let threaded: ThreadedPolicy;

beforeAll(async () => {
  await tf.setBackend("cpu");
  await writeTinyCheckpoint(run, m);
  await exportOnnx(run, { steps: 4, solver: "euler" });
  direct = await OnnxPolicy.load(run, { threads: 1 });
  threaded = await ThreadedPolicy.start(run, { threads: 1, seed: 9 });
});
afterAll(async () => {
  await direct.release();
  await threaded.close();
  rmSync(root, { recursive: true, force: true });
});

const obsOf = (seed: number): Record<string, Float32Array> => randomObs(1, seed);

describe("OnnxPolicy.sampleBatch", () => {
  it("gives each item the chunk sampleChunk gives it, and errors only the bad items", async () => {
    const items = [1, 2, 3].map((s) => ({ observation: obsOf(s), options: { seed: 100 + s } }));
    const bad = { observation: { state: new Float32Array(2), emb: obsOf(4).emb! } };
    const out = await direct.sampleBatch([items[0]!, bad, items[1]!, items[2]!]);
    expect(out[1]).toBeInstanceOf(Error);
    expect((out[1] as Error).message).toMatch(/'observation\.state' has 2 values, expected 4/);
    for (const [k, i] of [
      [0, 0],
      [2, 1],
      [3, 2],
    ] as const) {
      const alone = await direct.sampleChunk(items[i]!.observation, items[i]!.options);
      const got = out[k] as Float32Array;
      expect(got.length).toBe(4 * RAW.action);
      expect(maxAbsDiff(got, alone)).toBeLessThan(1e-5);
    }
  });
});

describe("ThreadedPolicy", () => {
  it("describes the loaded policy", () => {
    expect([threaded.horizon, threaded.actionDim, threaded.modelActionDim, threaded.steps, threaded.solver]).toEqual([
      4,
      RAW.action,
      5,
      4,
      "euler",
    ]);
    expect(threaded.features.map((f) => f.key)).toEqual(["observation.state", "observation.embedding"]);
  });

  it("batches concurrent requests and answers each with its own chunk", async () => {
    const before = threaded.stats();
    const seeds = Array.from({ length: 24 }, (_, i) => 200 + i);
    const got = await Promise.all(seeds.map((s) => threaded.sampleChunkTimed(obsOf(s), { seed: s })));
    const after = threaded.stats();
    expect(after.requests - before.requests).toBe(24);
    expect(after.batches - before.batches).toBeLessThan(24);
    expect(after.largestBatch).toBeGreaterThan(1);
    expect(Math.max(...got.map((g) => g.batch))).toBeGreaterThan(1);
    for (let i = 0; i < seeds.length; i++) {
      const alone = await direct.sampleChunk(obsOf(seeds[i]!), { seed: seeds[i]! });
      expect(maxAbsDiff(got[i]!.actions, alone)).toBeLessThan(1e-5);
      expect(got[i]!.inferMs).toBeGreaterThan(0);
      expect(got[i]!.totalMs).toBeGreaterThanOrEqual(got[i]!.inferMs * 0.5);
    }
  });

  it("uses given noise, prefixes, and its own seeded stream restarted by reset", async () => {
    const noise = new Rng(3).normalArray(4 * 5);
    const a = await threaded.sampleChunk(obsOf(1), { noise });
    const b = await direct.sampleChunk(obsOf(1), { noise });
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-5);
    const prefix = new Rng(8).normalArray(2 * RAW.action);
    const kept = await threaded.sampleChunk(obsOf(1), { seed: 1, prefix });
    expect(maxAbsDiff(kept.subarray(0, 2 * RAW.action), prefix)).toBeLessThan(1e-4);
    threaded.reset(5);
    const r1 = await threaded.sampleChunk(obsOf(2));
    const r2 = await threaded.sampleChunk(obsOf(2));
    threaded.reset(5);
    const r3 = await threaded.sampleChunk(obsOf(2));
    expect(Array.from(r3)).toEqual(Array.from(r1));
    expect(maxAbsDiff(r1, r2)).toBeGreaterThan(1e-3);
  });

  it("rejects a bad request alone; the others in its batch are answered", async () => {
    const nan = obsOf(1);
    nan["state"]![1] = Number.NaN;
    const res = await Promise.allSettled([
      threaded.sampleChunk(obsOf(1), { seed: 1 }),
      threaded.sampleChunk(nan, { seed: 1 }),
      threaded.sampleChunk({ state: obsOf(1).state! }, { seed: 1 }),
      threaded.sampleChunk(obsOf(1), { seed: 1 }),
      threaded.sampleChunk(obsOf(1), { noise: new Float32Array(3) }),
    ]);
    expect(res.map((r) => r.status)).toEqual(["fulfilled", "rejected", "rejected", "fulfilled", "rejected"]);
    expect(String((res[1] as PromiseRejectedResult).reason)).toMatch(/non-finite value NaN at index 1/);
    expect(String((res[2] as PromiseRejectedResult).reason)).toMatch(/'observation\.embedding'.*missing/);
    expect(String((res[4] as PromiseRejectedResult).reason)).toMatch(/noise has 3 values, expected 20/);
  });

  it("spreads the queue over several workers, each answer still the right chunk", async () => {
    const two = await ThreadedPolicy.start(run, { threads: 1, workers: 2, maxBatch: 4 });
    try {
      const seeds = Array.from({ length: 20 }, (_, i) => 300 + i);
      const got = await Promise.all(seeds.map((s) => two.sampleChunk(obsOf(s), { seed: s })));
      for (let i = 0; i < seeds.length; i++) {
        const alone = await direct.sampleChunk(obsOf(seeds[i]!), { seed: seeds[i]! });
        expect(maxAbsDiff(got[i]!, alone)).toBeLessThan(1e-5);
      }
      // 20 requests, at most 4 per run: at least 5 runs, fewer than 20 (batched).
      expect(two.stats().batches).toBeGreaterThanOrEqual(5);
      expect(two.stats().batches).toBeLessThan(20);
      expect(two.stats().largestBatch).toBeLessThanOrEqual(4);
    } finally {
      await two.close();
    }
    await expect(ThreadedPolicy.start(run, { workers: 0 })).rejects.toThrow(/workers must be an integer >= 1/);
  });

  it("loads on the execution provider asked for; a missing cuda provider fails start naming it", async () => {
    const cpu = await ThreadedPolicy.start(run, { threads: 1, executionProviders: ["cpu"] });
    try {
      expect((await cpu.sampleChunk(obsOf(1), { seed: 3 })).length).toBe(threaded.horizon * threaded.actionDim);
    } finally {
      await cpu.close();
    }
    const cuda = await ThreadedPolicy.start(run, { threads: 1, executionProviders: ["cuda"] }).then(
      (p) => p,
      (err: unknown) => err as Error,
    );
    if (cuda instanceof ThreadedPolicy) {
      const chunk = await cuda.sampleChunk(obsOf(1), { seed: 3 });
      await cuda.close();
      expect(chunk.length).toBe(threaded.horizon * threaded.actionDim);
    } else expect(cuda.message).toMatch(/^inference worker: .*execution provider 'cuda'.*--provider cpu/);
  });

  it("answers busy past maxQueue instead of queueing without bound", async () => {
    const small = await ThreadedPolicy.start(run, { threads: 1, maxQueue: 3, maxBatch: 2 });
    try {
      const res = await Promise.allSettled(
        Array.from({ length: 12 }, (_, i) => small.sampleChunk(obsOf(i), { seed: i })),
      );
      const busy = res.filter((r) => r.status === "rejected");
      expect(busy.length).toBeGreaterThan(0);
      for (const r of busy) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(PolicyBusyError);
      expect(res.filter((r) => r.status === "fulfilled").length).toBe(12 - busy.length);
      expect(small.stats().busy).toBe(busy.length);
      expect(small.stats().largestBatch).toBeLessThanOrEqual(2);
    } finally {
      await small.close();
    }
    await expect(small.sampleChunk(obsOf(1))).rejects.toThrow(/closed/);
    await expect(ThreadedPolicy.start(join(root, "missing"))).rejects.toThrow(/no such file or folder/);
  });
});
