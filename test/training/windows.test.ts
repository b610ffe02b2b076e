import { describe, expect, it } from "vitest";
import { Rng } from "../../policy/random.ts";
import { affineFor } from "../../policy/normalize.ts";
import type { AffineNorm } from "../../policy/normalize.ts";
import { createWindowSource, splitEpisodes } from "../../training/windows.ts";
import { inMemoryDataset } from "../../datasets/memory.ts";
import { openLeRobot } from "../../datasets/lerobot/reader.ts";
import { G1 } from "../datasets/lerobot/helpers.ts";

const identity = (dim: number): AffineNorm => ({ scale: new Float32Array(dim).fill(1), offset: new Float32Array(dim) });

/** Two episodes (lengths 5 and 3): action[t] = [100e + t, -(100e + t)], state[t] = [t, 2t, 3t]. */
function toy() {
  const episode = (e: number, length: number) => ({
    columns: {
      action: Float32Array.from(
        { length: length * 2 },
        (_, i) => (i % 2 === 0 ? 1 : -1) * (100 * e + Math.floor(i / 2)),
      ),
      state: Float32Array.from({ length: length * 3 }, (_, i) => Math.floor(i / 3) * ((i % 3) + 1)),
      points: Float32Array.from({ length: length * 4 }, (_, i) => 1000 * e + i),
    },
  });
  return inMemoryDataset({ action: [2], state: [3], points: [2, 2] }, [episode(0, 5), episode(1, 3)]);
}

describe("createWindowSource", () => {
  it("pads the chunk past the episode end with the last action and flags isPad", async () => {
    const src = await createWindowSource({
      dataset: toy(),
      episodes: [0, 1],
      obs: [{ name: "state", key: "state" }],
      action: "action",
      horizon: 4,
      actionDim: 3,
      norms: { action: { scale: Float32Array.of(2, 1), offset: Float32Array.of(1, 0) }, state: identity(3) },
    });
    expect(src.frames).toBe(8);
    expect(src.obsShapes).toEqual({ state: [3] });
    const b = src.batchAt([3, 7]); // episode 0 frame 3, episode 1 frame 2 (its last)
    expect(b.size).toBe(2);
    // window 0: frames 3, 4, then padding with frame 4; action dim 2 padded with 0 to 3; a*2+1 on dim 0
    expect(Array.from(b.actions.subarray(0, 12))).toEqual([7, -3, 0, 9, -4, 0, 9, -4, 0, 9, -4, 0]);
    expect(Array.from(b.isPad.subarray(0, 4))).toEqual([0, 0, 1, 1]);
    expect(Array.from(b.actions.subarray(12, 24))).toEqual([205, -102, 0, 205, -102, 0, 205, -102, 0, 205, -102, 0]);
    expect(Array.from(b.isPad.subarray(4, 8))).toEqual([0, 1, 1, 1]);
    expect(Array.from(b.obs.state!)).toEqual([3, 6, 9, 2, 4, 6]);
    expect(src.locate(7)).toEqual({ episode: 1, frame: 2 });
  });

  it("with padding 'hold' keeps the same repeated last action but leaves isPad clear, so the loss trains on it", async () => {
    const opts = {
      dataset: toy(),
      episodes: [0, 1],
      obs: [{ name: "state", key: "state" }],
      action: "action",
      horizon: 4,
      actionDim: 2,
      norms: { action: identity(2), state: identity(3) },
    };
    const masked = (await createWindowSource({ ...opts, padding: "mask" })).batchAt([3, 7]);
    const held = (await createWindowSource({ ...opts, padding: "hold" })).batchAt([3, 7]);
    expect(held.actions).toEqual(masked.actions);
    expect(Array.from(masked.isPad)).toEqual([0, 0, 1, 1, 0, 1, 1, 1]);
    expect(Array.from(held.isPad)).toEqual(new Array(8).fill(0));
  });

  it("stacks history frames (repeating frame 0) and pads obs dims, for vector and [N, D] features", async () => {
    const src = await createWindowSource({
      dataset: toy(),
      episodes: [1],
      obs: [
        { name: "s", key: "state" },
        { name: "p", key: "points" },
      ],
      action: "action",
      horizon: 1,
      actionDim: 2,
      obsDims: { s: 4, p: 3 },
      historyFrames: 2,
      norms: { action: identity(2), state: identity(3), points: identity(2) },
    });
    expect(src.obsShapes).toEqual({ s: [2, 4], p: [2, 2, 3] });
    const b = src.batchAt([0, 1]);
    // frame 0: history [0, 0]; frame 1: history [0, 1]
    expect(Array.from(b.obs.s!)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 0]);
    const p = Array.from(b.obs.p!);
    expect(p.slice(0, 12)).toEqual([1000, 1001, 0, 1002, 1003, 0, 1000, 1001, 0, 1002, 1003, 0]);
    expect(p.slice(18, 24)).toEqual([1004, 1005, 0, 1006, 1007, 0]);
  });

  it("draws uniformly and repeatably with next(), and covers the split in order with epoch()", async () => {
    const src = await createWindowSource({
      dataset: toy(),
      episodes: [0, 1],
      obs: [{ name: "state", key: "state" }],
      action: "action",
      horizon: 2,
      actionDim: 2,
      norms: { action: identity(2), state: identity(3) },
    });
    const a = src.next(64, new Rng(5));
    const b = src.next(64, new Rng(5));
    expect(a.actions).toEqual(b.actions);
    const firstActions = new Set<number>();
    const big = src.next(4000, new Rng(9));
    for (let i = 0; i < big.size; i++) firstActions.add(big.actions[i * 4]!);
    expect([...firstActions].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 100, 101, 102]);
    const batches = [...src.epoch(3)];
    expect(batches.map((x) => x.size)).toEqual([3, 3, 2]);
    const firsts = batches.flatMap((x) => Array.from({ length: x.size }, (_, i) => x.actions[i * 4]!));
    expect(firsts).toEqual([0, 1, 2, 3, 4, 100, 101, 102]);
  });

  it("reads the real LeRobot dataset with mean/std normalisation, loading only the split", async () => {
    const ds = await openLeRobot(G1);
    const stats = ds.stats();
    const norms = {
      action: affineFor(stats.action!, "mean_std"),
      "observation.state": affineFor(stats["observation.state"]!, "mean_std"),
    };
    const loads: number[] = [];
    const src = await createWindowSource({
      dataset: ds,
      episodes: [8, 9],
      obs: [{ name: "state", key: "observation.state" }],
      action: "action",
      horizon: 50,
      actionDim: 32,
      obsDims: { state: 32 },
      norms,
      onLoad: (n) => loads.push(n),
    });
    expect(loads).toEqual([1, 2]);
    expect(src.frames).toBe(445 + 478);
    const raw = (await ds.readEpisode(9, ["action"])).action as Float32Array;
    const last = src.batchAt([src.frames - 1]);
    for (let d = 0; d < 26; d++) {
      const want = Math.fround(raw[477 * 26 + d]! * norms.action.scale[d]! + norms.action.offset[d]!);
      expect(last.actions[49 * 32 + d]).toBe(want);
    }
    expect(last.actions[26]).toBe(0);
    expect(last.isPad.reduce((s, x) => s + x, 0)).toBe(49);
    const batch = src.next(16, new Rng(1));
    expect(batch.obs.state).toHaveLength(16 * 32);
    expect(batch.actions).toHaveLength(16 * 50 * 32);
  });

  it("names the problem: unknown column, missing norm, too small actionDim, unknown episode", async () => {
    const base = {
      dataset: toy(),
      episodes: [0],
      obs: [{ name: "state", key: "state" }],
      action: "action",
      horizon: 2,
      actionDim: 2,
      norms: { action: identity(2), state: identity(3) },
    };
    await expect(createWindowSource({ ...base, action: "act" })).rejects.toThrow(
      /action column 'act' not in the dataset/,
    );
    await expect(createWindowSource({ ...base, norms: { action: identity(2) } })).rejects.toThrow(
      /no normalisation for column 'state'/,
    );
    await expect(createWindowSource({ ...base, actionDim: 1 })).rejects.toThrow(
      /2 dims, more than the model's actionDim 1/,
    );
    await expect(createWindowSource({ ...base, episodes: [4] })).rejects.toThrow(/episode 4 not in the dataset/);
    await expect(createWindowSource({ ...base, obsDims: { state: 2 } })).rejects.toThrow(/more than obsDims 2/);
  });
});

