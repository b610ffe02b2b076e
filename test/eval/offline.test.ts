import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDataset } from "../../datasets/open.ts";
import { readEvalFrames } from "../../eval/frames.ts";
import { flowLogLikelihood } from "../../eval/likelihood.ts";
import { ChunkErrorAccumulator } from "../../eval/metrics.ts";
import { evaluateOffline, noiseSeed } from "../../eval/offline.ts";
import type { OfflineEvalResult } from "../../eval/offline.ts";
import { chunkVelocityField, loadVelocityGraph, normalizePadded } from "../../eval/velocity.ts";
import { loadCheckpoint, normsFor } from "../../policy/checkpoint/checkpoint.ts";
import { exportOnnx } from "../../policy/onnx/export.ts";
import { OnnxPolicy } from "../../policy/runtime/onnx-policy.ts";
import { useBackend } from "../../training/backend/registry.ts";
import { trainRun } from "../../training/run.ts";
import type { RunConfig } from "../../training/run/settings.ts";
import { G1, removeDir, tempDir } from "../datasets/lerobot/helpers.ts";

/** `actual` equals `expected` to a relative `rel` (float32 chunks summed in another order). */
function near(actual: number, expected: number, what: string, rel = 1e-9): void {
  expect(Math.abs(actual - expected), `${what}: ${actual} vs ${expected}`).toBeLessThanOrEqual(
    rel * Math.abs(expected),
  );
}

const TINY: RunConfig = { transformer: { width: 32, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 16 } };
const H = 8;
const STRIDE = 60;

let dir: string;
let flow: string;
let regression: string;
let result: OfflineEvalResult;

beforeAll(async () => {
  dir = await tempDir("eval-offline");
  await useBackend("wasm");
  flow = join(dir, "flow");
  regression = join(dir, "regression");
  for (const [out, objective] of [
    [flow, "flow"],
    [regression, "regression"],
  ] as const) {
    await trainRun({
      dataset: G1,
      out,
      config: TINY,
      steps: 40,
      batch: 16,
      horizon: H,
      valEpisodes: "8:10",
      objective,
      backend: "wasm",
      seed: 1,
      workers: 1,
    });
    await exportOnnx(out);
  }
  result = await evaluateOffline({
    policy: flow,
    dataset: G1,
    episodes: [8, 9],
    stride: STRIDE,
    samples: 3,
    seed: 5,
    sweep: { solvers: ["euler", "rk4"], steps: [1, 4] },
    likelihood: { frames: 2, probes: 4, odeSteps: 4 },
    baseline: regression,
  });
}, 240_000);

afterAll(async () => {
  await removeDir(dir);
});

