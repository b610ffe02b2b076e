import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadCheckpoint } from "../../policy/checkpoint/checkpoint.ts";
import { exportOnnx } from "../../policy/onnx/export.ts";
import { OnnxPolicy } from "../../policy/runtime/onnx-policy.ts";
import { openLeRobot } from "../../datasets/lerobot/reader.ts";
import { LeRobotWriter } from "../../datasets/lerobot/writer.ts";
import { trainRun, type TrainRunOptions } from "../../training/run.ts";
import type { RunFile } from "../../training/run/run-file.ts";
import { promptVocabulary } from "../../training/run/settings.ts";
import { createWindowSource } from "../../training/windows.ts";
import { Rng } from "../../policy/random.ts";
import { removeDir, tempDir } from "../datasets/lerobot/helpers.ts";

const TASKS = ["go up", "Go down."];
let dir: string;
let twoTasks: string;
let oneTask: string;

/** Episodes whose states look alike and whose actions are +1 (go up) or -1 (go down) in every dim. */
async function writeDataset(out: string, tasks: readonly string[], episodes: number): Promise<void> {
  const w = await LeRobotWriter.create(out, {
    fps: 10,
    features: {
      "observation.state": { dtype: "float32", shape: [2] },
      action: { dtype: "float32", shape: [2] },
    },
  });
  const rng = new Rng(3);
  const length = 12;
  for (let e = 0; e < episodes; e++) {
    const sign = e % tasks.length === 0 ? 1 : -1;
    const state = Float32Array.from({ length: 2 * length }, () => rng.normal());
    const action = Float32Array.from({ length: 2 * length }, () => sign + 0.05 * rng.normal());
    await w.addEpisode({ task: tasks[e % tasks.length]!, length, frames: { "observation.state": state, action } });
  }
  await w.finish();
}

const run = (dataset: string, out: string, over: Partial<TrainRunOptions> = {}): TrainRunOptions => ({
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
  valEpisodes: "2",
  checkpointEvery: 150,
  backend: "ort",
  workers: 1,
  ...over,
});

beforeAll(async () => {
  dir = await tempDir("prompt");
  twoTasks = join(dir, "two");
  oneTask = join(dir, "one");
  await writeDataset(twoTasks, TASKS, 12);
  await writeDataset(oneTask, ["go up"], 6);
});
afterAll(async () => {
  await removeDir(dir);
});

describe("task prompts in training", () => {
  it("exposes each frame's task and one-hots it in the windows", async () => {
    const ds = await openLeRobot(twoTasks);
    try {
      expect(ds.tasks).toEqual(TASKS);
      expect(await ds.readTasks(1)).toEqual(Array(12).fill("Go down."));
      const src = await createWindowSource({
        dataset: ds,
        episodes: [0, 1],
        obs: [{ name: "prompt", key: "task_index", prompts: ["go down", "go up"] }],
        action: "action",
        horizon: 2,
        actionDim: 2,
        norms: { action: { scale: Float32Array.of(1, 1), offset: Float32Array.of(0, 0) } },
        tasks: ds.tasks,
      });
      const b = src.batchAt([0, 12]);
      expect(Array.from(b.obs["prompt"]!)).toEqual([0, 1, 1, 0]);
      await expect(
        createWindowSource({
          dataset: ds,
          episodes: [0],
          obs: [{ name: "prompt", key: "task_index", prompts: ["go down"] }],
          action: "action",
          horizon: 2,
          actionDim: 2,
          norms: { action: { scale: Float32Array.of(1, 1), offset: Float32Array.of(0, 0) } },
          tasks: ds.tasks,
        }),
      ).rejects.toThrow(
        /episode 0 frame 0: task 0 \("go up"\) is not among the prompts of feature 'prompt' \("go down"\)/,
      );
    } finally {
      ds.close();
    }
    expect(promptVocabulary(["a", "A.", "b", ""])).toEqual(["a", "b"]);
  });

  it("conditions on the prompt when the dataset has two tasks, and the exported policy follows it", async () => {
    const r = await trainRun(run(twoTasks, "two"));
    const ck = await loadCheckpoint(r.run);
    expect(ck.config.obs.map((f) => f.name)).toEqual(["state", "prompt"]);
    expect(ck.config.obs[1]).toMatchObject({ key: "task_index", shape: [2], prompts: TASKS });
    expect(ck.normalization.obs["prompt"]?.mode).toBe("identity");
    const file = JSON.parse(await readFile(join(r.run, "run.json"), "utf8")) as RunFile;
    expect(file.input.obs.at(-1)).toEqual({ name: "prompt", key: "task_index", prompts: TASKS });
    await exportOnnx(r.run);
    const policy = await OnnxPolicy.load(r.run, { threads: 1 });
    try {
      expect(policy.prompts).toEqual(TASKS);
      const state = Float32Array.of(0.2, -0.4);
      const mean = (x: Float32Array): number => x.reduce((a, b) => a + b, 0) / x.length;
      const up = mean(await policy.sampleChunk({ state }, { prompt: "GO UP" }));
      const down = mean(await policy.sampleChunk({ state }, { prompt: "go down" }));
      expect(up).toBeGreaterThan(0.5);
      expect(down).toBeLessThan(-0.5);
    } finally {
      await policy.release();
    }
  });

  it("trains without the prompt with 'off', and with it on a one-task dataset only when asked", async () => {
    const off = await trainRun(run(twoTasks, "off", { prompt: "off", steps: 2 }));
    expect((await loadCheckpoint(off.run)).config.obs.map((f) => f.name)).toEqual(["state"]);
    const auto = await trainRun(run(oneTask, "auto", { steps: 2, valEpisodes: "1" }));
    expect((await loadCheckpoint(auto.run)).config.obs.map((f) => f.name)).toEqual(["state"]);
    const on = await trainRun(run(oneTask, "on", { steps: 2, valEpisodes: "1", prompt: "on" }));
    expect((await loadCheckpoint(on.run)).config.obs.at(-1)?.prompts).toEqual(["go up"]);
  });
});
