import { describe, expect, it, beforeAll, afterAll } from "vitest";
import { stat, truncate } from "node:fs/promises";
import { join } from "node:path";
import { openLeRobot, type LeRobotDataset } from "../../../datasets/lerobot/reader.ts";
import { formatPath, normalizeNames } from "../../../datasets/lerobot/layout.ts";
import { G1, G1_COLUMNS, copyG1, readAllRows, removeDir, writeRows } from "./helpers.ts";

describe("openLeRobot on the shared v2.1 dataset", () => {
  let ds: LeRobotDataset;
  beforeAll(async () => {
    ds = await openLeRobot(G1);
  });

  it("reads the metadata", () => {
    expect(ds.codebaseVersion).toBe("v2.1");
    expect(ds.fps).toBe(30);
    expect(ds.robotType).toBe("Unitree_G1_Inspire");
    expect(ds.totalFrames).toBe(4236);
    expect(ds.episodes).toHaveLength(10);
    expect(ds.tasks).toEqual(["Pick up the yellow bottle on the table."]);
    expect(ds.episodes[0]).toEqual({ index: 0, length: 479, tasks: ds.tasks, from: 0, to: 479 });
    expect(ds.episodes[9]).toMatchObject({ index: 9, length: 478, from: 3758, to: 4236 });
    const state = ds.features["observation.state"]!;
    expect(state.dtype).toBe("float32");
    expect(state.shape).toEqual([26]);
    expect(state.names).toHaveLength(26); // nested list flattened
    expect(state.names![0]).toBe("kLeftShoulderPitch");
    expect(ds.features["observation.images.cam_high"]!.dtype).toBe("video"); // listed, never needed
  });

  it("reads the first and last values of episode 0, only the asked columns", async () => {
    const ep = await ds.readEpisodeShaped(0, ["action", "observation.state", "index"]);
    expect(Object.keys(ep).sort()).toEqual(["action", "index", "observation.state"]);
    expect(ep.action!.shape).toEqual([479, 26]);
    expect(ep.index!.shape).toEqual([479]);
    const a = ep.action!.data as Float32Array;
    expect(a).toBeInstanceOf(Float32Array);
    expect([a[0], a[1], a[2]]).toEqual([-0.6934276819229126, 0.3843894600868225, -0.43022122979164124]);
    expect([a[a.length - 3], a[a.length - 2], a[a.length - 1]]).toEqual([
      0.6434637308120728, 0.6921167373657227, 0.10164198279380798,
    ]);
    const s = ep["observation.state"]!.data as Float32Array;
    expect([s[0], s[1], s[25]]).toEqual([-0.7031384706497192, 0.3782341182231903, 0.32899999618530273]);
    expect([s[478 * 26], s[478 * 26 + 25]]).toEqual([-0.7723713517189026, 0.11699999868869781]);
    const idx = ep.index!.data as BigInt64Array;
    expect(idx).toBeInstanceOf(BigInt64Array);
    expect([idx[0], idx[478]]).toEqual([0n, 478n]);
    // episode 9's global indices continue from the earlier episodes
    const last = await ds.readEpisode(9, ["index", "timestamp"]);
    expect((last.index as BigInt64Array)[0]).toBe(3758n);
    expect(last.timestamp).toBeInstanceOf(Float32Array);
  });

  it("aggregates episodes_stats.jsonl like LeRobot (weighted mean, pooled std, min/max)", async () => {
    const stats = ds.stats()["action"]!;
    expect(stats.count).toBe(4236);
    // recompute from the frames in float64
    const dim = 26;
    const sum = new Float64Array(dim);
    const sq = new Float64Array(dim);
    const min = new Array<number>(dim).fill(Infinity);
    const max = new Array<number>(dim).fill(-Infinity);
    let n = 0;
    for (const e of ds.episodes) {
      const a = (await ds.readEpisode(e.index, ["action"])).action!;
      for (let i = 0; i < a.length; i++) {
        const x = Number(a[i]);
        const d = i % dim;
        sum[d] = sum[d]! + x;
        sq[d] = sq[d]! + x * x;
        min[d] = Math.min(min[d]!, x);
        max[d] = Math.max(max[d]!, x);
      }
      n += e.length;
    }
    for (let d = 0; d < dim; d++) {
      const mean = sum[d]! / n;
      const std = Math.sqrt(sq[d]! / n - mean * mean);
      expect(stats.mean[d]).toBeCloseTo(mean, 5);
      expect(stats.std[d]).toBeCloseTo(std, 5);
      expect(stats.min[d]).toBe(min[d]);
      expect(stats.max[d]).toBe(max[d]);
    }
    expect(ds.episodeStats(0)["action"]!.count).toBe(479);
  });

  it("rejects an unknown feature, a video feature and an unknown episode", async () => {
    await expect(ds.readEpisode(0, ["nope"])).rejects.toThrow(/feature 'nope' not in meta\/info.json/);
    await expect(ds.readEpisode(0, ["observation.images.cam_high"])).rejects.toThrow(/is a video/);
    await expect(ds.readEpisode(10, ["action"])).rejects.toThrow(/no episode 10/);
  });
});

