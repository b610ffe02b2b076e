import { describe, expect, it, beforeAll, afterAll } from "vitest";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { openRobomimic, type RobomimicDataset } from "../../../datasets/robomimic/reader.ts";
import { createWindowSource } from "../../../training/windows.ts";
import type { AffineNorm } from "../../../policy/normalize.ts";
import { actionValue, eefValue, writeRobomimic } from "./fixture.ts";
import { removeDir, tempDir } from "../lerobot/helpers.ts";

const identity = (dim: number): AffineNorm => ({ scale: new Float32Array(dim).fill(1), offset: new Float32Array(dim) });

describe("openRobomimic", () => {
  let dir: string;
  let file: string;
  let ds: RobomimicDataset;
  beforeAll(async () => {
    dir = await tempDir("robomimic");
    file = join(dir, "lift.hdf5");
    await writeRobomimic(file);
    ds = await openRobomimic(file);
  });
  afterAll(async () => {
    ds.close();
    await removeDir(dir);
  });

  it("lists demos in natural order, features, masks and env metadata", () => {
    expect(ds.demos).toEqual(["demo_0", "demo_1", "demo_10"]);
    expect(ds.episodes.map((e) => [e.index, e.length, e.from, e.to])).toEqual([
      [0, 6, 0, 6],
      [1, 4, 6, 10],
      [2, 5, 10, 15],
    ]);
    expect(ds.totalFrames).toBe(15);
    expect(ds.episodes[0]!.tasks).toEqual(["Lift"]);
    expect(ds.fps).toBe(20);
    expect(ds.robotType).toBe("Panda");
    expect(ds.masks).toEqual({ train: [0, 1], valid: [2] });
    expect(ds.features.action).toEqual({ dtype: "float64", shape: [7], names: null });
    expect(ds.features["observation.agentview_image"]).toMatchObject({ dtype: "uint8", shape: [4, 4, 3] });
    expect(ds.features["next.done"]).toMatchObject({ dtype: "int64", shape: [1] });
    expect(ds.stateKeys).toEqual(["robot0_eef_pos", "robot0_gripper_qpos"]);
    expect(ds.features["observation.state"]).toMatchObject({ dtype: "float64", shape: [5] });
    expect(ds.features["observation.state"]!.names).toEqual([
      "robot0_eef_pos_0",
      "robot0_eef_pos_1",
      "robot0_eef_pos_2",
      "robot0_gripper_qpos_0",
      "robot0_gripper_qpos_1",
    ]);
  });

  it("reads actions, the concatenated state and other columns of one demo", async () => {
    const ep = await ds.readEpisodeShaped(2, [
      "action",
      "observation.state",
      "next.done",
      "observation.agentview_image",
    ]);
    expect(ep.action!.shape).toEqual([5, 7]);
    const a = ep.action!.data as Float64Array;
    expect(a).toBeInstanceOf(Float64Array);
    expect(a[3 * 7 + 2]).toBe(actionValue(2, 3, 2));
    const s = ep["observation.state"]!.data;
    expect(Array.from(s.subarray(5, 10) as Float64Array)).toEqual([
      eefValue(2, 1, 0),
      eefValue(2, 1, 1),
      eefValue(2, 1, 2),
      1 / 8,
      1 + 1 / 8,
    ]);
    expect(Array.from(ep["next.done"]!.data as BigInt64Array)).toEqual([0n, 0n, 0n, 0n, 1n]);
    expect(ep["observation.agentview_image"]!.shape).toEqual([5, 4, 4, 3]);
    await expect(ds.readEpisode(3, ["action"])).rejects.toThrow(/no episode 3/);
    await expect(ds.readEpisode(0, ["nope"])).rejects.toThrow(/no column 'nope'/);
  });

  it("feeds chunk windows with padding at the demo end", async () => {
    const src = await createWindowSource({
      dataset: ds,
      episodes: ds.masks.train!,
      obs: [{ name: "state", key: "observation.state" }],
      action: "action",
      horizon: 3,
      actionDim: 8,
      norms: { action: identity(7), "observation.state": identity(5) },
    });
    expect(src.frames).toBe(10);
    const b = src.batchAt([9]); // demo_1 frame 3 (last)
    expect(b.actions[0]).toBeCloseTo(actionValue(1, 3, 0), 3);
    expect(b.actions[2 * 8 + 6]).toBeCloseTo(actionValue(1, 3, 6), 3);
    expect(b.actions[7]).toBe(0);
    expect(Array.from(b.isPad)).toEqual([0, 1, 1]);
  });
});

describe("openRobomimic on broken files", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir("robomimic-bad");
  });
  afterAll(async () => {
    await removeDir(dir);
  });

  it("names file, demo, frame and dim of a NaN action", async () => {
    const file = join(dir, "nan.hdf5");
    await writeRobomimic(file, { nan: { demo: 1, frame: 2, dim: 4 } });
    const ds = await openRobomimic(file);
    await expect(ds.readEpisode(1, ["action"])).rejects.toThrow(
      /nan\.hdf5: data\/demo_1\/actions: NaN at frame 2 dim 4 \(column 'action', episode 1\)/,
    );
    await expect(ds.readEpisode(0, ["action"])).resolves.toBeDefined();
    ds.close();
  });

  it("names the key whose length disagrees with the demo", async () => {
    const file = join(dir, "short.hdf5");
    await writeRobomimic(file, { shortObs: 0 });
    const ds = await openRobomimic(file);
    await expect(ds.readEpisode(0, ["observation.state"])).rejects.toThrow(
      /data\/demo_0\/obs\/robot0_eef_pos: shape \[5, 3\] disagrees with 6 frames/,
    );
    ds.close();
  });

  it("names a truncated or missing file and a bad state key", async () => {
    const good = join(dir, "good.hdf5");
    await writeRobomimic(good);
    const bytes = await readFile(good);
    const cut = join(dir, "cut.hdf5");
    await writeFile(cut, bytes.subarray(0, Math.floor(bytes.length / 3)));
    await expect(openRobomimic(cut)).rejects.toThrow(/cut\.hdf5: HDF5 error \(truncated or corrupt\?\)/);
    await expect(openRobomimic(join(dir, "none.hdf5"))).rejects.toThrow(/none\.hdf5: file missing/);
    await expect(openRobomimic(good, { stateKeys: ["agentview_image"] })).rejects.toThrow(
      /state key 'agentview_image' is not a low-dim float obs key/,
    );
    const ds = await openRobomimic(good, { stateKeys: ["robot0_gripper_qpos"] });
    expect(ds.features["observation.state"]).toMatchObject({ dtype: "float32", shape: [2] });
    ds.close();
  });
});
