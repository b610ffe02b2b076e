import { describe, expect, it, afterAll } from "vitest";
import { readFile, writeFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { Rng } from "../../../policy/random.ts";
import { LeRobotWriter, type LeRobotWriterOptions } from "../../../datasets/lerobot/writer.ts";
import { openLeRobot } from "../../../datasets/lerobot/reader.ts";
import { removeDir, tempDir } from "./helpers.ts";

const dirs: string[] = [];
async function fresh(): Promise<string> {
  const d = await tempDir("writer-durable");
  dirs.push(d);
  return join(d, "ds");
}
afterAll(async () => {
  for (const d of dirs) await removeDir(d);
});

const opts = (durable: boolean): LeRobotWriterOptions => ({
  fps: 30,
  robotType: "arm",
  durable,
  features: {
    "observation.state": { dtype: "float32", shape: [3], names: ["a", "b", "c"] },
    action: { dtype: "float32", shape: [3], names: ["a", "b", "c"] },
  },
});

function episode(rng: Rng, length: number, task: string) {
  return {
    task,
    length,
    frames: {
      "observation.state": Float32Array.from({ length: length * 3 }, () => rng.normal()),
      action: Float32Array.from({ length: length * 3 }, () => rng.normal()),
    },
  };
}

describe("LeRobotWriter durable episodes and resume", () => {
  it("lists every finished episode on disk before finish(), each read back exactly", async () => {
    const dir = await fresh();
    const rng = new Rng(3);
    const w = await LeRobotWriter.create(dir, opts(true));
    const eps = [episode(rng, 12, "pick"), episode(rng, 7, "place"), episode(rng, 20, "pick")];
    for (const [k, ep] of eps.entries()) {
      await w.addEpisode(ep);
      const ds = await openLeRobot(dir);
      expect(ds.episodes.map((e) => e.length)).toEqual(eps.slice(0, k + 1).map((e) => e.length));
      const back = await ds.readEpisode(k, ["observation.state", "action"]);
      expect(Array.from(back.action as Float32Array)).toEqual(Array.from(ep.frames.action));
      expect(ds.tasks).toEqual(k === 0 ? ["pick"] : ["pick", "place"]);
      const info = JSON.parse(await readFile(join(dir, "meta/info.json"), "utf8"));
      expect(info.total_episodes).toBe(k + 1);
      ds.close();
    }
    // one data file per episode
    expect((await readdir(join(dir, "data/chunk-000"))).filter((f) => !f.startsWith("."))).toEqual([
      "file-000.parquet",
      "file-001.parquet",
      "file-002.parquet",
    ]);
    await w.finish();
  });

  it("resumes a dataset: old and new episodes, statistics exactly as written in one go, unlisted files removed", async () => {
    const rng = new Rng(11);
    const eps = [2, 9, 5, 14, 3].map((n, i) => episode(rng, n, i % 2 ? "b" : "a"));
    const whole = await fresh();
    const w0 = await LeRobotWriter.create(whole, opts(false));
    for (const e of eps) await w0.addEpisode(e);
    await w0.finish();

    const dir = await fresh();
    const w1 = await LeRobotWriter.create(dir, opts(true));
    for (const e of eps.slice(0, 3)) await w1.addEpisode(e);
    // a data file written by a writer killed before it listed its episode
    await writeFile(join(dir, "data/chunk-000/file-003.parquet"), "torn");
    const w2 = await LeRobotWriter.resume(dir, opts(true));
    expect(w2.resumed).toEqual({ episodes: 3, frames: 16, removedFiles: ["data/chunk-000/file-003.parquet"] });
    for (const e of eps.slice(3)) await w2.addEpisode(e);
    await w2.finish();

    const a = await openLeRobot(whole);
    const b = await openLeRobot(dir);
    expect(b.episodes).toEqual(a.episodes);
    expect(b.tasks).toEqual(a.tasks);
    expect(b.stats()).toEqual(a.stats());
    for (const e of a.episodes) {
      expect(b.episodeStats(e.index)).toEqual(a.episodeStats(e.index));
      const x = await a.readEpisode(e.index, ["observation.state", "action", "index", "task_index"]);
      const y = await b.readEpisode(e.index, ["observation.state", "action", "index", "task_index"]);
      expect(y).toEqual(x);
    }
  });

  it("resumes an empty or missing folder as a new dataset", async () => {
    const dir = await fresh();
    const w = await LeRobotWriter.resume(dir, opts(true));
    expect(w.resumed).toEqual({ episodes: 0, frames: 0, removedFiles: [] });
    await w.addEpisode(episode(new Rng(1), 4, "x"));
    expect((await openLeRobot(dir)).episodes).toHaveLength(1);
  });

  it("refuses to resume with another fps or feature layout, naming the mismatch", async () => {
    const dir = await fresh();
    const w = await LeRobotWriter.create(dir, opts(true));
    await w.addEpisode(episode(new Rng(2), 5, "x"));
    await expect(LeRobotWriter.resume(dir, { ...opts(true), fps: 15 })).rejects.toThrow(/recorded at 30 fps, not 15/);
    await expect(
      LeRobotWriter.resume(dir, {
        ...opts(true),
        features: { ...opts(true).features, action: { dtype: "float32", shape: [4] } },
      }),
    ).rejects.toThrow(/feature 'action' is float32 \[3\] in the dataset, float32 \[4\] here/);
    await expect(
      LeRobotWriter.resume(dir, {
        ...opts(true),
        features: { ...opts(true).features, "observation.environment_state": { dtype: "float32", shape: [2] } },
      }),
    ).rejects.toThrow(/not in the dataset: observation.environment_state/);
    // the dataset is untouched
    expect((await openLeRobot(dir)).episodes).toHaveLength(1);
  });
});
