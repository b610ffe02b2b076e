import { describe, expect, it, afterAll } from "vitest";
import { readFile, writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { Rng } from "../../../policy/random.ts";
import { LeRobotWriter } from "../../../datasets/lerobot/writer.ts";
import { openLeRobot } from "../../../datasets/lerobot/reader.ts";
import { readAllRows, removeDir, tempDir } from "./helpers.ts";

const dirs: string[] = [];
async function fresh(): Promise<string> {
  const d = await tempDir("writer");
  dirs.push(d);
  return join(d, "ds");
}
afterAll(async () => {
  for (const d of dirs) await removeDir(d);
});

function bits(
  a: ArrayLike<number | bigint> & { buffer: ArrayBufferLike; byteOffset: number; byteLength: number },
): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Random float32 frames including awkward values (-0, subnormal, huge). */
function randomFrames(rng: Rng, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * 10 ** rng.int(6) * (rng.uniform() < 0.5 ? 1e-3 : 1);
  if (n > 3) {
    out[0] = -0;
    out[1] = 1.4e-45;
    out[2] = 3.4e38;
  }
  return out;
}

describe("LeRobotWriter", () => {
  it("round-trips frames bit-exactly through the reader, rolling data files past the size limit", async () => {
    const dir = await fresh();
    const rng = new Rng(7);
    const w = await LeRobotWriter.create(dir, {
      fps: 20,
      robotType: "panda",
      features: {
        "observation.state": { dtype: "float32", shape: [9], names: Array.from({ length: 9 }, (_, i) => `q${i}`) },
        "observation.points": { dtype: "float32", shape: [3, 2] },
        action: { dtype: "float32", shape: [7] },
        reward: { dtype: "float64", shape: [1] },
        "next.done": { dtype: "int64", shape: [1] },
      },
      dataFilesSizeInMb: 0.02, // ~ 21 kB: several files
    });
    const lengths = [37, 50, 1, 64, 23, 80];
    const written: Record<string, Float32Array | Float64Array | BigInt64Array>[] = [];
    for (const [k, length] of lengths.entries()) {
      const frames = {
        "observation.state": randomFrames(rng, length * 9),
        "observation.points": randomFrames(rng, length * 6),
        action: randomFrames(rng, length * 7),
        reward: Float64Array.from({ length }, () => rng.normal() / 3),
        "next.done": BigInt64Array.from({ length }, (_, i) => (i === length - 1 ? 1n : 0n)),
      };
      written.push(frames);
      const added = await w.addEpisode({ task: k % 2 === 0 ? "pick the cube" : "place the cube", frames, length });
      expect(added.index).toBe(k);
    }
    const done = await w.finish();
    expect(done.episodes).toBe(6);
    expect(done.frames).toBe(255);
    expect(done.dataFiles.length).toBeGreaterThan(2);

    const ds = await openLeRobot(dir);
    expect(ds.codebaseVersion).toBe("v3.0");
    expect(ds.fps).toBe(20);
    expect(ds.robotType).toBe("panda");
    expect(ds.totalFrames).toBe(255);
    expect(ds.tasks).toEqual(["pick the cube", "place the cube"]);
    expect(ds.features["observation.state"]!.names).toEqual(Array.from({ length: 9 }, (_, i) => `q${i}`));
    expect(ds.features["observation.points"]!.shape).toEqual([3, 2]);
    expect(ds.episodes.map((e) => e.length)).toEqual(lengths);
    expect(ds.episodes[1]).toMatchObject({ from: 37, to: 87, tasks: ["place the cube"] });
    for (const [k, frames] of written.entries()) {
      const cols = Object.keys(frames);
      const got = await ds.readEpisodeShaped(k, [
        ...cols,
        "timestamp",
        "frame_index",
        "episode_index",
        "index",
        "task_index",
      ]);
      for (const c of cols) {
        expect(got[c]!.data.constructor).toBe(frames[c as keyof typeof frames]!.constructor);
        expect(bits(got[c]!.data)).toEqual(bits(frames[c as keyof typeof frames]!));
      }
      expect(got["observation.points"]!.shape).toEqual([lengths[k], 3, 2]);
      const ts = got.timestamp!.data as Float32Array;
      expect(ts[ts.length - 1]).toBe(Math.fround((lengths[k]! - 1) / 20));
      expect(Array.from(got.frame_index!.data as BigInt64Array, Number)).toEqual(
        Array.from({ length: lengths[k]! }, (_, i) => i),
      );
      expect((got.index!.data as BigInt64Array)[0]).toBe(BigInt(ds.episodes[k]!.from));
      expect((got.episode_index!.data as BigInt64Array)[0]).toBe(BigInt(k));
      expect((got.task_index!.data as BigInt64Array)[0]).toBe(BigInt(k % 2));
    }
    // global stats: exact mean/min/max, count as [N], quantiles within the histogram bound
    const raw = JSON.parse(await readFile(join(dir, "meta/stats.json"), "utf8")) as Record<
      string,
      Record<string, unknown>
    >;
    expect(raw.action!.count).toEqual([255]);
    expect((raw["observation.points"]!.mean as number[][]).length).toBe(3); // reshaped like the feature
    const all = Float64Array.from(written.flatMap((f) => Array.from(f.reward as Float64Array)));
    const s = ds.stats().reward!;
    expect(s.mean[0]).toBeCloseTo(all.reduce((a, b) => a + b, 0) / all.length, 12);
    expect(s.min[0]).toBe(Math.min(...all));
    const sorted = [...all].sort((a, b) => a - b);
    const span = sorted[sorted.length - 1]! - sorted[0]!;
    expect(Math.abs(s.q50![0]! - sorted[Math.floor(0.5 * sorted.length)]!)).toBeLessThan(span * 0.01);
    // per-episode stats from the episodes parquet
    expect(ds.episodeStats(3).action!.count).toBe(64);
    expect(ds.episodeStats(0).frame_index!.max).toEqual([36]);
  });

  it("writes tasks.parquet that reads back with the task column named 'task' or '__index_level_0__'", async () => {
    for (const col of ["task", "__index_level_0__"] as const) {
      const dir = await fresh();
      const w = await LeRobotWriter.create(dir, {
        fps: 10,
        features: { action: { dtype: "float32", shape: [2] } },
        tasksIndexColumn: col,
      });
      await w.addEpisode({ task: "a", length: 3, frames: { action: new Float32Array(6) } });
      await w.addEpisode({ task: "b", length: 2, frames: { action: new Float32Array(4) } });
      await w.finish();
      const rows = await readAllRows(join(dir, "meta/tasks.parquet"));
      expect(rows).toEqual([
        { task_index: 0n, [col]: "a" },
        { task_index: 1n, [col]: "b" },
      ]);
      const ds = await openLeRobot(dir);
      expect(ds.tasks).toEqual(["a", "b"]);
      expect(ds.episodes.map((e) => e.tasks)).toEqual([["a"], ["b"]]);
    }
  });

  it("reads a v3.0 dataset without meta/stats.json by aggregating the episode stats", async () => {
    const dir = await fresh();
    const w = await LeRobotWriter.create(dir, { fps: 10, features: { action: { dtype: "float32", shape: [1] } } });
    await w.addEpisode({ task: "t", length: 2, frames: { action: new Float32Array([1, 3]) } });
    await w.addEpisode({ task: "t", length: 2, frames: { action: new Float32Array([5, 7]) } });
    await w.finish();
    await writeFile(join(dir, "meta/stats.json"), "{}");
    expect((await openLeRobot(dir)).stats()).toEqual({});
    const { rm } = await import("node:fs/promises");
    await rm(join(dir, "meta/stats.json"));
    const s = (await openLeRobot(dir)).stats().action!;
    expect(s.mean).toEqual([4]);
    expect(s.std[0]).toBeCloseTo(Math.sqrt(5), 12);
    expect(s.count).toBe(4);
  });

  it("rejects bad episodes naming episode, feature, row and dim, and leaves the dataset usable", async () => {
    const dir = await fresh();
    const w = await LeRobotWriter.create(dir, { fps: 10, features: { action: { dtype: "float32", shape: [2] } } });
    await expect(w.addEpisode({ task: "t", length: 2, frames: {} })).rejects.toThrow(
      /episode 0: feature 'action' missing/,
    );
    await expect(w.addEpisode({ task: "t", length: 2, frames: { action: new Float32Array(3) } })).rejects.toThrow(
      /episode 0: feature 'action' has 3 values, 2 frames of shape \[2\] need 4/,
    );
    await expect(
      w.addEpisode({ task: "t", length: 2, frames: { action: new Float32Array([0, 1, 2, NaN]) } }),
    ).rejects.toThrow(/episode 0: feature 'action': non-finite value NaN at row 1 dim 1/);
    await expect(
      w.addEpisode({ task: "t", length: 1, frames: { action: new Float32Array(2), extra: new Float32Array(1) } }),
    ).rejects.toThrow(/feature 'extra' was not declared/);
    await w.addEpisode({ task: "t", length: 1, frames: { action: new Float32Array([1, 2]) } });
    await w.finish();
    await expect(w.addEpisode({ task: "t", length: 1, frames: { action: new Float32Array(2) } })).rejects.toThrow(
      /after finish/,
    );
    const ds = await openLeRobot(dir);
    expect(ds.totalFrames).toBe(1);
    expect(ds.stats().action!.count).toBe(1);
  });

  it("refuses a non-empty folder, '/' in names and default column names", async () => {
    const dir = await fresh();
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "x"), "");
    const features = { action: { dtype: "float32" as const, shape: [2] } };
    await expect(LeRobotWriter.create(dir, { fps: 10, features })).rejects.toThrow(/not empty/);
    const other = await fresh();
    await expect(LeRobotWriter.create(other, { fps: 10, features: { "a/b": features.action } })).rejects.toThrow(
      /contains '\/'/,
    );
    await expect(LeRobotWriter.create(other, { fps: 10, features: { index: features.action } })).rejects.toThrow(
      /default column/,
    );
  });
});