describe("openLeRobot on broken inputs", () => {
  let dir: string;
  let file0: string;
  let rows: Record<string, unknown>[];
  beforeAll(async () => {
    dir = await copyG1();
    file0 = join(dir, "data/chunk-000/episode_000000.parquet");
    rows = await readAllRows(file0);
  });
  afterAll(async () => {
    await removeDir(dir);
  });

  it("names file, episode and column when a column is missing", async () => {
    await writeRows(
      file0,
      rows,
      G1_COLUMNS.filter((c) => c.name !== "action"),
    );
    const ds = await openLeRobot(dir);
    await expect(ds.readEpisode(0, ["observation.state"])).resolves.toBeDefined();
    await expect(ds.readEpisode(0, ["action"])).rejects.toThrow(
      /episode_000000\.parquet \(episode 0\): column 'action' missing/,
    );
  });

  it("names file, column and frame when a row's shape disagrees with info.json", async () => {
    const bad = rows.map((r, i) => (i === 7 ? { ...r, action: (r.action as number[]).slice(0, 25) } : r));
    await writeRows(file0, bad, G1_COLUMNS);
    const ds = await openLeRobot(dir);
    await expect(ds.readEpisode(0, ["action"])).rejects.toThrow(
      /episode_000000\.parquet: column 'action' \(episode 0, frame 7\): has 25 values, meta\/info.json shape \[26\] needs 26/,
    );
  });

  it("names file, column, frame, dim and value on a NaN", async () => {
    const bad = rows.map((r, i) => {
      if (i !== 12) return r;
      const a = [...(r.action as number[])];
      a[3] = NaN;
      return { ...r, action: a };
    });
    await writeRows(file0, bad, G1_COLUMNS);
    const ds = await openLeRobot(dir);
    await expect(ds.readEpisode(0, ["action"])).rejects.toThrow(
      /episode_000000\.parquet: column 'action' \(episode 0, frame 12\): NaN at dim 3/,
    );
    await expect(ds.readEpisode(0, ["observation.state"])).resolves.toBeDefined();
  });

  it("names the file of a truncated parquet", async () => {
    await writeRows(file0, rows, G1_COLUMNS);
    const size = (await stat(file0)).size;
    await truncate(file0, Math.floor(size / 2));
    const ds = await openLeRobot(dir);
    await expect(ds.readEpisode(0, ["action"])).rejects.toThrow(
      /episode_000000\.parquet \(episode 0\): not a readable parquet file \(truncated or corrupt\?\)/,
    );
    await expect(ds.readEpisode(1, ["action"])).resolves.toBeDefined();
  });

  it("names the file when a data file is missing or holds the wrong number of rows", async () => {
    await writeRows(file0, rows.slice(0, 100), G1_COLUMNS);
    const ds = await openLeRobot(dir);
    await expect(ds.readEpisode(0, ["action"])).rejects.toThrow(
      /episode_000000\.parquet \(episode 0\): file has 100 rows, the episode metadata gives its episodes 479 frames/,
    );
    await expect(openLeRobot(join(dir, "nowhere"))).rejects.toThrow(/meta\/info.json: file missing/);
  });
});

describe("openLeRobot on broken v3.0 inputs", () => {
  it("names the shared data file and the episode on a truncated file, a missing column and a NaN", async () => {
    const { LeRobotWriter } = await import("../../../datasets/lerobot/writer.ts");
    const { tempDir } = await import("./helpers.ts");
    const root = await tempDir("v3-broken");
    const dir = join(root, "ds");
    try {
      const w = await LeRobotWriter.create(dir, {
        fps: 10,
        features: { action: { dtype: "float32", shape: [2] }, state: { dtype: "float32", shape: [1] } },
      });
      await w.addEpisode({ task: "t", length: 3, frames: { action: new Float32Array(6), state: new Float32Array(3) } });
      await w.addEpisode({
        task: "t",
        length: 2,
        frames: { action: Float32Array.of(1, 2, 3, 4), state: Float32Array.of(5, 6) },
      });
      await w.finish();
      const file = join(dir, "data/chunk-000/file-000.parquet");
      const ds = await openLeRobot(dir);
      expect(Array.from((await ds.readEpisode(1, ["action"])).action as Float32Array)).toEqual([1, 2, 3, 4]); // row range inside the shared file
      const rows = await readAllRows(file);
      rows[4] = { ...rows[4], action: [3, NaN] };
      const cols = [
        { name: "action", kind: "list<float>" as const },
        { name: "timestamp", kind: "float" as const },
        { name: "index", kind: "int64" as const },
      ];
      await writeRows(file, rows, cols);
      const ds2 = await openLeRobot(dir);
      await expect(ds2.readEpisode(1, ["action"])).rejects.toThrow(
        /file-000\.parquet: column 'action' \(episode 1, frame 1\): NaN at dim 1/,
      );
      await expect(ds2.readEpisode(0, ["state"])).rejects.toThrow(
        /file-000\.parquet \(episode 0\): column 'state' missing/,
      );
      const size = (await stat(file)).size;
      await truncate(file, size - 20);
      const ds3 = await openLeRobot(dir);
      await expect(ds3.readEpisode(0, ["action"])).rejects.toThrow(
        /file-000\.parquet \(episode 0\): not a readable parquet file/,
      );
    } finally {
      await removeDir(root);
    }
  });
});

describe("layout helpers", () => {
  it("normalises names from a list, a nested list or a dict", () => {
    expect(normalizeNames(["a", "b"])).toEqual(["a", "b"]);
    expect(normalizeNames([["a", "b"]])).toEqual(["a", "b"]);
    expect(normalizeNames({ motors: ["x", "y"], gripper: ["g"] })).toEqual(["x", "y", "g"]);
    expect(normalizeNames(null)).toBeNull();
    expect(normalizeNames([])).toBeNull();
  });

  it("fills LeRobot path templates", () => {
    expect(
      formatPath("data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet", {
        episode_chunk: 1,
        episode_index: 1234,
      }),
    ).toBe("data/chunk-001/episode_001234.parquet");
    expect(() => formatPath("{x}", {})).toThrow(/no value for '\{x\}'/);
  });
});
