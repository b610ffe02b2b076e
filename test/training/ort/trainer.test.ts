import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { buildHead } from "../../../policy/net/network.ts";
import { featureSize } from "../../../policy/net/head.ts";
import type { HeadConfig } from "../../../policy/net/config.ts";
import { Rng } from "../../../policy/random.ts";
import { Trainer } from "../../../training/trainer.ts";
import { OrtTrainer, initialParams } from "../../../training/ort/trainer.ts";
import type { Batch } from "../../../training/batch.ts";
import { tinyConfig } from "../../policy/onnx/fixture.ts";

beforeAll(async () => {
  await tf.setBackend("cpu");
  await tf.ready();
});

const STEPS = 25;
const OPTIM = { lr: 3e-3, warmupSteps: 5, decaySteps: STEPS, clipNorm: 0.5 };

function fixedBatch(cfg: HeadConfig, size: number, seed: number): Batch {
  const rng = new Rng(seed);
  const { horizon: H, actionDim: A } = cfg;
  const obs: Record<string, Float32Array> = {};
  for (const f of cfg.obs) obs[f.name] = rng.normalArray(size * featureSize(f.shape));
  const isPad = new Uint8Array(size * H);
  isPad.fill(1, H - 1, H);
  return { size, obs, actions: rng.normalArray(size * H * A), isPad };
}

const CASES: { name: string; config: HeadConfig }[] = [
  { name: "transformer, flow", config: tinyConfig("transformer") },
  {
    name: "transformer, flow, prefix training (per-token t)",
    config: { ...tinyConfig("transformer"), rtcMaxDelay: 2 },
  },
  { name: "mlp, regression", config: tinyConfig("mlp", "regression") },
  { name: "transformer, meanflow", config: tinyConfig("transformer", "meanflow") },
  { name: "mlp, meanflow", config: tinyConfig("mlp", "meanflow") },
];

describe("OrtTrainer tracks the tfjs Trainer (same init, batch, noise, schedule)", () => {
  const open: OrtTrainer[] = [];
  afterAll(async () => {
    for (const t of open) await t.release();
  });
  for (const c of CASES) {
    it(`${c.name}: ${STEPS} steps, losses within 1e-5 relative, weights and EMA within 1e-4`, async () => {
      const head = buildHead(c.config);
      const batch = fixedBatch(c.config, 4, 5);
      const ref = new Trainer({ head, seed: 3, optim: OPTIM });
      const ortT = await OrtTrainer.create({ head, seed: 3, optim: OPTIM, threads: 1 });
      open.push(ortT);
      expect(ortT.parameterCount()).toBe(ref.parameterCount());
      const lossesRef: number[] = [];
      const lossesOrt: number[] = [];
      for (let s = 0; s < STEPS; s++) {
        const a = ref.trainStep(batch);
        const b = await ortT.trainStep(batch);
        lossesRef.push(a.loss);
        lossesOrt.push(b.loss);
        expect(b.lr).toBe(a.lr);
        expect(Math.abs(b.gradNorm - a.gradNorm) / a.gradNorm).toBeLessThan(1e-3);
      }
      let worstLoss = 0;
      for (let s = 0; s < STEPS; s++)
        worstLoss = Math.max(worstLoss, Math.abs(lossesOrt[s]! - lossesRef[s]!) / lossesRef[s]!);
      expect(worstLoss).toBeLessThan(1e-5);
      const a = ref.state();
      const b = ortT.state();
      // Training moved the weights by far more than the tolerance (so the comparison is not trivial).
      const init = initialParams(head, 3);
      let moved = 0;
      let size = 0;
      for (const [name, w] of a.params) {
        const w0 = init.get(name)!.data;
        for (let i = 0; i < w0.length; i++) {
          moved += (w.data[i]! - w0[i]!) ** 2;
          size += w0[i]! ** 2;
        }
      }
      expect(Math.sqrt(moved / size)).toBeGreaterThan(0.01);
      for (const k of ["params", "ema"] as const) {
        let num = 0;
        let den = 0;
        for (const [name, w] of a[k]) {
          const mine = b[k].get(name)!.data;
          for (let i = 0; i < mine.length; i++) {
            num += (mine[i]! - w.data[i]!) ** 2;
            den += w.data[i]! ** 2;
          }
        }
        expect(Math.sqrt(num / den), k).toBeLessThan(1e-4);
      }
      const evalRef = ref.evalLoss(batch);
      expect(Math.abs((await ortT.evalLoss(batch)) - evalRef) / evalRef).toBeLessThan(1e-3);
      console.log(
        `${c.name}: worst loss deviation ${worstLoss.toExponential(2)}; weights moved ${Math.sqrt(moved / size).toFixed(3)} relative`,
      );
      ref.dispose();
    });
  }
});

describe("OrtTrainer resume", () => {
  it("a run resumed from state() after 4 steps continues exactly as the uninterrupted run", async () => {
    const config = tinyConfig("mlp");
    const head = buildHead(config);
    const batch = fixedBatch(config, 3, 9);
    const whole = await OrtTrainer.create({ head, seed: 4, optim: OPTIM, threads: 1 });
    const first = await OrtTrainer.create({ head, seed: 4, optim: OPTIM, threads: 1 });
    try {
      const losses: number[] = [];
      for (let s = 0; s < 8; s++) losses.push((await whole.trainStep(batch)).loss);
      for (let s = 0; s < 4; s++) await first.trainStep(batch);
      const resumed = await OrtTrainer.create({
        head,
        seed: 4,
        optim: OPTIM,
        threads: 1,
        resume: { ...first.state(), step: first.step },
      });
      try {
        expect(resumed.step).toBe(4);
        for (let s = 4; s < 8; s++) expect((await resumed.trainStep(batch)).loss).toBe(losses[s]);
        const a = whole.state();
        const b = resumed.state();
        for (const [name, w] of a.ema) expect(b.ema.get(name)!.data).toEqual(w.data);
      } finally {
        await resumed.release();
      }
    } finally {
      await whole.release();
      await first.release();
    }
  });

  it("names the missing observation feature", async () => {
    const config = tinyConfig("mlp");
    const t = await OrtTrainer.create({ head: buildHead(config), seed: 1, threads: 1 });
    try {
      const batch = fixedBatch(config, 2, 1);
      delete batch.obs["emb"];
      await expect(t.trainStep(batch)).rejects.toThrow(/observation feature 'emb'/);
    } finally {
      await t.release();
    }
  });
});
