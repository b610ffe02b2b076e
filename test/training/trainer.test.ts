import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadCheckpoint, saveCheckpoint } from "../../policy/checkpoint/checkpoint.ts";
import { parseHeadConfig } from "../../policy/net/config.ts";
import type { HeadConfig } from "../../policy/net/config.ts";
import { buildHead } from "../../policy/net/network.ts";
import type { NamedArray } from "../../policy/net/tfjs-ops.ts";
import { Rng } from "../../policy/random.ts";
import { useBackend } from "../../training/backend/registry.ts";
import type { Batch, BatchSource } from "../../training/batch.ts";
import { fit } from "../../training/fit.ts";
import { Trainer, learningRate } from "../../training/trainer.ts";
import { DEFAULT_OPTIM } from "../../training/optim.ts";
import type { OptimConfig } from "../../training/optim.ts";

const H = 8;
const A = 4;
const S = 3;

function tinyConfig(over: Partial<Pick<HeadConfig, "arch" | "objective" | "rtcMaxDelay">> = {}): HeadConfig {
  return parseHeadConfig({
    horizon: H,
    actionDim: A,
    obs: [{ name: "state", key: "observation.state", shape: [S] }],
    transformer: { width: 32, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 16 },
    mlp: { width: 64, depth: 2, timeEmbedDim: 16 },
    ...over,
  });
}

/** A deterministic conditional target: the chunk is a smooth function of the state. */
function synthetic(): BatchSource {
  return {
    next(size: number, rng: Rng): Batch {
      const state = rng.normalArray(size * S);
      const actions = new Float32Array(size * H * A);
      for (let b = 0; b < size; b++) {
        for (let h = 0; h < H; h++) {
          for (let d = 0; d < A; d++) actions[(b * H + h) * A + d] = Math.sin(state[b * S + (d % S)]! + 0.3 * h);
        }
      }
      return { size, obs: { state }, actions, isPad: new Uint8Array(size * H) };
    },
  };
}

const fixed = synthetic().next(64, new Rng(99));
const OPTIM: Partial<OptimConfig> = { lr: 3e-3, warmupSteps: 5, decaySteps: 60 };

