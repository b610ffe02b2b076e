import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { profileStep } from "../../bench/train.ts";
import { parseHeadConfig } from "../../policy/net/config.ts";
import { buildHead } from "../../policy/net/network.ts";
import { Rng } from "../../policy/random.ts";
import { useBackend } from "../../training/backend/registry.ts";
import { Trainer } from "../../training/trainer.ts";

beforeAll(async () => {
  await useBackend("wasm");
});

describe("bench train --profile", () => {
  it("times the kernels of one step, restores the engine and leaks nothing", () => {
    const config = parseHeadConfig({
      horizon: 4,
      actionDim: 3,
      obs: [{ name: "state", key: "observation.state", shape: [5] }],
      transformer: { width: 16, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 8 },
    });
    const trainer = new Trainer({ head: buildHead(config), seed: 0 });
    const rng = new Rng(1);
    const batch = {
      size: 2,
      obs: { state: rng.normalArray(10) },
      actions: rng.normalArray(24),
      isPad: new Uint8Array(8),
    };
    const runKernel = (tf.engine() as unknown as { runKernel: unknown }).runKernel;
    trainer.trainStep(batch);
    const before = tf.memory().numTensors;
    const p = profileStep(trainer, batch);
    expect(tf.memory().numTensors).toBe(before);
    expect((tf.engine() as unknown as { runKernel: unknown }).runKernel).toBe(runKernel);
    expect(trainer.step).toBe(2);
    expect(p.kernels["BatchMatMul"]!.calls).toBeGreaterThan(0);
    const ms = Object.values(p.kernels).map((k) => k.ms);
    expect(ms).toEqual([...ms].sort((a, b) => b - a));
    expect(p.kernelMs).toBeCloseTo(
      ms.reduce((a, b) => a + b, 0),
      6,
    );
    expect(p.kernelMs).toBeLessThanOrEqual(p.stepMs + 1e-6);
    trainer.dispose();
  });
});
