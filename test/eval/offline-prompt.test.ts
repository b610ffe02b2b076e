import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LeRobotWriter } from "../../datasets/lerobot/writer.ts";
import { evaluateOffline } from "../../eval/offline.ts";
import { Rng } from "../../policy/random.ts";
import { trainRun, type TrainRunOptions } from "../../training/run.ts";
import { removeDir, tempDir } from "../datasets/lerobot/helpers.ts";
import { writeTextEncoder } from "../policy/text/fixture.ts";

const TASKS = ["go up", "go down"];
let dir: string;
let dataset: string;

/** Episodes whose states look alike and whose actions are +1 (go up) or -1 (go down) in every dim. */
async function writeDataset(out: string): Promise<void> {
  const w = await LeRobotWriter.create(out, {
    fps: 10,
    features: {
      "observation.state": { dtype: "float32", shape: [2] },
      action: { dtype: "float32", shape: [2] },
    },
  });
  const rng = new Rng(8);
  const length = 12;
  for (let e = 0; e < 12; e++) {
    const sign = e % 2 === 0 ? 1 : -1;
    const state = Float32Array.from({ length: 2 * length }, () => rng.normal());
    const action = Float32Array.from({ length: 2 * length }, () => sign + 0.05 * rng.normal());
    await w.addEpisode({ task: TASKS[e % 2]!, length, frames: { "observation.state": state, action } });
  }
  await w.finish();
}

const run = (out: string, over: Partial<TrainRunOptions> = {}): TrainRunOptions => ({
  dataset,
  out: join(dir, out),
  config: {
    objective: "regression",
    transformer: { width: 32, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 8 },
    actionDim: 2,
  },
  steps: 150,
  batch: 16,
  horizon: 2,
  valEpisodes: "10,11",
  checkpointEvery: 150,
  backend: "ort",
  workers: 1,
  ...over,
});

beforeAll(async () => {
  dir = await tempDir("offline-prompt");
  dataset = join(dir, "data");
  await writeDataset(dataset);
});
afterAll(async () => {
  await removeDir(dir);
});

describe("eval offline on a prompt-conditioned policy", () => {
  it("gives each frame its own task: held-out episodes of both tasks are predicted, the control is not", async () => {
    const prompted = await trainRun(run("prompted"));
    const control = await trainRun(run("control", { prompt: "off" }));
    const opts = { dataset, episodes: [10, 11], stride: 3, samples: 1, seed: 2 };
    const r = await evaluateOffline({ ...opts, policy: prompted.run, baseline: control.run });
    // +1 and -1 chunks: the prompt tells them apart; without it the best guess is about 0 (squared error about 1)
    expect(r.metrics.mse).toBeLessThan(0.1);
    expect(r.baseline!.mse).toBeGreaterThan(0.5);
    expect(Number.isFinite(r.metrics.valLoss)).toBe(true);
    expect(r.metrics.valLoss).toBeLessThan(r.baseline!.valLoss);
  });

  it("a text encoder flow policy: samples, loss, likelihood and the solver sweep all get the frame's prompt", async () => {
    const files = writeTextEncoder(join(dir, "enc"), { dim: 8, seed: 1 });
    const flow = await trainRun(
      run("encoder", {
        textEncoder: files,
        config: {
          objective: "flow",
          transformer: { width: 32, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 8 },
          actionDim: 2,
        },
        steps: 300,
        checkpointEvery: 300,
      }),
    );
    const r = await evaluateOffline({
      policy: flow.run,
      dataset,
      episodes: [10, 11],
      stride: 4,
      samples: 2,
      seed: 3,
      sweep: { solvers: ["euler"], steps: [4] },
      likelihood: { frames: 1, probes: 2, odeSteps: 4 },
    });
    expect(r.metrics.mse).toBeLessThan(0.3);
    expect(r.metrics.sweep).toHaveLength(1);
    expect(r.metrics.sweep[0]!.mse).toBeLessThan(0.3);
    expect(Number.isFinite(r.metrics.likelihood!.perDim)).toBe(true);
  });
});