describe("evaluateOffline on a tiny G1 run", () => {
  it("reads every stride-th frame of the held-out episodes, chunks padded by holding the last action", async () => {
    const opened = await openDataset(G1);
    try {
      const lengths = [8, 9].map((i) => opened.dataset.episodes.find((e) => e.index === i)!.length);
      expect(result.frames).toBe(lengths.reduce((a, L) => a + Math.ceil(L / STRIDE), 0));
      const { frames, actionDim } = await readEvalFrames({
        dataset: opened.dataset,
        episodes: [9],
        stride: STRIDE,
        horizon: H,
        action: "action",
        obs: [{ key: "observation.state", size: 26 }],
      });
      const last = frames[frames.length - 1]!;
      expect(last.frame).toBe(STRIDE * (Math.ceil(lengths[1]! / STRIDE) - 1));
      expect(last.padded).toBe(Math.max(0, last.frame + H - lengths[1]!));
      const ep = await opened.dataset.readEpisode(9, ["action"]);
      const actions = ep["action"] as Float32Array;
      const L = lengths[1]!;
      for (let h = 0; h < H; h++) {
        const src = Math.min(last.frame + h, L - 1);
        expect(Array.from(last.chunk.subarray(h * actionDim, (h + 1) * actionDim))).toEqual(
          Array.from(actions.subarray(src * actionDim, (src + 1) * actionDim)),
        );
      }
    } finally {
      opened.dataset.close();
    }
  });

  it("reports the flow policy's figures: best-of-K below the mean error, a spread, the sweep, the likelihood", () => {
    const m = result.metrics;
    expect(m.objective).toBe("flow");
    expect(m.perStepMse).toHaveLength(H);
    expect(m.perJointMse).toHaveLength(26);
    const meanPerStep = m.perStepMse.reduce((a, b) => a + b, 0) / H;
    expect(meanPerStep).toBeCloseTo(m.mse, 10);
    expect(m.bestOfK.k).toBe(3);
    expect(m.bestOfK.mse).toBeLessThan(m.mse);
    expect(m.spread).toBeGreaterThan(0);
    expect(m.l1 * m.l1).toBeLessThanOrEqual(m.mse);
    expect(m.valLoss).toBeGreaterThan(0);
    expect(m.sweep.map((p) => [p.solver, p.steps, p.nfe])).toEqual([
      ["euler", 1, 1],
      ["euler", 4, 4],
      ["rk4", 1, 4],
      ["rk4", 4, 16],
    ]);
    for (const p of m.sweep) expect(p.mse).toBeGreaterThan(0);
    const ll = m.likelihood!;
    expect(ll.method).toBe("hutchinson");
    expect(ll.dims).toBe(H * 26);
    expect(Number.isFinite(ll.perDim)).toBe(true);
    expect(ll.stdErr).toBeGreaterThan(0);
    expect(result.examples).toHaveLength(3);
    expect(result.examples[0]!.samples).toHaveLength(3);
    expect(result.examples[0]!.baseline).toHaveLength(H);
  });

  it("the regression baseline is deterministic and its loss matches its sample-graph error in normalised units", async () => {
    const b = result.baseline!;
    expect(b.objective).toBe("regression");
    expect(b.spread).toBe(0);
    expect(b.bestOfK.k).toBe(1);
    expect(b.bestOfK.mse).toBeCloseTo(b.mse, 12);
    expect(b.likelihood).toBeNull();
    expect(b.sweep).toEqual([]);
    // The velocity graph's loss covers the model's 32 dims, the sample graph's error the 26 raw ones:
    // the raw dims' part of the loss is the per-joint MSE rescaled by the normalisation, computed
    // through the other graph and the other units.
    const ckpt = await loadCheckpoint(regression);
    const scale = normsFor(ckpt.normalization, ckpt.config).action.scale;
    const rawPart = b.perJointMse.reduce((a, e, j) => a + e * scale[j]! ** 2, 0) / ckpt.config.actionDim;
    expect(rawPart).toBeLessThanOrEqual(b.valLoss * (1 + 1e-5));
    // The padded dims' outputs are (near) zero, so the two agree closely.
    expect(rawPart).toBeGreaterThan(0.99 * b.valLoss);
  });

  it("the errors match chunks sampled here with the same seeds and scored by hand", async () => {
    const opened = await openDataset(G1);
    const { frames, actionDim: A } = await readEvalFrames({
      dataset: opened.dataset,
      episodes: [8, 9],
      stride: STRIDE,
      horizon: H,
      action: "action",
      obs: [{ key: "observation.state", size: 26 }],
    }).finally(() => opened.dataset.close());
    expect(frames).toHaveLength(result.frames);
    for (const [run, K, m] of [
      [flow, 3, result.metrics],
      [regression, 1, result.baseline!],
    ] as const) {
      const policy = await OnnxPolicy.load(run, { threads: 1 });
      let sq = 0;
      let abs = 0;
      let firstAbs = 0;
      let best = 0;
      const stepSq = new Array<number>(H).fill(0);
      try {
        for (const [f, fr] of frames.entries()) {
          let frameBest = Infinity;
          for (let k = 0; k < K; k++) {
            const c = await policy.sampleChunk(fr.obs, { seed: noiseSeed(5, f, k) });
            let chunkSq = 0;
            for (let h = 0; h < H; h++)
              for (let j = 0; j < A; j++) {
                const e = c[h * A + j]! - fr.chunk[h * A + j]!;
                chunkSq += e * e;
                stepSq[h]! += e * e;
                abs += Math.abs(e);
                if (h === 0) firstAbs += Math.abs(e);
              }
            sq += chunkSq;
            frameBest = Math.min(frameBest, chunkSq / (H * A));
          }
          best += frameBest;
        }
      } finally {
        await policy.release();
      }
      const n = frames.length * K;
      near(m.mse, sq / (n * H * A), `${run} mse`);
      near(m.l1, abs / (n * H * A), `${run} l1`);
      near(m.firstActionL1, firstAbs / (n * A), `${run} first-action l1`);
      near(m.bestOfK.mse, best / frames.length, `${run} best-of-${K}`);
      for (let h = 0; h < H; h++) near(m.perStepMse[h]!, stepSq[h]! / (n * A), `${run} step ${h} mse`);
    }
  });

  it("the exact trace and Hutchinson's estimator agree on the exported velocity graph", async () => {
    const ckpt = await loadCheckpoint(flow);
    const graph = await loadVelocityGraph(ckpt, flow);
    try {
      expect(graph.source).toBe(join(flow, "policy.velocity.onnx"));
      const opened = await openDataset(G1);
      const { frames } = await readEvalFrames({
        dataset: opened.dataset,
        episodes: [8],
        stride: 1000,
        horizon: H,
        action: "action",
        obs: [{ key: "observation.state", size: 26 }],
      }).finally(() => opened.dataset.close());
      const norms = normsFor(ckpt.normalization, ckpt.config);
      const fr = frames[0]!;
      const obs = { state: normalizePadded(fr.obs["observation.state"]!, norms.obs["state"]!, 26) };
      const y = normalizePadded(fr.chunk, norms.action, 26);
      const x1 = new Float64Array(H * 26);
      for (let h = 0; h < H; h++) for (let j = 0; j < 26; j++) x1[h * 26 + j] = y[h * 32 + j]!;
      const v = chunkVelocityField(graph, obs, 26);
      const exact = await flowLogLikelihood(v, x1, { trace: "exact", steps: 4 });
      const hutch = await flowLogLikelihood(v, x1, { trace: "hutchinson", probes: 16, steps: 4, seed: 3 });
      expect(exact.method).toBe("exact");
      expect(Math.abs(exact.logLikelihood - hutch.logLikelihood)).toBeLessThan(4 * hutch.stdErr);
      expect(hutch.stdErr / (H * 26)).toBeLessThan(0.05);
    } finally {
      await graph.release();
    }
  }, 120_000);

  it("`actionflow eval offline --json` prints the figures as the last stdout line", () => {
    const r = spawnSync(
      "npx",
      [
        "tsx",
        "cli/main.ts",
        "eval",
        "offline",
        "--policy",
        flow,
        "--dataset",
        G1,
        "--episodes",
        "8:10",
        "--stride",
        "120",
        "--samples",
        "2",
        "--solvers",
        "euler",
        "--sweep-steps",
        "1,2",
        "--ll-frames",
        "1",
        "--probes",
        "2",
        "--ode-steps",
        "2",
        "--json",
      ],
      { encoding: "utf8", timeout: 120_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, unknown>;
    for (const k of [
      "valLoss",
      "mse",
      "l1",
      "firstActionL1",
      "bestOfK",
      "perStepMse",
      "sweep",
      "logLikelihoodPerDim",
      "frames",
    ])
      expect(out, k).toHaveProperty(k);
    expect(out["bestOfK"]).toMatchObject({ k: 2 });
    expect((out["sweep"] as { solver: string; steps: number }[]).map((p) => `${p.solver}-${p.steps}`)).toEqual([
      "euler-1",
      "euler-2",
    ]);
    expect((out["perStepMse"] as number[]).length).toBe(H);
    const bad = spawnSync(
      "npx",
      ["tsx", "cli/main.ts", "eval", "offline", "--policy", flow, "--dataset", G1, "--episodes", "10:8"],
      { encoding: "utf8", timeout: 60_000 },
    );
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain("--episodes: expected an episode range a:b with a < b (e.g. 8:10), got '10:8'");
  }, 200_000);
});

describe("ChunkErrorAccumulator", () => {
  it("scores a hand-worked example: 2 frames, 2 samples, 2 steps, 1 dim", () => {
    const acc = new ChunkErrorAccumulator(2, 1);
    const f32 = (...v: number[]): Float32Array => Float32Array.from(v);
    // errors: frame 1 [0, 2] and [2, 0]; frame 2 [1, 1] and [-1, 3]
    acc.add([f32(1, 4), f32(3, 2)], f32(1, 2));
    acc.add([f32(1, 1), f32(-1, 3)], f32(0, 0));
    const r = acc.result();
    expect(r.mse).toBe(20 / 8); // squares 0 4 4 0 1 1 1 9
    expect(r.l1).toBe(10 / 8);
    expect(r.firstActionL1).toBe(4 / 4); // |0| |2| |1| |-1|
    expect(r.bestOfK).toEqual({ k: 2, mse: (2 + 1) / 2 }); // frame 1: min(2, 2); frame 2: min(1, 5)
    expect(r.perStepMse).toEqual([6 / 4, 14 / 4]);
    expect(r.perJointMse).toEqual([20 / 8]);
    expect(r.perJointL1).toEqual([10 / 8]);
    expect(r.spread).toBeCloseTo(Math.SQRT2, 12); // each value's two samples differ by 2: variance 2
    expect(r.frames).toBe(2);
    expect(() => acc.add([f32(0, 0)], f32(0, 0))).toThrow("chunk errors: 1 samples, earlier frames had 2");
  });
});
