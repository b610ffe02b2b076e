import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { removeDir, tempDir } from "../../datasets/lerobot/helpers.ts";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { loadCheckpoint } from "../../../policy/checkpoint/checkpoint.ts";
import { randomStats, tinyModel, writeTinyCheckpoint } from "../onnx/fixture.ts";
import { Rng } from "../../../policy/random.ts";

/** Raw state dim 4 (model 6), raw action dim 3 (model 5); mean_std observations, min_max action. */
const m = tinyModel("mlp", { features: "state" });

let dir: string;
let ckpt: string;
beforeAll(async () => {
  dir = await tempDir("ckpt");
});
afterAll(async () => {
  await removeDir(dir);
});
beforeEach(async () => {
  ckpt = await writeTinyCheckpoint(dir, m, 7);
});

/** Rewrites the pristine checkpoint, then applies `edit` to one of its JSON files. */
async function editJson(file: string, edit: (v: Record<string, unknown>) => void): Promise<void> {
  await writeTinyCheckpoint(dir, m, 7);
  const v = JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
  edit(v);
  await writeFile(file, JSON.stringify(v));
}

describe("loadCheckpoint validates every JSON file it reads", () => {
  it("round-trips config and normalisation through latest.json", async () => {
    const back = await loadCheckpoint(dir);
    expect(back.dir).toBe(ckpt);
    expect(back.config).toEqual(m.config);
    expect(back.normalization.obs.state!.stats).toEqual(m.stats.obs.state);
    expect(back.normalization.action).toEqual({ key: "action", mode: "min_max", stats: m.stats.action });
  });

  it("refuses stats.json with a NaN, a missing field or a wrong length, naming file and field", async () => {
    const file = join(ckpt, "stats.json");
    await editJson(file, (v) => {
      (v.action as { stats: { std: unknown[] } }).stats.std[3] = NaN;
    });
    await expect(loadCheckpoint(dir)).rejects.toThrow(`${file}: action.stats.std[3]: expected number, got null`);
    await editJson(file, (v) => {
      const s = (v.action as { stats: Record<string, unknown> }).stats;
      delete s.max;
    });
    await expect(loadCheckpoint(dir)).rejects.toThrow(`${file}: action.stats.max: missing (expected array)`);
    await editJson(file, (v) => {
      const s = (v.action as { stats: Record<string, unknown> }).stats;
      s.max = [1, 1];
      s.q01 = [0, 0, 0, 0];
    });
    await expect(loadCheckpoint(dir)).rejects.toThrow(
      `${file}: action.stats.max: has length 2, mean has 3; action.stats.q01: has length 4, mean has 3`,
    );
    await editJson(file, (v) => {
      (v.obs as { state: { mode: string } }).state.mode = "z_score";
    });
    await expect(loadCheckpoint(dir)).rejects.toThrow(
      /stats\.json: obs\.state\.mode: expected one of "mean_std", .*got "z_score"/,
    );
  });

  it("refuses stats that do not fit the head config (wider than the model, or a feature missing)", async () => {
    const file = join(ckpt, "stats.json");
    await editJson(file, (v) => {
      (v.obs as { state: { stats: unknown } }).state.stats = randomStats(7, new Rng(1));
    });
    await expect(loadCheckpoint(dir)).rejects.toThrow(/stats\.json: cannot pad a 7-dim normalisation down to 6/);
    await editJson(file, (v) => {
      v.obs = {};
    });
    await expect(loadCheckpoint(dir)).rejects.toThrow(
      /stats\.json: normalisation has no entry for observation feature 'state'/,
    );
  });

  it("refuses config.json with a bad field, and latest.json pointing nowhere sensible", async () => {
    const file = join(ckpt, "config.json");
    await editJson(file, (v) => {
      v.horizon = -2;
    });
    await expect(loadCheckpoint(dir)).rejects.toThrow(
      `${file}: invalid head config: horizon: Too small: expected number to be >0, got -2`,
    );
    const latest = join(dir, "checkpoints", "latest.json");
    await writeFile(latest, JSON.stringify({ checkpoint: "../../etc" }));
    await expect(loadCheckpoint(dir)).rejects.toThrow(`${latest}: checkpoint: expected a step-NNNNNN folder name`);
  });
});
