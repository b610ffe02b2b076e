import { readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadCheckpoint } from "../../policy/checkpoint/checkpoint.ts";
import { affineFor, denormalize, normalize } from "../../policy/normalize.ts";
import { useBackend } from "../../training/backend/registry.ts";
import type { TrainRunOptions } from "../../training/run.ts";
import { trainRun } from "../../training/run.ts";
import { CONSTANT_ACTION_SPREAD, guardStats } from "../../training/run/normalization.ts";
import type { RunFile } from "../../training/run/run-file.ts";
import type { RunConfig } from "../../training/run/settings.ts";
import { parseObsSpec, parseRunConfig, readRunConfig } from "../../training/run/settings.ts";
import { writeRobomimic } from "../datasets/robomimic/fixture.ts";
import { G1, removeDir, tempDir } from "../datasets/lerobot/helpers.ts";

/** A tiny transformer so a run takes seconds. */
const TINY: RunConfig = { transformer: { width: 32, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 16 } };

let dir: string;
beforeAll(async () => {
  await useBackend("wasm");
  dir = await tempDir("run");
});
afterAll(async () => {
  await removeDir(dir);
});

const g1 = (out: string, over: Partial<TrainRunOptions> = {}): TrainRunOptions => ({
  dataset: G1,
  out: join(dir, out),
  config: TINY,
  steps: 30,
  batch: 16,
  horizon: 8,
  valEpisodes: "8:10",
  checkpointEvery: 10,
  backend: "wasm",
  workers: 1,
  ...over,
});