let dir: string;
beforeAll(async () => {
  await useBackend("wasm");
  dir = await mkdtemp(join(tmpdir(), "actionflow-trainer-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function losses(seed: number, steps: number): number[] {
  const trainer = new Trainer({ head: buildHead(tinyConfig()), seed, optim: OPTIM });
  const src = synthetic();
  const out: number[] = [];
  for (let s = 0; s < steps; s++) out.push(trainer.trainStep(src.next(16, new Rng(1000 + s))).loss);
  trainer.dispose();
  return out;
}

function sameArrays(a: Map<string, NamedArray>, b: Map<string, NamedArray>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w || w.data.length !== v.data.length) return false;
    for (let i = 0; i < v.data.length; i++) if (!Object.is(v.data[i], w.data[i])) return false;
  }
  return true;
}

describe("learningRate", () => {
  it("warms up linearly, then decays by a cosine to minLrRatio * lr", () => {
    const o: OptimConfig = { ...DEFAULT_OPTIM, lr: 1e-3, warmupSteps: 10, decaySteps: 110, minLrRatio: 0.1 };
    expect(learningRate(o, 0)).toBeCloseTo(1e-4, 12);
    expect(learningRate(o, 4)).toBeCloseTo(5e-4, 12);
    expect(learningRate(o, 9)).toBeCloseTo(1e-3, 12);
    expect(learningRate(o, 10)).toBeCloseTo(1e-3, 12);
    // Half-way through the decay: cosine term 0.5 -> 0.1 + 0.9 * 0.5 = 0.55.
    expect(learningRate(o, 60)).toBeCloseTo(0.55e-3, 12);
    expect(learningRate(o, 110)).toBeCloseTo(1e-4, 12);
    expect(learningRate(o, 500)).toBeCloseTo(1e-4, 12);
  });
});

describe("Trainer", () => {
  it("prefix training (rtcMaxDelay D): a clean prefix of 0..D steps at per-token time 1, left out of the loss", () => {
    const D = 3;
    const trainer = new Trainer({ head: buildHead(tinyConfig({ rtcMaxDelay: D })), seed: 1, optim: OPTIM });
    const batch = synthetic().next(64, new Rng(4));
    const x = trainer.prepare(batch, new Rng(8));
    expect(x.t.length).toBe(64 * H);
    const seen = new Set<number>();
    let withoutPrefix = 0;
    for (let b = 0; b < 64; b++) {
      let d = 0;
      while (d < H && x.isPad[b * H + d] === 1) d++;
      seen.add(d);
      if (d === 0) withoutPrefix++;
      expect(d).toBeLessThanOrEqual(D);
      for (let h = 0; h < H; h++) {
        const inPrefix = h < d;
        expect(x.isPad[b * H + h]).toBe(inPrefix ? 1 : 0);
        if (inPrefix) {
          expect(x.t[b * H + h]).toBe(1);
          for (let a = 0; a < A; a++) expect(x.xt[(b * H + h) * A + a]).toBe(batch.actions[(b * H + h) * A + a]);
        } else expect(x.t[b * H + h]).toBe(x.t[b * H + H - 1]);
      }
    }
    expect([...seen].sort()).toEqual([0, 1, 2, 3]);
    // about half the examples carry no prefix (d = 0 with probability 1/2), so the first chunk steps train too
    expect(withoutPrefix).toBeGreaterThan(0.3 * 64);
    expect(withoutPrefix).toBeLessThan(0.7 * 64);
    // The batch's own mask is not touched, and a step trains with per-token time.
    expect(batch.isPad.every((v) => v === 0)).toBe(true);
    expect(Number.isFinite(trainer.trainStep(batch).loss)).toBe(true);
    trainer.dispose();
    // Without prefix training the inputs keep one time per sample.
    const plain = new Trainer({ head: buildHead(tinyConfig()), seed: 1, optim: OPTIM });
    expect(plain.prepare(batch, new Rng(8)).t.length).toBe(64);
    plain.dispose();
    expect(() => tinyConfig({ rtcMaxDelay: H })).toThrow(/rtcMaxDelay: .*less than the horizon/);
    expect(() => tinyConfig({ rtcMaxDelay: 2, objective: "regression" })).toThrow(/needs the flow objective/);
  });

  it("leaks no tensors over 30 steps and evaluations", () => {
    const trainer = new Trainer({ head: buildHead(tinyConfig()), seed: 1, optim: OPTIM });
    const src = synthetic();
    trainer.trainStep(src.next(8, new Rng(0)));
    const before = tf.memory().numTensors;
    for (let s = 1; s <= 30; s++) {
      trainer.trainStep(src.next(8, new Rng(s)));
      if (s % 10 === 0) trainer.evalLoss(fixed);
    }
    trainer.state();
    expect(tf.memory().numTensors).toBe(before);
    trainer.dispose();
  });

  it("repeats exactly with the same seed and differs with another", () => {
    const a = losses(5, 6);
    const b = losses(5, 6);
    const c = losses(6, 6);
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
  });

  it("lowers the flow-matching loss on a learnable conditional target", () => {
    const trainer = new Trainer({ head: buildHead(tinyConfig()), seed: 2, optim: OPTIM });
    const src = synthetic();
    const start = trainer.evalLoss(fixed);
    for (let s = 0; s < 60; s++) trainer.trainStep(src.next(32, new Rng(s)));
    const end = trainer.evalLoss(fixed);
    trainer.dispose();
    expect(end).toBeLessThan(0.75 * start);
  });

  it("trains the regression objective (plain MSE on the chunk) for both architectures", () => {
    // The MLP sees the observation only through zero-initialised FiLM layers (and x = 0 under
    // regression), so it starts slower: it gets a larger learning rate and a looser bound.
    const cases = [
      { arch: "transformer", lr: 3e-3, ratio: 0.5 },
      { arch: "mlp", lr: 1e-2, ratio: 0.85 },
    ] as const;
    for (const { arch, lr, ratio } of cases) {
      const trainer = new Trainer({
        head: buildHead(tinyConfig({ arch, objective: "regression" })),
        seed: 3,
        optim: { ...OPTIM, lr },
      });
      const src = synthetic();
      const start = trainer.evalLoss(fixed);
      for (let s = 0; s < 60; s++) trainer.trainStep(src.next(32, new Rng(s)));
      const end = trainer.evalLoss(fixed);
      trainer.dispose();
      expect(end, arch).toBeLessThan(ratio * start);
    }
  });

  it("ignores padded steps in the loss", () => {
    const trainer = new Trainer({ head: buildHead(tinyConfig()), seed: 4, optim: OPTIM });
    const b = synthetic().next(4, new Rng(7));
    const isPad = new Uint8Array(4 * H);
    for (let i = 0; i < 4; i++) isPad.fill(1, i * H + H / 2, (i + 1) * H);
    const masked = { ...b, isPad };
    const garbage = { ...masked, actions: b.actions.map((x, i) => (Math.floor(i / A) % H >= H / 2 ? x + 100 : x)) };
    expect(trainer.evalLoss(garbage)).toBe(trainer.evalLoss(masked));
    trainer.dispose();
  });

  it("two halves resumed through a checkpoint end bit-identical to one straight run", async () => {
    const config = tinyConfig();
    const optim = { ...OPTIM, decaySteps: 20 };
    const norm = {
      key: "x",
      mode: "identity" as const,
      stats: { mean: [0, 0, 0], std: [1, 1, 1], min: [0, 0, 0], max: [0, 0, 0], count: 1 },
    };
    const normalization = {
      obs: { state: norm },
      action: {
        ...norm,
        key: "action",
        stats: { ...norm.stats, mean: [0, 0, 0, 0], std: [1, 1, 1, 1], min: [0, 0, 0, 0], max: [0, 0, 0, 0] },
      },
    };

    const straight = new Trainer({ head: buildHead(config), seed: 11, optim });
    await fit({ trainer: straight, source: synthetic(), steps: 20, batchSize: 8, seed: 11 });
    const want = straight.state();
    straight.dispose();

    const first = new Trainer({ head: buildHead(config), seed: 11, optim });
    const run = join(dir, "halves");
    await fit({
      trainer: first,
      source: synthetic(),
      steps: 10,
      batchSize: 8,
      seed: 11,
      checkpointEvery: 10,
      checkpoint: async () => {
        const st = first.state();
        await saveCheckpoint(run, first.step, {
          config,
          weights: st.ema,
          normalization,
          optimizer: { params: st.params, m: st.m, v: st.v, trainState: { step: first.step } },
        });
      },
    });
    first.dispose();

    const ckpt = await loadCheckpoint(run, { withOptimizer: "yes" });
    expect(ckpt.optimizer?.trainState.step).toBe(10);
    const opt = ckpt.optimizer!;
    const second = new Trainer({
      head: buildHead(ckpt.config),
      seed: 11,
      optim,
      resume: { params: opt.params, m: opt.m, v: opt.v, ema: ckpt.weights, step: opt.trainState.step },
    });
    await fit({ trainer: second, source: synthetic(), steps: 20, batchSize: 8, seed: 11 });
    const got = second.state();
    second.dispose();
    expect(sameArrays(got.params, want.params)).toBe(true);
    expect(sameArrays(got.ema, want.ema)).toBe(true);
    expect(sameArrays(got.m, want.m)).toBe(true);
    expect(sameArrays(got.v, want.v)).toBe(true);
  });
});
