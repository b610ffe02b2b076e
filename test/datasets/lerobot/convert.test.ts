import { describe, expect, it, afterAll } from "vitest";
import { join } from "node:path";
import { convertToV3 } from "../../../datasets/lerobot/convert.ts";
import { openLeRobot } from "../../../datasets/lerobot/reader.ts";
import { openRobomimic } from "../../../datasets/robomimic/reader.ts";
import { G1, removeDir, tempDir } from "./helpers.ts";
import { writeRobomimic } from "../robomimic/fixture.ts";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await removeDir(d);
});

function sameBits(
  a: Float32Array | Float64Array | BigInt64Array,
  b: Float32Array | Float64Array | BigInt64Array,
): boolean {
  if (a.constructor !== b.constructor || a.length !== b.length) return false;
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return x.every((v, i) => v === y[i]);
}

describe("convertToV3", () => {
  it("converts the shared v2.1 dataset to v3.0 with the same frames, tasks and stats", async () => {
    const tmp = await tempDir("convert");
    dirs.push(tmp);
    const out = join(tmp, "g1-v3");
    const progress: number[] = [];
    const r = await convertToV3(G1, out, { dataFilesSizeInMb: 0.5, onEpisode: (d) => progress.push(d) });
    expect(r).toMatchObject({
      source: "lerobot",
      sourceVersion: "v2.1",
      episodes: 10,
      frames: 4236,
      out,
      features: ["observation.state", "action"],
      skipped: ["observation.images.cam_high"],
    });
    expect(r.dataFiles).toBeGreaterThan(1);
    expect(progress).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const src = await openLeRobot(G1);
    const dst = await openLeRobot(out);
    expect(dst.codebaseVersion).toBe("v3.0");
    expect(dst.fps).toBe(30);
    expect(dst.robotType).toBe(src.robotType);
    expect(dst.tasks).toEqual(src.tasks);
    expect(dst.episodes).toEqual(src.episodes);
    expect(dst.features["observation.state"]!.names).toEqual(src.features["observation.state"]!.names);
    const cols = ["observation.state", "action", "timestamp", "frame_index", "episode_index", "index", "task_index"];
    for (const e of src.episodes) {
      const a = await src.readEpisode(e.index, cols);
      const b = await dst.readEpisode(e.index, cols);
      for (const c of cols) expect(sameBits(a[c]!, b[c]!), `episode ${e.index} column ${c}`).toBe(true);
    }
    const s1 = src.stats().action!;
    const s2 = dst.stats().action!;
    expect(s2.count).toBe(s1.count);
    expect(s2.min).toEqual(s1.min);
    expect(s2.max).toEqual(s1.max);
    for (let d = 0; d < 26; d++) expect(s2.mean[d]).toBeCloseTo(s1.mean[d]!, 6);
  });

  it("converts a robomimic file (float64 -> float32, state, reward, done, fps from env_args)", async () => {
    const tmp = await tempDir("convert-rm");
    dirs.push(tmp);
    const file = join(tmp, "lift.hdf5");
    await writeRobomimic(file);
    const out = join(tmp, "lift-v3");
    const r = await convertToV3(file, out);
    expect(r).toMatchObject({
      source: "robomimic",
      episodes: 3,
      frames: 15,
      features: ["action", "observation.state", "next.reward", "next.done"],
    });
    expect(r.skipped).toContain("observation.agentview_image");
    const src = await openRobomimic(file);
    const dst = await openLeRobot(out);
    expect(dst.fps).toBe(20);
    expect(dst.robotType).toBe("Panda");
    expect(dst.tasks).toEqual(["Lift"]);
    expect(dst.features["observation.state"]!.names).toEqual(src.features["observation.state"]!.names);
    for (const e of src.episodes) {
      const a = await src.readEpisode(e.index, ["action", "observation.state", "next.done"]);
      const b = await dst.readEpisode(e.index, ["action", "observation.state", "next.done"]);
      expect(b.action).toEqual(Float32Array.from(a.action as Float64Array));
      expect(b["observation.state"]).toEqual(Float32Array.from(a["observation.state"] as Float64Array));
      expect(b["next.done"]).toEqual(a["next.done"]);
    }
    src.close();
    await expect(convertToV3(join(tmp, "nothing"), join(tmp, "x"))).rejects.toThrow(/nothing: dataset not found/);
  });
});
