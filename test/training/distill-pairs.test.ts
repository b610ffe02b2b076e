/**
 * ReFlow pairs of a real (tiny) teacher on simulator demos: each pair's chunk is the teacher's ONNX
 * output on that noise and observation, the trainer's view of a pair (normalised, padded) is the
 * tfjs sampler's output on the same noise, and the cache round-trips and refuses other settings.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Checkpoint } from "../../policy/checkpoint/checkpoint.ts";
import { loadCheckpoint } from "../../policy/checkpoint/checkpoint.ts";
import { buildHead } from "../../policy/net/network.ts";
import { TfjsOps } from "../../policy/net/tfjs-ops.ts";
import { exportOnnx, weightsDigest } from "../../policy/onnx/export.ts";
import { OnnxPolicy } from "../../policy/runtime/onnx-policy.ts";
import { sampleChunkTfjs, tidyRead } from "../../policy/sampling/tfjs.ts";
import { Rng } from "../../policy/random.ts";
import { collect } from "../../sim/collect.ts";
import { openDataset } from "../../datasets/open.ts";
import type { EpisodeDataset } from "../../datasets/episodes.ts";
import { useBackend } from "../../training/backend/registry.ts";
import type { Pairs } from "../../training/distill/pairs.ts";
import { generatePairs, pairPositions, pairSource, readPairs, writePairs } from "../../training/distill/pairs.ts";
import { columnNorms } from "../../training/distill/reflow.ts";
import { readRunFile } from "../../training/run/run-file.ts";
import { trainRun } from "../../training/run.ts";
import type { WindowSource } from "../../training/windows.ts";
import { createWindowSource } from "../../training/windows.ts";

let dir: string;
let teacher: Checkpoint;
let sha: string;
let ds: EpisodeDataset;
let rawVal: WindowSource;
let normVal: WindowSource;
let pairs: Pairs;

beforeAll(async () => {
  await useBackend("wasm");
  dir = await mkdtemp(join(tmpdir(), "actionflow-reflow-pairs-"));
  const data = join(dir, "reach");
  await collect({ task: "reach", episodes: 10, seed: 0, out: data });
  const run = join(dir, "teacher");
  await trainRun({
    dataset: data,
    out: run,
    arch: "mlp",
    config: { mlp: { width: 64, depth: 2, timeEmbedDim: 16 } },
    steps: 40,
    batch: 16,
    horizon: 8,
    valEpisodes: "8:10",
    checkpointEvery: 40,
    backend: "wasm",
    workers: 1,
  });
  teacher = await loadCheckpoint(run);
  sha = await weightsDigest(teacher.dir);
  const rf = await readRunFile(run);
  ds = (await openDataset(data)).dataset;
  const norms = columnNorms(teacher.normalization);
  const identity = Object.fromEntries(
    Object.entries(norms).map(([k, n]) => [
      k,
      { scale: new Float32Array(n.scale.length).fill(1), offset: new Float32Array(n.scale.length) },
    ]),
  );
  const common = { dataset: ds, obs: rf.input.obs, action: rf.input.action, horizon: 8, episodes: rf.split.val };
  rawVal = await createWindowSource({ ...common, actionDim: 6, norms: identity });
  normVal = await createWindowSource({
    ...common,
    actionDim: teacher.config.actionDim,
    obsDims: Object.fromEntries(teacher.config.obs.map((f) => [f.name, f.shape.at(-1)!])),
    norms,
  });
  pairs = await generatePairs({
    teacher,
    teacherSha256: sha,
    teacherSteps: 6,
    teacherSolver: "rk4",
    rawTrain: rawVal,
    rawVal,
    pairs: 5,
    valPairs: 3,
    seed: 11,
    batch: 2,
  });
}, 240_000);

afterAll(async () => {
  ds?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("ReFlow pairs", () => {
  it("spreads positions evenly over the windows", () => {
    expect([...pairPositions(4, 10)]).toEqual([0, 2, 5, 7]);
    expect([...pairPositions(5, 2)]).toEqual([0, 0, 0, 1, 1]);
  });

  it("each chunk is the teacher's ONNX output (rk4, 6 steps) on the pair's noise and window", async () => {
    const H = 8;
    const Am = teacher.config.actionDim;
    expect(pairs.train.noise.length).toBe(5 * H * Am);
    expect(pairs.train.actions.length).toBe(5 * H * 6);
    expect([...pairs.train.positions]).toEqual([...pairPositions(5, rawVal.frames)]);
    // Fresh noise per pair: train and validation draws differ.
    expect(pairs.val.noise.subarray(0, 10)).not.toEqual(pairs.train.noise.subarray(0, 10));
    const out = await exportOnnx(teacher.dir, { steps: 6, solver: "rk4", out: join(dir, "t6.onnx") });
    const policy = await OnnxPolicy.load(out.onnx);
    try {
      for (let i = 0; i < 5; i++) {
        const w = rawVal.batchAt([pairs.train.positions[i]!]);
        const chunk = await policy.sampleChunk(
          { state: w.obs["state"]!, env: w.obs["env"]! },
          { noise: pairs.train.noise.slice(i * H * Am, (i + 1) * H * Am) },
        );
        const mine = pairs.train.actions.subarray(i * H * 6, (i + 1) * H * 6);
        let err = 0;
        for (let k = 0; k < chunk.length; k++) err = Math.max(err, Math.abs(chunk[k]! - mine[k]!));
        expect(err, `pair ${i}`).toBeLessThan(1e-5);
      }
    } finally {
      await policy.release();
    }
  });

  it("a batch carries the pair's noise and chunk in the trainer's space: the tfjs sampler maps one to the other", () => {
    const H = 8;
    const Am = teacher.config.actionDim;
    const src = pairSource({
      set: pairs.train,
      windows: normVal,
      actionNorm: columnNorms(teacher.normalization)["action"]!,
      horizon: H,
      actionDim: 6,
      modelActionDim: Am,
    });
    const [b] = [...src.epoch!(5)];
    expect(b!.size).toBe(5);
    expect(b!.noise).toEqual(pairs.train.noise);
    expect(b!.isPad.every((x) => x === 0)).toBe(true);
    const head = buildHead(teacher.config);
    const ops = new TfjsOps({ seed: 0, weights: teacher.weights, mode: "frozen" });
    try {
      const x1 = tidyRead(() => {
        const obs: Record<string, tf.Tensor> = {};
        for (const f of teacher.config.obs) obs[f.name] = tf.tensor(b!.obs[f.name]!, [5, ...f.shape]);
        return sampleChunkTfjs(head, ops, obs, tf.tensor(b!.noise!, [5, H, Am]), { steps: 6, solver: "rk4" });
      });
      // A dim constant in the data (the gripper) is normalised with spread 1e-6
      // (training/run/normalization.ts): its float32 rounding is magnified 1e6 times in the
      // trainer's space, so it is compared in action units, the others in the trainer's space.
      const { scale } = columnNorms(teacher.normalization)["action"]!;
      let err = 0;
      let constantErr = 0;
      let padded = 0;
      for (let k = 0; k < x1.length; k++) {
        const d = k % Am;
        const e = Math.abs(x1[k]! - b!.actions[k]!);
        if (d >= 6) padded = Math.max(padded, Math.abs(b!.actions[k]!));
        else if (scale[d]! > 1e5) constantErr = Math.max(constantErr, e / scale[d]!);
        else err = Math.max(err, e);
      }
      expect(err).toBeLessThan(1e-4);
      expect(constantErr).toBeLessThan(1e-8);
      expect(padded).toBe(0);
    } finally {
      ops.dispose();
    }
    // Draws are seeded.
    const r1 = src.next(4, new Rng(3));
    const r2 = src.next(4, new Rng(3));
    expect(r1.noise).toEqual(r2.noise);
    expect(r1.actions).toEqual(r2.actions);
  });

  it("the cache round-trips and refuses a cache made with other settings", async () => {
    const file = join(dir, "pairs.safetensors");
    expect(await readPairs(file, pairs.key)).toBeUndefined();
    await writePairs(file, pairs);
    const back = await readPairs(file, pairs.key);
    expect(back!.train.actions).toEqual(pairs.train.actions);
    expect(back!.val.noise).toEqual(pairs.val.noise);
    expect([...back!.val.positions]).toEqual([...pairs.val.positions]);
    await expect(readPairs(file, { ...pairs.key, teacherSteps: 20, seed: 1 })).rejects.toThrow(
      /pairs\.safetensors: the pair cache was made with other settings \(teacherSteps: cache 6, wanted 20; seed: cache 11, wanted 1\)/,
    );
  });
});
