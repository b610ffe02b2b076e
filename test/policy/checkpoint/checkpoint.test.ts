import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { NormalizationSpec } from "../../../policy/checkpoint/checkpoint.ts";
import { loadCheckpoint, saveCheckpoint } from "../../../policy/checkpoint/checkpoint.ts";
import { parseHeadConfig } from "../../../policy/net/config.ts";

const config = parseHeadConfig({
  arch: "mlp",
  horizon: 2,
  actionDim: 4,
  obs: [{ name: "state", key: "observation.state", shape: [3] }],
  mlp: { width: 8, depth: 1, timeEmbedDim: 4 },
});
const stats = (dim: number): NormalizationSpec["action"]["stats"] => ({
  min: new Array<number>(dim).fill(-1),
  max: new Array<number>(dim).fill(1),
  mean: new Array<number>(dim).fill(0),
  std: new Array<number>(dim).fill(0.5),
  count: 100,
});
const normalization: NormalizationSpec = {
  obs: { state: { key: "observation.state", mode: "mean_std", stats: stats(3) } },
  action: { key: "action", mode: "min_max", stats: stats(4) },
};

let dir: string;
let ckpt: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "actionflow-ckpt-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
beforeEach(async () => {
  const weights = new Map([["w", { shape: [2], data: new Float32Array([1, 2]) }]]);
  ckpt = await saveCheckpoint(dir, 7, { config, weights, normalization });
});

async function editJson(file: string, edit: (v: Record<string, unknown>) => void): Promise<void> {
  const v = JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
  edit(v);
  await writeFile(file, JSON.stringify(v));
}

describe("loadCheckpoint validates every JSON file it reads", () => {
  it("round-trips config and normalisation through latest.json", async () => {
    const back = await loadCheckpoint(dir);
    expect(back.dir).toBe(ckpt);
    expect(back.config).toEqual(config);
    expect(back.normalization).toEqual(normalization);
  });

  it("refuses stats.json with a NaN, a missing field or a wrong length, naming file and field", async () => {
    const file = join(ckpt, "stats.json");
    await editJson(file, (v) => {
      (v.action as { stats: { std: unknown[] } }).stats.std[3] = NaN;
    });
    await expect(loadCheckpoint(dir)).rejects.toThrow(`${file}: action.stats.std[3]: expected number, got null`);
    await editJson(file, (v) => {
      const s = (v.action as { stats: Record<string, unknown> }).stats;
      s.std = [0.5, 0.5, 0.5, 0.5];
      delete s.max;
    });
    await expect(loadCheckpoint(dir)).rejects.toThrow(`${file}: action.stats.max: missing (expected array)`);
    await editJson(file, (v) => {
      const s = (v.action as { stats: Record<string, unknown> }).stats;
      s.max = [1, 1, 1];
    });
    await expect(loadCheckpoint(dir)).rejects.toThrow(`${file}: action.stats.max: has length 3, mean has 4`);
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
      (v.obs as { state: { stats: unknown } }).state.stats = stats(5);
    });
    await expect(loadCheckpoint(dir)).rejects.toThrow(/stats\.json: cannot pad a 5-dim normalisation down to 3/);
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
