import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { exportOnnx } from "../../../policy/onnx/export.ts";
import type { ChunkPolicy } from "../../../policy/chunk-policy.ts";
import { decodeModel, encodeModel, metadataOf } from "../../../policy/onnx/proto.ts";
import { OnnxPolicy } from "../../../policy/runtime/onnx-policy.ts";
import { TfjsOps } from "../../../policy/net/tfjs-ops.ts";
import { sampleChunkTfjs } from "../../../policy/sampling/tfjs.ts";
import { loadCheckpoint, normsFor } from "../../../policy/checkpoint/checkpoint.ts";
import { denormalize, normalize } from "../../../policy/normalize.ts";
import { Rng } from "../../../policy/random.ts";
import { maxAbsDiff } from "../onnx/helpers.ts";
import { RAW, randomObs, tinyModel, writeTinyCheckpoint } from "../onnx/fixture.ts";

const root = mkdtempSync(join(tmpdir(), "actionflow-runtime-"));
const run = join(root, "run");
const m = tinyModel("transformer");
const H = m.config.horizon;
const A = m.config.actionDim;
let policy: OnnxPolicy;
const obs = randomObs(1, 21);

beforeAll(async () => {
  await tf.setBackend("cpu");
  await writeTinyCheckpoint(run, m);
  await exportOnnx(run, { steps: 5, solver: "heun" });
  policy = await OnnxPolicy.load(run, { threads: 1 });
});
afterAll(async () => {
  await policy.release();
  rmSync(root, { recursive: true, force: true });
});

