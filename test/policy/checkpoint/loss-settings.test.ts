/**
 * The loss settings (time sampler and path) travel in a checkpoint's `config.json`; a checkpoint
 * written before they did takes them from its run's `run.json` once, in the loader, else the
 * trainer's defaults.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadCheckpoint, saveCheckpoint } from "../../../policy/checkpoint/checkpoint.ts";
import type { LossSettings } from "../../../policy/flow/objective.ts";
import { removeDir, tempDir } from "../../datasets/lerobot/helpers.ts";
import { tinyModel } from "../onnx/fixture.ts";

const m = tinyModel("mlp", { features: "state" });
const normalization = {
  obs: { state: { key: "observation.state", mode: "mean_std" as const, stats: m.stats.obs.state } },
  action: { key: "action", mode: "min_max" as const, stats: m.stats.action },
};
const loss: LossSettings = {
  timeSampler: { kind: "beta", a: 2, b: 3 },
  path: { kind: "sigma_min", sigmaMin: 0.01 },
};

let dir: string;
beforeAll(async () => {
  dir = await tempDir("ckpt-loss");
});
afterAll(async () => {
  await removeDir(dir);
});

/** A run folder `name` with one checkpoint (with `loss` when given) and optionally a run.json. */
async function run(name: string, o: { loss?: LossSettings; runJson?: unknown }): Promise<string> {
  const runDir = join(dir, name);
  await mkdir(runDir, { recursive: true });
  const ckpt = await saveCheckpoint(runDir, 3, {
    config: m.config,
    weights: m.weights,
    normalization,
    ...(o.loss ? { loss: o.loss } : {}),
  });
  if (o.runJson !== undefined) await writeFile(join(runDir, "run.json"), JSON.stringify(o.runJson));
  return ckpt;
}

describe("a checkpoint's loss settings", () => {
  it("are written into config.json beside the head config and read back from it (run.json is not read)", async () => {
    const ckpt = await run("stored", { loss, runJson: { input: { path: { kind: "linear" } } } });
    const file = JSON.parse(await readFile(join(ckpt, "config.json"), "utf8")) as Record<string, unknown>;
    expect(file["loss"]).toEqual(loss);
    const back = await loadCheckpoint(join(dir, "stored"));
    expect(back.loss).toEqual(loss);
    expect(back.config).toEqual(m.config);
  });

  it("an old checkpoint without them takes them from its run's run.json, each missing one defaulted", async () => {
    await run("old", { runJson: { input: { timeSampler: loss.timeSampler, path: loss.path, steps: 3 }, other: 1 } });
    expect((await loadCheckpoint(join(dir, "old"))).loss).toEqual(loss);
    await run("old-path-only", { runJson: { input: { path: loss.path } } });
    expect((await loadCheckpoint(join(dir, "old-path-only"))).loss).toEqual({
      timeSampler: { kind: "pi0" },
      path: loss.path,
    });
  });

  it("an old checkpoint without a run.json beside it has the trainer's defaults", async () => {
    const ckpt = await run("bare", {});
    const want = { timeSampler: { kind: "pi0" }, path: { kind: "linear" } };
    expect((await loadCheckpoint(join(dir, "bare"))).loss).toEqual(want);
    // also when the checkpoint folder is given directly
    expect((await loadCheckpoint(ckpt)).loss).toEqual(want);
  });

  it("a malformed setting is refused naming the file and the field", async () => {
    const ckpt = await run("bad", { loss });
    const file = join(ckpt, "config.json");
    const v = JSON.parse(await readFile(file, "utf8")) as { loss: { path: unknown } };
    v.loss.path = { kind: "sigma_min", sigmaMin: 2 };
    await writeFile(file, JSON.stringify(v));
    await expect(loadCheckpoint(ckpt)).rejects.toThrow(`${file}: loss.path.sigmaMin`);
    await run("bad-run", { runJson: { input: { timeSampler: { kind: "gamma" } } } });
    await expect(loadCheckpoint(join(dir, "bad-run"))).rejects.toThrow(
      `${join(dir, "bad-run", "run.json")}: input.timeSampler`,
    );
  });
});
