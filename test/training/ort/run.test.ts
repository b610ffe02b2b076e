/**
 * `trainRun` with `backend: "ort"`: a tiny run on the shared G1 dataset against the same run on
 * wasm (same seed), its checkpoints through `exportOnnx`, and a killed ort run resumed to the end
 * against a straight one.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadCheckpoint } from "../../../policy/checkpoint/checkpoint.ts";
import { exportOnnx } from "../../../policy/onnx/export.ts";
import { useBackend } from "../../../training/backend/registry.ts";
import type { TrainRunOptions } from "../../../training/run.ts";
import { trainRun } from "../../../training/run.ts";
import type { RunConfig } from "../../../training/run/settings.ts";
import { G1, removeDir, tempDir } from "../../datasets/lerobot/helpers.ts";

/** A tiny transformer so a run takes seconds. */
const TINY: RunConfig = { transformer: { width: 32, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 16 } };

let dir: string;
beforeAll(async () => {
  await useBackend("wasm");
  dir = await tempDir("ort-run");
});
afterAll(async () => {
  await removeDir(dir);
});

const g1 = (out: string, over: Partial<TrainRunOptions> = {}): TrainRunOptions => ({
  dataset: G1,
  out: join(dir, out),
  config: TINY,
  steps: 40,
  batch: 16,
  horizon: 8,
  valEpisodes: "8:10",
  checkpointEvery: 20,
  valEvery: 10,
  seed: 3,
  backend: "ort",
  ...over,
});

describe("trainRun --backend ort", () => {
  it("trains like the same run on wasm (validation loss within 0.1 % at every validation) and its checkpoint exports", async () => {
    const wasm = await trainRun(g1("wasm", { backend: "wasm", workers: 1 }));
    const ort = await trainRun(g1("ort"));
    expect(ort.backend).toBe("ort");
    expect(ort.steps).toBe(40);
    expect(ort.params).toBe(wasm.params);
    // Same initial weights, evaluated by two runtimes.
    expect(Math.abs(ort.valLossAtStart - wasm.valLossAtStart) / wasm.valLossAtStart).toBeLessThan(1e-4);
    // Seen: 1.6474 -> 1.5418 on both (the warmup is 100 steps), agreeing to ~1e-6 at every validation.
    expect(ort.valLoss).toBeLessThan(0.96 * ort.valLossAtStart);
    expect(Math.abs(ort.valLoss - wasm.valLoss) / wasm.valLoss).toBeLessThan(1e-3);
    expect(ort.valHistory.map((h) => h.step)).toEqual([0, 10, 20, 30, 40]);
    for (let i = 0; i < ort.valHistory.length; i++) {
      const a = ort.valHistory[i]!.valLoss;
      const b = wasm.valHistory[i]!.valLoss;
      expect(Math.abs(a - b) / b, `val loss at step ${ort.valHistory[i]!.step}`).toBeLessThan(1e-3);
    }
    const ck = await loadCheckpoint(join(dir, "ort"), { withOptimizer: "yes" });
    expect(ck.optimizer?.trainState.step).toBe(40);
    expect(ck.optimizer?.trainState["backend"]).toBe("ort");
    const ex = await exportOnnx(join(dir, "ort"));
    expect(ex.bytes).toBeGreaterThan(10_000);
    expect(ex.horizon).toBe(8);
    expect(ex.actionDim).toBe(26);
    expect(ex.modelActionDim).toBe(32);
  }, 300_000);

  it("refuses --workers other than 1", async () => {
    await expect(trainRun(g1("workers", { workers: 2 }))).rejects.toThrow(
      /--workers 2: gradient workers are tfjs only/,
    );
  });

  it("a run killed after its step-20 checkpoint and resumed ends bit-identical to a straight run", async () => {
    const straight = await trainRun(g1("straight"));
    await expect(
      trainRun({
        ...g1("killed"),
        onCheckpoint: (_d, step) => {
          if (step === 20) throw new Error("killed");
        },
      }),
    ).rejects.toThrow("killed");
    const resumed = await trainRun({ out: join(dir, "killed"), mode: "resume", backend: "ort" });
    expect(resumed.resumedFrom).toBe(20);
    expect(resumed.steps).toBe(40);
    expect(resumed.valLoss).toBe(straight.valLoss);
    expect(resumed.valHistory).toEqual(straight.valHistory);
    const a = await loadCheckpoint(join(dir, "straight"), { withOptimizer: "yes" });
    const b = await loadCheckpoint(join(dir, "killed"), { withOptimizer: "yes" });
    expect([...b.weights.keys()]).toEqual([...a.weights.keys()]);
    for (const [name, w] of a.weights) expect(b.weights.get(name)!.data, name).toEqual(w.data);
    for (const [name, m] of a.optimizer!.m) expect(b.optimizer!.m.get(name)!.data, name).toEqual(m.data);
  }, 300_000);

  it("resumes a wasm run's checkpoint on ort (the same state format) and ends within 1e-3 of the straight wasm run", async () => {
    const straight = await trainRun(g1("wasm-straight", { backend: "wasm", workers: 1 }));
    await expect(
      trainRun({
        ...g1("wasm-then-ort", { backend: "wasm", workers: 1 }),
        onCheckpoint: (_d, step) => {
          if (step === 20) throw new Error("killed");
        },
      }),
    ).rejects.toThrow("killed");
    const resumed = await trainRun({ out: join(dir, "wasm-then-ort"), mode: "resume", backend: "ort" });
    expect(resumed.backend).toBe("ort");
    expect(resumed.resumedFrom).toBe(20);
    expect(resumed.valHistory.map((h) => h.step)).toEqual([0, 10, 20, 30, 40]);
    expect(resumed.valHistory[2]!.valLoss).toBe(straight.valHistory[2]!.valLoss);
    expect(Math.abs(resumed.valLoss - straight.valLoss) / straight.valLoss).toBeLessThan(1e-3);
  }, 300_000);
});