describe("OnnxPolicy", () => {
  it("loads a run folder's policy.onnx and reports its shape", () => {
    expect(policy.source).toBe(join(run, "policy.onnx"));
    expect([policy.horizon, policy.actionDim, policy.modelActionDim, policy.steps, policy.solver]).toEqual([
      H,
      RAW.action,
      A,
      5,
      "heun",
    ]);
    expect(policy.features.map((f) => f.key)).toEqual(["observation.state", "observation.embedding"]);
  });

  it("samples the same chunk as the tfjs reference from the checkpoint (same noise)", async () => {
    const noise = new Rng(4).normalArray(H * A);
    const chunk = await policy.sampleChunk(
      { "observation.state": obs.state!, "observation.embedding": obs.emb! },
      { noise },
    );
    expect(chunk).toBeInstanceOf(Float32Array);
    expect(chunk.length).toBe(H * RAW.action);
    const ckpt = await loadCheckpoint(run);
    const norms = normsFor(ckpt.normalization, ckpt.config);
    const pad = (x: Float32Array, d: number): Float32Array => {
      const rows = x.length / RAW[d === 6 ? "state" : "emb"];
      const raw = x.length / rows;
      const out = new Float32Array(rows * d);
      for (let r = 0; r < rows; r++) out.set(x.subarray(r * raw, (r + 1) * raw), r * d);
      return out;
    };
    const ops = new TfjsOps({ seed: 0, weights: ckpt.weights, mode: "frozen" });
    const ref = tf.tidy(() => {
      const o = {
        state: tf.tensor(normalize(pad(obs.state!, 6), norms.obs["state"]!), [1, 6]),
        emb: tf.tensor(normalize(pad(obs.emb!, 3), norms.obs["emb"]!), [1, 2, 3]),
      };
      return sampleChunkTfjs(m.head, ops, o, tf.tensor(noise, [1, H, A]), {
        steps: 5,
        solver: "heun",
      }).dataSync() as Float32Array;
    });
    ops.dispose();
    const raw = denormalize(ref, norms.action);
    const want = new Float32Array(H * RAW.action);
    for (let h = 0; h < H; h++) want.set(raw.subarray(h * A, h * A + RAW.action), h * RAW.action);
    expect(maxAbsDiff(chunk, want)).toBeLessThan(1e-4);
  });

  it("accepts model names and dataset keys; seeds make chunks reproducible", async () => {
    const a = await policy.sampleChunk({ state: obs.state!, emb: obs.emb! }, { seed: 3 });
    const b = await policy.sampleChunk(
      { "observation.state": obs.state!, emb: obs.emb!, ignored: new Float32Array(2) },
      { seed: 3 },
    );
    const c = await policy.sampleChunk({ state: obs.state!, emb: obs.emb! }, { seed: 4 });
    expect(Array.from(b)).toEqual(Array.from(a));
    expect(maxAbsDiff(a, c)).toBeGreaterThan(1e-3);
    const unseeded1 = await policy.sampleChunk({ state: obs.state!, emb: obs.emb! });
    const unseeded2 = await policy.sampleChunk({ state: obs.state!, emb: obs.emb! });
    expect(maxAbsDiff(unseeded1, unseeded2)).toBeGreaterThan(1e-3);
  });

  it("keeps a given action prefix and changes only what follows", async () => {
    const prefix = new Rng(8).normalArray(2 * RAW.action);
    const free = await policy.sampleChunk(obs, { seed: 1 });
    const kept = await policy.sampleChunk(obs, { seed: 1, prefix });
    expect(maxAbsDiff(kept.subarray(0, 2 * RAW.action), prefix)).toBeLessThan(1e-4);
    expect(maxAbsDiff(kept.subarray(2 * RAW.action), free.subarray(2 * RAW.action))).toBeGreaterThan(1e-4);
    const none = await policy.sampleChunk(obs, { seed: 1, prefix, prefixLen: 0 });
    expect(Array.from(none)).toEqual(Array.from(free));
  });

  it("rejects bad observations, noise and prefixes with errors naming the feature and index", async () => {
    await expect(policy.sampleChunk({ state: obs.state! })).rejects.toThrow(
      /'observation\.embedding' \(model name 'emb'\) is missing/,
    );
    await expect(policy.sampleChunk({ state: new Float32Array(3), emb: obs.emb! })).rejects.toThrow(
      /'observation\.state' has 3 values, expected 4/,
    );
    const nan = obs.state!.slice();
    nan[2] = Number.NaN;
    await expect(policy.sampleChunk({ state: nan, emb: obs.emb! })).rejects.toThrow(
      /'observation\.state' has a non-finite value NaN at index 2/,
    );
    const inf = obs.emb!.slice();
    inf[5] = Number.POSITIVE_INFINITY;
    await expect(policy.sampleChunk({ state: obs.state!, emb: inf })).rejects.toThrow(
      /'observation\.embedding' has a non-finite value Infinity at index 5/,
    );
    await expect(
      policy.sampleChunk({ state: obs.state!, "observation.state": obs.state!.slice(), emb: obs.emb! }),
    ).rejects.toThrow(/given twice/);
    await expect(policy.sampleChunk(obs, { noise: new Float32Array(3) })).rejects.toThrow(
      /noise has 3 values, expected 20/,
    );
    await expect(policy.sampleChunk(obs, { prefix: new Float32Array(4) })).rejects.toThrow(
      /not a whole number of 3-dim actions/,
    );
    await expect(policy.sampleChunk(obs, { prefixLen: 9 })).rejects.toThrow(/0\.\.4/);
  });

  it("serialises concurrent calls and gives each the chunk it would get alone", async () => {
    const seeds = [11, 12, 13, 14, 15, 16];
    const alone: Float32Array[] = [];
    for (const s of seeds) alone.push(await policy.sampleChunk(obs, { seed: s }));
    const together = await Promise.all(seeds.map((s) => policy.sampleChunk(obs, { seed: s })));
    together.forEach((c, i) => expect(Array.from(c)).toEqual(Array.from(alone[i]!)));
    // A failing call in the middle does not poison the queue.
    const mixed = await Promise.allSettled([
      policy.sampleChunk(obs, { seed: 11 }),
      policy.sampleChunk({}),
      policy.sampleChunk(obs, { seed: 12 }),
    ]);
    expect(mixed.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
  });

  it("is a ChunkPolicy whose reset(seed) restarts the noise stream, and warms up", async () => {
    await policy.warmup({ runs: 2 });
    const cp: ChunkPolicy = policy;
    expect([cp.horizon, cp.actionDim, cp.fps]).toEqual([H, RAW.action, undefined]);
    const episode = async (seed: number): Promise<Float32Array[]> => {
      cp.reset(seed);
      return [await cp.sampleChunk(obs), await cp.sampleChunk(obs), await cp.sampleChunk(obs)];
    };
    const first = await episode(5);
    await episode(6);
    const again = await episode(5);
    again.forEach((c, i) => expect(Array.from(c)).toEqual(Array.from(first[i]!)));
    expect(maxAbsDiff(first[0]!, first[1]!)).toBeGreaterThan(1e-3);
    // Per call, the seed is the k-th draw of new Rng(seed).fork(): the noise of sim eval's episodes.
    const seeds = new Rng(5).fork();
    for (const c of first) {
      const want = await policy.sampleChunk(obs, { seed: seeds.int(0x7fffffff) });
      expect(Array.from(c)).toEqual(Array.from(want));
    }
  });

  it("loads an .onnx file, exports a checkpoint in memory, and refuses a stale export", async () => {
    const file = join(root, "copy.onnx");
    copyFileSync(join(run, "policy.onnx"), file);
    const fromFile = await OnnxPolicy.load(file);
    expect(fromFile.source).toBe(file);
    await fromFile.release();
    await expect(fromFile.sampleChunk(obs)).rejects.toThrow(/released/);

    const bare = join(root, "bare");
    await writeTinyCheckpoint(bare, m);
    const mem = await OnnxPolicy.load(bare, { steps: 5, solver: "heun", threads: 1 });
    expect(mem.source).toMatch(/exported in memory/);
    const x = await mem.sampleChunk(obs, { seed: 2 });
    const y = await policy.sampleChunk(obs, { seed: 2 });
    expect(maxAbsDiff(x, y)).toBe(0);
    await mem.release();

    // A newer checkpoint with other weights makes the old policy.onnx stale.
    const w = new Map(m.weights);
    const first = [...w.keys()][0]!;
    w.set(first, { ...w.get(first)!, data: w.get(first)!.data.map((v) => v + 1) });
    await writeTinyCheckpoint(run, { ...m, weights: w }, 20);
    await expect(OnnxPolicy.load(run)).rejects.toThrow(/exported from other weights.*re-run 'actionflow export/);
    await expect(OnnxPolicy.load(join(run, "policy.velocity.onnx"))).rejects.toThrow(/not an actionflow sample graph/);
    await expect(OnnxPolicy.load(join(root, "missing"))).rejects.toThrow(/no such file or folder/);
  });

  it("refuses to return a non-finite chunk", async () => {
    const dir = join(root, "nan");
    const w = new Map(m.weights);
    w.set("action.out.bias", { shape: [A], data: new Float32Array(A).fill(Number.NaN) });
    await writeTinyCheckpoint(dir, { ...m, weights: w });
    const p = await OnnxPolicy.load(dir, { threads: 1 });
    await expect(p.sampleChunk(obs)).rejects.toThrow(/non-finite action NaN at step 0, dim 0; refusing/);
    await p.release();
  });
});

describe("OnnxPolicy metadata", () => {
  it("refuses an actionflow.features value that is not JSON or not features, naming the file, key and field", async () => {
    const bytes = new Uint8Array(readFileSync(join(run, "policy.onnx")));
    const withFeatures = (value: string): string => {
      const model = decodeModel(bytes);
      model.metadataProps = (model.metadataProps ?? []).map((e) =>
        e.key === "actionflow.features" ? { key: e.key, value } : e,
      );
      const file = join(root, `features-${value.length}.onnx`);
      writeFileSync(file, encodeModel(model));
      return file;
    };
    const features = JSON.parse(metadataOf(decodeModel(bytes))["actionflow.features"]!) as { shape: unknown[] }[];
    features[0]!.shape = ["6"];
    const bad = withFeatures(JSON.stringify(features));
    await expect(OnnxPolicy.load(bad)).rejects.toThrow(
      `${bad}: metadata 'actionflow.features': [0].shape[0]: expected number, got "6"`,
    );
    const broken = withFeatures('[{"name": "state"');
    await expect(OnnxPolicy.load(broken)).rejects.toThrow(
      new RegExp(`features-\\d+\\.onnx: metadata 'actionflow\\.features': not valid JSON`),
    );
  });
});

describe("OnnxPolicy execution providers", () => {
  // The file itself: an earlier test saved a newer checkpoint in the run, so the run folder is refused as stale.
  it("runs on the cpu provider named explicitly: the default's chunk", async () => {
    const cpu = await OnnxPolicy.load(policy.source, { threads: 1, executionProviders: ["cpu"] });
    try {
      const want = await policy.sampleChunk(obs, { seed: 5 });
      expect(maxAbsDiff(await cpu.sampleChunk(obs, { seed: 5 }), want)).toBe(0);
    } finally {
      await cpu.release();
    }
    await expect(OnnxPolicy.load(policy.source, { executionProviders: [] })).rejects.toThrow(
      "executionProviders is empty",
    );
  });

  it("cuda: the chunk where onnxruntime-node has its CUDA build, else an error naming the provider", async () => {
    const got = await OnnxPolicy.load(policy.source, { threads: 1, executionProviders: ["cuda"] }).then(
      (p) => p,
      (err: unknown) => err as Error,
    );
    if (got instanceof OnnxPolicy) {
      const chunk = await got.sampleChunk(obs, { seed: 5 });
      await got.release();
      expect(maxAbsDiff(chunk, await policy.sampleChunk(obs, { seed: 5 }))).toBeLessThan(1e-4);
    } else {
      expect(got.message).toContain(`${policy.source}: onnxruntime could not create a session`);
      expect(got.message).toContain("execution provider 'cuda'");
      expect(got.message).toContain("ONNXRUNTIME_NODE_INSTALL=cuda12");
      expect(got.message).toContain("--provider cpu");
    }
  });
});
