import { describe, expect, it, afterAll } from "vitest";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { join } from "node:path";
import { runDatasetCli } from "./dataset-cli.ts";
import { G1, removeDir, tempDir } from "../datasets/lerobot/helpers.ts";
import { writeRobomimic } from "../datasets/robomimic/fixture.ts";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await removeDir(d);
});

describe("actionflow dataset", () => {
  it("info prints its JSON summary of the in-repo v2.1 dataset (through the real CLI)", async () => {
    const { stdout } = await promisify(execFile)("npx", ["tsx", "cli/main.ts", "dataset", "info", G1, "--json"], {
      cwd: process.cwd(),
    });
    const last = stdout.trimEnd().split("\n").pop()!;
    const r = JSON.parse(last) as Record<string, unknown>;
    expect(r).toMatchObject({
      codebaseVersion: "v2.1",
      episodes: 10,
      frames: 4236,
      fps: 30,
      tasks: ["Pick up the yellow bottle on the table."],
      robotType: "Unitree_G1_Inspire",
    });
    expect((r.features as Record<string, unknown>).action).toEqual({ dtype: "float32", shape: [26] });
    expect(r.cameras).toEqual([
      {
        key: "observation.images.cam_high",
        dtype: "video",
        shape: [480, 640, 3],
        codec: "av1",
        episodesWithVideo: [1, 2, 4, 5, 7, 8],
        missingEpisodes: [0, 3, 6, 9],
      },
    ]);
  });

  it("convert writes v3.0 and stats reads it; both also work on robomimic; bad flags are named", async () => {
    const tmp = await tempDir("cli-dataset");
    dirs.push(tmp);
    const out = join(tmp, "g1-v3");
    const conv = await runDatasetCli(["convert", G1, out, "--json"]);
    expect(conv).toMatchObject({ episodes: 10, frames: 4236, out });
    const info = await runDatasetCli(["info", out, "--json"]);
    expect(info).toMatchObject({ codebaseVersion: "v3.0", episodes: 10, frames: 4236 });
    const stats = await runDatasetCli(["stats", out, "--json", "--features", "action"]);
    const a = (stats.features as Record<string, { count: number; mean: number[]; q99: number[] }>).action!;
    expect(stats.source).toBe("data");
    expect(a.count).toBe(4236);
    expect(a.mean).toHaveLength(26);
    expect(a.q99).toHaveLength(26);
    const meta = await runDatasetCli(["stats", G1, "--json", "--from-meta"]);
    const m = (meta.features as Record<string, { count: number; mean: number[] }>).action!;
    expect(meta.source).toBe("meta");
    for (let d = 0; d < 26; d++) expect(m.mean[d]).toBeCloseTo(a.mean[d]!, 6);

    const h5 = join(tmp, "lift.hdf5");
    await writeRobomimic(h5);
    expect(await runDatasetCli(["info", h5, "--json"])).toMatchObject({
      format: "robomimic",
      episodes: 3,
      frames: 15,
      fps: 20,
      masks: { train: 2, valid: 1 },
    });
    expect(
      await runDatasetCli(["convert", h5, join(tmp, "lift-v3"), "--json", "--task", "lift the cube"]),
    ).toMatchObject({
      episodes: 3,
      frames: 15,
    });
    expect(await runDatasetCli(["info", join(tmp, "lift-v3"), "--json"])).toMatchObject({ tasks: ["lift the cube"] });
    await expect(runDatasetCli(["stats", h5, "--from-meta", "--json"])).rejects.toThrow(
      `${h5}: --from-meta needs a LeRobot dataset (robomimic files store no statistics)`,
    );
    await expect(runDatasetCli(["stats", G1, "--features", "action,episode_index", "--json"])).rejects.toThrow(
      /^--features: 'episode_index' is not a float feature \(have: [^)]*\baction\b/,
    );
    await expect(runDatasetCli(["convert", G1, out, "--json"])).rejects.toThrow(/not empty/);
  });
});