describe("trainRun on the shared G1 dataset", () => {
  it("trains, validates on episodes 8-9, checkpoints, keeps the last 2, and lowers the validation loss", async () => {
    const steps: number[] = [];
    // Two gradient threads (the default on 2 cores) here; one elsewhere, for speed on tiny models.
    const r = await trainRun({ ...g1("g1", { workers: 2 }), onCheckpoint: (_d, s) => steps.push(s) });
    expect(r.steps).toBe(30);
    expect(r.resumedFrom).toBe(0);
    expect(r.backend).toBe("wasm");
    expect(r.params).toBeGreaterThan(1000);
    expect(Number.isFinite(r.trainLoss)).toBe(true);
    expect(r.valLoss).toBeLessThan(r.valLossAtStart);
    expect(r.samplesPerSec).toBeGreaterThan(0);
    expect(steps).toEqual([10, 20, 30]);
    expect(r.checkpoint).toBe(join(dir, "g1", "checkpoints", "step-000030"));
    const ckdir = join(dir, "g1", "checkpoints");
    expect((await readdir(ckdir)).filter((n) => n.startsWith("step-")).sort()).toEqual(["step-000020", "step-000030"]);
    for (const f of ["config.json", "model.safetensors", "stats.json", "optimizer.safetensors", "train_state.json"]) {
      expect((await readdir(r.checkpoint)).includes(f), f).toBe(true);
    }
    const ck = await loadCheckpoint(join(dir, "g1"), { withOptimizer: "yes" });
    expect(ck.config.actionDim).toBe(32);
    expect(ck.config.horizon).toBe(8);
    expect(ck.config.obs).toEqual([{ name: "state", key: "observation.state", shape: [26] }]);
    expect(ck.normalization.action.mode).toBe("mean_std");
    expect(ck.normalization.action.stats.mean).toHaveLength(26);
    expect(ck.optimizer?.trainState.step).toBe(30);
    const run = JSON.parse(await readFile(join(dir, "g1", "run.json"), "utf8")) as RunFile;
    expect(run.split).toEqual({ train: [0, 1, 2, 3, 4, 5, 6, 7], val: [8, 9] });
    expect(run.dataset).toMatchObject({ format: "lerobot", codebaseVersion: "v2.1", episodes: 10, frames: 4236 });
    expect(run.input.batch).toBe(16);
    expect(run.statsSource).toBe("meta");
  });

  it("resumes a finished run without training, extends it with more steps, and refuses changed settings", async () => {
    const done = await trainRun({ out: join(dir, "g1"), mode: "resume", backend: "wasm", workers: 1 });
    expect(done.steps).toBe(30);
    expect(done.resumedFrom).toBe(30);
    expect(done.valLossAtStart).toBeGreaterThan(done.valLoss);

    await expect(trainRun({ out: join(dir, "g1"), mode: "resume", batch: 8 })).rejects.toThrow(
      /cannot resume with different settings: batch: run.json has 16, given 8/,
    );
    await expect(trainRun({ out: join(dir, "g1"), mode: "resume", dataset: join(dir, "elsewhere") })).rejects.toThrow(
      /was trained on .*g1-pick-bottle-10ep, not .*elsewhere/,
    );
    await expect(trainRun(g1("g1"))).rejects.toThrow(/already holds a run; pass --resume/);

    const more = await trainRun({ out: join(dir, "g1"), mode: "resume", steps: 34, backend: "wasm", workers: 1 });
    expect(more.steps).toBe(34);
    expect(more.resumedFrom).toBe(30);
    expect(more.valLossAtStart).toBe(done.valLossAtStart);
  });

  it("trains on padded chunk tails by default, keeps 'mask' for runs stored before the setting, and refuses a change on resume", async () => {
    const run = JSON.parse(await readFile(join(dir, "g1", "run.json"), "utf8")) as RunFile;
    expect(run.input.padding).toBe("hold");
    await expect(trainRun({ out: join(dir, "g1"), mode: "resume", padding: "mask" })).rejects.toThrow(
      /cannot resume with different settings: padding: run.json has "hold", given "mask"/,
    );

    const out = join(dir, "legacy");
    await trainRun(g1("legacy", { steps: 2, checkpointEvery: 1, padding: "mask" }));
    const legacy = JSON.parse(await readFile(join(out, "run.json"), "utf8")) as RunFile;
    delete (legacy.input as Partial<RunFile["input"]>).padding;
    await writeFile(join(out, "run.json"), JSON.stringify(legacy));
    const resumed = await trainRun({ out, mode: "resume", steps: 3, backend: "wasm", workers: 1 });
    expect(resumed.steps).toBe(3);
    await expect(trainRun({ out, mode: "resume", padding: "hold" })).rejects.toThrow(
      /padding: run.json has "mask", given "hold"/,
    );
  });

  it("refuses an actionDim smaller than the dataset's, naming both", async () => {
    await expect(trainRun(g1("small", { config: { ...TINY, actionDim: 16 } }))).rejects.toThrow(
      /actionDim 16 is smaller than the dataset's action dim 26/,
    );
  });

  it("refuses obsDims smaller than the dataset's state dim", async () => {
    await expect(trainRun(g1("obsdims", { config: { ...TINY, obsDims: { state: 20 } } }))).rejects.toThrow(
      /obsDims\.state 20 is smaller than the dataset's dim 26 \(column 'observation.state'\)/,
    );
    await expect(trainRun(g1("obsdims", { config: { ...TINY, obsDims: { nope: 40 } } }))).rejects.toThrow(
      /obsDims: 'nope' is not an observation feature/,
    );
  });

  it("refuses an unknown observation column, listing the dataset's columns", async () => {
    await expect(
      trainRun(g1("obs", { obs: "state=observation.state,env=observation.environment_state" })),
    ).rejects.toThrow(
      /obs 'env' column 'observation.environment_state' not in the dataset \(columns: .*observation\.state.*action/,
    );
  });

  it("refuses a corrupt run.json on resume, naming the file", async () => {
    const out = join(dir, "corrupt");
    await trainRun(g1("corrupt", { steps: 2, checkpointEvery: 1 }));
    const runJson = await readFile(join(out, "run.json"), "utf8");
    await writeFile(join(out, "run.json"), '{"format": "actionflow.run", "vers');
    await expect(trainRun({ out, mode: "resume" })).rejects.toThrow(
      /corrupt\/run\.json: not valid JSON \(.*\); a corrupt run file: start a new run in another folder$/,
    );
    await writeFile(join(out, "run.json"), '{"format": "something else"}');
    await expect(trainRun({ out, mode: "resume" })).rejects.toThrow(
      /run\.json: format: expected "actionflow\.run", got "something else"; version: missing \(expected 1\);.*a corrupt run file/,
    );
    // A stored setting of the wrong type is named by its path.
    const run = JSON.parse(runJson) as RunFile;
    await writeFile(join(out, "run.json"), JSON.stringify({ ...run, input: { ...run.input, steps: "many" } }));
    await expect(trainRun({ out, mode: "resume" })).rejects.toThrow(
      /corrupt\/run\.json: input\.steps: expected number, got "many"; a corrupt run file/,
    );
    // A checkpoint whose stats hold a NaN (written by JSON as null) is refused, naming the file and the field.
    await writeFile(join(out, "run.json"), runJson);
    const stats = join(out, "checkpoints", "step-000002", "stats.json");
    const spec = JSON.parse(await readFile(stats, "utf8")) as { action: { stats: { std: (number | null)[] } } };
    spec.action.stats.std[3] = null;
    await writeFile(stats, JSON.stringify(spec));
    await expect(trainRun({ out, mode: "resume", steps: 4 })).rejects.toThrow(
      /step-000002: cannot load the checkpoint to resume from: .*step-000002\/stats\.json: action\.stats\.std\[3\]: expected number, got null$/,
    );
    await expect(trainRun({ out: join(dir, "never-started"), mode: "resume" })).rejects.toThrow(
      /never-started\/run\.json: file missing \(nothing to resume\? start without --resume\)/,
    );
  });
});

describe("trainRun on robomimic HDF5", () => {
  it("validates on mask/valid, computes stats from the training frames and trains", async () => {
    const file = join(dir, "lift.hdf5");
    await writeRobomimic(file, {
      demos: [
        { name: "demo_0", length: 30 },
        { name: "demo_1", length: 25 },
        { name: "demo_2", length: 20 },
      ],
    });
    const r = await trainRun({
      dataset: file,
      out: join(dir, "lift"),
      config: TINY,
      steps: 4,
      batch: 8,
      horizon: 4,
      backend: "wasm",
      workers: 1,
    });
    expect(r.steps).toBe(4);
    const run = JSON.parse(await readFile(join(dir, "lift", "run.json"), "utf8")) as RunFile;
    expect(run.split).toEqual({ train: [0, 1], val: [2] });
    expect(run.input.valEpisodes).toBe("mask/valid");
    expect(run.statsSource).toBe("data");
    expect(run.head.obs).toEqual([{ name: "state", key: "observation.state", shape: [5] }]);
  });

  it("names the episode and value on a NaN in the data", async () => {
    const file = join(dir, "nan.hdf5");
    await writeRobomimic(file, {
      demos: [
        { name: "demo_0", length: 10 },
        { name: "demo_1", length: 10 },
      ],
      nan: { demo: 1, frame: 3, dim: 2 },
    });
    await expect(
      trainRun({
        dataset: file,
        out: join(dir, "nan"),
        config: TINY,
        steps: 2,
        horizon: 4,
        valEpisodes: "0:1",
        backend: "wasm",
        workers: 1,
      }),
    ).rejects.toThrow(/nan\.hdf5: data\/demo_1\/actions: NaN at frame 3 dim 2 .*episode 1/);
  });
});

describe("run settings", () => {
  it("parses the --obs mapping and refuses malformed ones", () => {
    expect(parseObsSpec("state=observation.state, env=observation.environment_state")).toEqual([
      { name: "state", key: "observation.state" },
      { name: "env", key: "observation.environment_state" },
    ]);
    expect(parseObsSpec({ emb: "observation.embedding" })).toEqual([{ name: "emb", key: "observation.embedding" }]);
    expect(() => parseObsSpec("observation.state")).toThrow(/'observation.state' is not 'name=column'/);
    expect(() => parseObsSpec("a=x,a=y")).toThrow(/'a' given twice/);
    expect(() => parseObsSpec("1x=y")).toThrow(/must be an identifier/);
  });

  it("refuses unknown or mistyped config keys, naming them", () => {
    expect(() => parseRunConfig({ horizn: 10 }, "cfg.json")).toThrow(/cfg\.json: invalid training config: .*horizn/);
    expect(() => parseRunConfig({ transformer: { width: "big" } }, "cfg.json")).toThrow(/transformer\.width/);
    expect(
      parseRunConfig({ arch: "mlp", optim: { lr: 1e-4 }, normalization: { obs: { state: "min_max" } } }),
    ).toMatchObject({ arch: "mlp" });
  });

  it("reads a --config file, naming the file and the field at fault", async () => {
    const file = join(dir, "cfg.json");
    await writeFile(file, JSON.stringify({ arch: "mlp", timeSampler: { kind: "beta", a: 1 } }));
    await expect(readRunConfig(file)).rejects.toThrow(
      `${file}: timeSampler.b: missing (expected number); an invalid training config`,
    );
    await writeFile(file, JSON.stringify({ optim: { lr: -1 }, padding: "pad" }));
    await expect(readRunConfig(file)).rejects.toThrow(
      `${file}: padding: expected one of "mask", "hold", got "pad"; optim.lr: Too small: expected number to be >0, got -1`,
    );
    await writeFile(file, JSON.stringify({ arch: "mlp", horizon: 4 }));
    expect(await readRunConfig(file)).toEqual({ arch: "mlp", horizon: 4 });
  });

  it("guards near-constant dims instead of dividing by ~0", () => {
    const stats = {
      mean: [0.5, 2],
      std: [0, 0.3],
      min: [0.5, 1],
      max: [0.5, 3],
      count: 10,
      q01: [0.5, 1.1],
      q99: [0.5, 2.9],
    };
    const ms = guardStats(stats, "mean_std");
    expect(ms.guarded).toEqual([0]);
    expect(ms.stats.std).toEqual([1, 0.3]);
    expect(stats.std).toEqual([0, 0.3]);
    const mm = guardStats(stats, "min_max");
    expect(mm.guarded).toEqual([0]);
    expect([mm.stats.min, mm.stats.max]).toEqual([
      [-0.5, 1],
      [1.5, 3],
    ]);
    const q = guardStats(stats, "quantiles");
    expect([q.stats.q01, q.stats.q99]).toEqual([
      [-0.5, 1.1],
      [1.5, 2.9],
    ]);
    expect(guardStats(stats, "identity").guarded).toEqual([]);
  });

  it("gives an action dim that never varies a tiny spread, so whatever the head outputs there comes back as the constant", () => {
    const stats = {
      mean: [0.5, 2, -0.3],
      std: [0, 0.3, 1e-4],
      min: [0.5, 1, -0.3002],
      max: [0.5, 3, -0.2998],
      count: 10,
    };
    const g = guardStats(stats, "mean_std", { constantAction: true });
    expect(g.guarded).toEqual([0, 2]);
    expect(g.stats.std).toEqual([CONSTANT_ACTION_SPREAD, 0.3, 1]); // only exactly zero spread
    const norm = affineFor(g.stats, "mean_std");
    const back = denormalize([2.5, 0, 0, -1.7, 0, 0], norm); // two frames of head output, [2, 3]
    expect(Math.abs(back[0]! - 0.5)).toBeLessThan(1e-5);
    expect(Math.abs(back[3]! - 0.5)).toBeLessThan(1e-5);
    expect(normalize([0.5, 2, -0.3], norm)[0]).toBeCloseTo(0, 1);
    const mm = guardStats({ ...stats, mean: [0.5, 2, -0.3] }, "min_max", { constantAction: true });
    expect(mm.stats.max[0]! - mm.stats.min[0]!).toBeCloseTo(2 * CONSTANT_ACTION_SPREAD, 12);
    expect(guardStats(stats, "mean_std").stats.std[0]).toBe(1); // not an action: unit spread
  });
});