describe("splitEpisodes", () => {
  it("parses python-style ranges, lists, fractions and counts", () => {
    expect(splitEpisodes(10, "8:10")).toEqual({ train: [0, 1, 2, 3, 4, 5, 6, 7], val: [8, 9] });
    expect(splitEpisodes(10, ":2").val).toEqual([0, 1]);
    expect(splitEpisodes(10, "-2:").val).toEqual([8, 9]);
    expect(splitEpisodes(10, "3,7").val).toEqual([3, 7]);
    expect(splitEpisodes(10, 0.1)).toEqual({ train: [0, 1, 2, 3, 4, 5, 6, 7, 8], val: [9] });
    expect(splitEpisodes(10, "0.25").val).toEqual([7, 8, 9]);
    expect(splitEpisodes(10, 0).val).toEqual([]);
    expect(splitEpisodes(10, 2).val).toEqual([8, 9]);
    expect(splitEpisodes([4, 6, 9], "0:1")).toEqual({ train: [6, 9], val: [4] });
    const r = splitEpisodes(20, 0.2, new Rng(3));
    expect(r.val).toHaveLength(4);
    expect(r.train).toHaveLength(16);
    expect(splitEpisodes(20, 0.2, new Rng(3))).toEqual(r);
    expect([...r.train, ...r.val].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it("throws a clear error on a bad spec", () => {
    expect(() => splitEpisodes(10, "8:12")).toThrow(
      /bad validation split '8:12' for 10 episodes: end 12 outside 0..10/,
    );
    expect(() => splitEpisodes(10, "5:5")).toThrow(/empty/);
    expect(() => splitEpisodes(10, "abc")).toThrow(/bad validation split 'abc'/);
    expect(() => splitEpisodes(10, "1.5")).toThrow(/count must be an integer/);
    expect(() => splitEpisodes(10, "0:10")).toThrow(/no episodes left for training/);
    expect(() => splitEpisodes(1, 0.5)).toThrow(/leave none for training/);
    expect(() => splitEpisodes(10, "1:2:3")).toThrow(/'start:end'/);
  });
});
