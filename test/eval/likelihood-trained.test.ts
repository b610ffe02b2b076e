import * as tf from "@tensorflow/tfjs";
import { describe, expect, it } from "vitest";
import { flowLogLikelihood } from "../../eval/likelihood.ts";
import type { VelocityField } from "../../eval/likelihood.ts";
import { parseHeadConfig } from "../../policy/net/config.ts";
import { buildHead } from "../../policy/net/network.ts";
import { Rng } from "../../policy/random.ts";
import { useBackend } from "../../training/backend/registry.ts";
import type { BatchSource } from "../../training/batch.ts";
import { fit } from "../../training/fit.ts";
import { Trainer } from "../../training/trainer.ts";

/** A 2-D mixture of three isotropic Gaussians. */
const MIX = [
  { weight: 0.5, mean: [1.2, 0.8], std: 0.35 },
  { weight: 0.3, mean: [-1.0, -0.6], std: 0.45 },
  { weight: 0.2, mean: [-0.8, 1.3], std: 0.3 },
];

function drawMix(rng: Rng): [number, number] {
  let u = rng.uniform();
  for (const k of MIX) {
    if (u < k.weight || k === MIX[MIX.length - 1])
      return [k.mean[0]! + k.std * rng.normal(), k.mean[1]! + k.std * rng.normal()];
    u -= k.weight;
  }
  throw new Error("unreachable");
}

function logDensity(x: ArrayLike<number>): number {
  const logs = MIX.map(
    (k) =>
      Math.log(k.weight) -
      ((x[0]! - k.mean[0]!) ** 2 + (x[1]! - k.mean[1]!) ** 2) / (2 * k.std * k.std) -
      2 * Math.log(k.std) -
      Math.log(2 * Math.PI),
  );
  const m = Math.max(...logs);
  return m + Math.log(logs.reduce((a, l) => a + Math.exp(l - m), 0));
}

describe("flowLogLikelihood on a trained flow", () => {
  it("reports how close a flow trained on a Gaussian mixture got to its true log-density", async () => {
    await useBackend("wasm");
    // One action of dimension 2 conditioned on a constant observation, as the toy problems do.
    const config = parseHeadConfig({
      arch: "mlp",
      horizon: 1,
      actionDim: 2,
      obs: [{ name: "state", key: "state", shape: [1] }],
      mlp: { width: 128, depth: 3, timeEmbedDim: 16 },
    });
    const head = buildHead(config);
    const source: BatchSource = {
      next(size, rng) {
        const actions = new Float32Array(size * 2);
        for (let i = 0; i < size; i++) actions.set(drawMix(rng), 2 * i);
        return { size, obs: { state: new Float32Array(size) }, actions, isPad: new Uint8Array(size) };
      },
    };
    const steps = 800;
    const trainer = new Trainer({ head, seed: 0, optim: { decaySteps: steps }, timeSampler: { kind: "uniform" } });
    try {
      const velocity: VelocityField = (xs, t) => {
        const n = xs.length;
        const flat = new Float32Array(n * 2);
        xs.forEach((x, i) => flat.set(x, 2 * i));
        const v = tf.tidy(() => {
          const ctx = head.encode(trainer.emaOps, { state: tf.zeros([n, 1]) });
          return head.velocity(trainer.emaOps, ctx, tf.tensor(flat, [n, 1, 2]), tf.fill([n, 1], t)).dataSync();
        });
        return xs.map((_, i) => Float64Array.from(v.subarray(2 * i, 2 * i + 2)));
      };
      /** Mean and mean absolute gap (nats/dim) between the estimate and the truth over 24 draws. */
      const gaps = async (): Promise<{ mean: number; meanAbs: number }> => {
        const rng = new Rng(7);
        const g: number[] = [];
        for (let i = 0; i < 24; i++) {
          const x = Float64Array.from(drawMix(rng));
          const r = await flowLogLikelihood(velocity, x, { trace: "exact", steps: 24, fdStep: 1e-3 });
          g.push(r.perDim - logDensity(x) / 2);
        }
        return {
          mean: g.reduce((a, b) => a + b, 0) / g.length,
          meanAbs: g.reduce((a, b) => a + Math.abs(b), 0) / g.length,
        };
      };
      const before = await gaps();
      await fit({ trainer, source, steps, batchSize: 128, seed: 0 });
      const after = await gaps();
      console.info(
        `flow vs the mixture's true log-density over 24 draws (nats/dim): untrained mean |gap| ${before.meanAbs.toFixed(3)}; ` +
          `after ${steps} steps mean gap ${after.mean.toFixed(3)}, mean |gap| ${after.meanAbs.toFixed(3)}`,
      );
      expect(before.meanAbs).toBeGreaterThan(0.4);
      expect(after.meanAbs).toBeLessThan(0.1);
      // On average a model's likelihood of the data is below the truth (KL >= 0), up to noise.
      expect(after.mean).toBeLessThan(0.05);
    } finally {
      trainer.dispose();
    }
  }, 300_000);
});
