/**
 * Offline evaluation measures the loss with the settings the checkpoint carries: a run trains with a
 * sigma_min path and a logit-normal time sampler, its checkpoint stores them in `config.json`, and
 * the evaluation's loss follows them (an old checkpoint without them takes them from `run.json`).
 */
import { cp, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evaluateOffline } from "../../eval/offline.ts";
import { resolveCheckpointDir } from "../../policy/checkpoint/checkpoint.ts";
import { useBackend } from "../../training/backend/registry.ts";
import { trainRun } from "../../training/run.ts";
import type { RunConfig } from "../../training/run/settings.ts";
import { G1, removeDir, tempDir } from "../datasets/lerobot/helpers.ts";

const CONFIG: RunConfig = {
  mlp: { width: 32, depth: 1, timeEmbedDim: 8 },
  path: { kind: "sigma_min", sigmaMin: 0.3 },
  timeSampler: { kind: "logit_normal", m: 1, s: 0.5 },
};

let dir: string;
let runDir: string;
let ckptName: string;
beforeAll(async () => {
  dir = await tempDir("eval-loss");
  await useBackend("wasm");
  runDir = join(dir, "run");
  await trainRun({
    dataset: G1,
    out: runDir,
    arch: "mlp",
    config: CONFIG,
    steps: 4,
    batch: 4,
    horizon: 4,
    valEpisodes: "8:10",
    checkpointEvery: 4,
    backend: "wasm",
    seed: 2,
    workers: 1,
  });
  ckptName = (await resolveCheckpointDir(runDir))!.slice(join(runDir, "checkpoints").length + 1);
}, 120_000);
afterAll(async () => {
  await removeDir(dir);
});

const valLoss = async (policy: string): Promise<number> =>
  (
    await evaluateOffline({
      policy,
      dataset: G1,
      episodes: [8],
      stride: 40,
      samples: 1,
      seed: 3,
      sweep: { solvers: [], steps: [] },
      likelihood: { frames: 0 },
    })
  ).metrics.valLoss;

/** A copy of the run named `name`, its checkpoint's config.json edited by `edit`. */
async function copyRun(name: string, edit: (config: Record<string, unknown>) => void): Promise<string> {
  const to = join(dir, name);
  await cp(runDir, to, { recursive: true });
  const file = join(to, "checkpoints", ckptName, "config.json");
  const config = JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
  edit(config);
  await writeFile(file, JSON.stringify(config));
  return to;
}

describe("the loss settings travel in the checkpoint", () => {
  it("training stores the run's time sampler and path in the checkpoint's config.json", async () => {
    const config = JSON.parse(await readFile(join(runDir, "checkpoints", ckptName, "config.json"), "utf8")) as {
      loss: unknown;
    };
    const run = JSON.parse(await readFile(join(runDir, "run.json"), "utf8")) as {
      input: { timeSampler: unknown; path: unknown };
    };
    expect(config.loss).toEqual({ timeSampler: CONFIG.timeSampler, path: CONFIG.path });
    expect(run.input.timeSampler).toEqual(CONFIG.timeSampler);
  });

  it("evaluation measures the loss with them: other settings give another loss, an old checkpoint the same", async () => {
    const trained = await valLoss(runDir);
    expect(Number.isFinite(trained)).toBe(true);
    // run.json is not read when the checkpoint carries the settings
    const misleading = await copyRun("misleading-run-json", () => undefined);
    const runFile = join(misleading, "run.json");
    const run = JSON.parse(await readFile(runFile, "utf8")) as { input: Record<string, unknown> };
    run.input["path"] = { kind: "linear" };
    run.input["timeSampler"] = { kind: "uniform" };
    await writeFile(runFile, JSON.stringify(run));
    expect(await valLoss(misleading)).toBe(trained);
    // the default settings in config.json give a different loss on the same weights and frames
    const defaults = await copyRun("defaults", (c) => {
      c["loss"] = { timeSampler: { kind: "pi0" }, path: { kind: "linear" } };
    });
    const other = await valLoss(defaults);
    expect(Math.abs(other - trained)).toBeGreaterThan(1e-3 * trained);
    // an old checkpoint (no loss in config.json) takes them from run.json: the same loss exactly
    const old = await copyRun("old", (c) => {
      delete c["loss"];
    });
    expect(await valLoss(old)).toBe(trained);
    // and one without a run.json beside it the defaults
    const alone = join(dir, "alone");
    await cp(join(old, "checkpoints", ckptName), alone, { recursive: true });
    expect(await valLoss(alone)).toBe(other);
  }, 240_000);
});
