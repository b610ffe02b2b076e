import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDataset } from "../../../datasets/open.ts";
import type { OpenedDataset } from "../../../datasets/open.ts";
import { datasetCacheDir } from "../../../datasets/video/cache.ts";
import { decodeVideo, ffmpegAvailable, probeVideo } from "../../../datasets/video/ffmpeg.ts";
import { episodesWithVideo, loadEpisodeFrames, matchTimestamps } from "../../../datasets/video/frames.ts";
import { G1, G1_COLUMNS, copyG1, readAllRows, removeDir, tempDir, writeRows } from "../lerobot/helpers.ts";

const CAM = "observation.images.cam_high";
const why = ffmpegAvailable()
  ? undefined
  : "ffmpeg/ffprobe not on the PATH (test/setup/install-ffmpeg.sh installs them)";
if (why) console.warn(`skipping the video decoding tests: ${why}`);

describe("matchTimestamps", () => {
  const times = Float64Array.from([0, 1 / 30, 2 / 30, 3 / 30]);
  it("picks the nearest frame within the tolerance", () => {
    expect(matchTimestamps(times, [0, 2 / 30 + 5e-5, 1 / 30 - 5e-5], 1e-4, () => "x")).toEqual([0, 2, 1]);
  });
  it("throws the caller's message when the nearest frame is farther than the tolerance", () => {
    expect(() => matchTimestamps(times, [0.045], 1e-4, (q, n) => `q ${q} nearest ${n?.toFixed(4)}`)).toThrow(
      "q 0.045 nearest 0.0333",
    );
  });
});

describe.skipIf(why !== undefined)("camera frames of the real G1 dataset (AV1 640x480, v2.1)", () => {
  let ds: OpenedDataset;
  let cacheDir: string;
  beforeAll(async () => {
    ds = await openDataset(G1);
    cacheDir = await tempDir("frames-cache");
  });
  afterAll(async () => {
    ds.dataset.close();
    await removeDir(cacheDir);
  });

  it("lists which episodes carry their video", async () => {
    if (ds.format !== "lerobot") throw new Error("expected LeRobot");
    expect(ds.dataset.cameraKeys).toEqual([CAM]);
    expect(await episodesWithVideo(ds.dataset, CAM)).toEqual({ present: [1, 2, 4, 5, 7, 8], missing: [0, 3, 6, 9] });
  });

  it("decodes episode 1 to 96x72, one frame per parquet frame, identical with and without the cache", async () => {
    const size = { width: 96, height: 72 };
    const direct = await loadEpisodeFrames(ds, 1, CAM, size, { cache: false });
    const first = await loadEpisodeFrames(ds, 1, CAM, size, { cacheDir });
    const cached = await loadEpisodeFrames(ds, 1, CAM, size, { cacheDir });
    expect(direct!.count).toBe(393);
    expect(direct!.data.length).toBe(393 * 72 * 96 * 3);
    // (Buffer.equals: vitest's deep equality walks 8 MB element by element)
    expect(Buffer.from(first!.data).equals(Buffer.from(direct!.data))).toBe(true);
    expect(Buffer.from(cached!.data).equals(Buffer.from(direct!.data))).toBe(true);
    // one .rgb + one .json per (video, size) in the dataset's cache folder
    if (ds.format !== "lerobot") throw new Error("expected LeRobot");
    const files = (await readdir(datasetCacheDir(ds.dataset.dir, cacheDir))).sort();
    expect(files.map((f) => f.replace(/^[0-9a-f]+-/, ""))).toEqual(["96x72.json", "96x72.rgb"]);
    // a real picture: not one flat colour, and consecutive frames differ less than far-apart ones
    const fb = 96 * 72 * 3;
    const frame = (k: number) => direct!.data.subarray(k * fb, (k + 1) * fb);
    const diff = (a: Uint8Array, b: Uint8Array) => a.reduce((s, v, i) => s + Math.abs(v - b[i]!), 0) / a.length;
    const f0 = frame(0);
    const mean = f0.reduce((s, v) => s + v, 0) / f0.length;
    expect(f0.reduce((s, v) => s + (v - mean) ** 2, 0) / f0.length).toBeGreaterThan(100);
    expect(diff(frame(100), frame(101))).toBeLessThan(diff(frame(0), frame(390)));
  });

  it("frame times come from the integer pts and the stream time base", async () => {
    if (ds.format !== "lerobot") throw new Error("expected LeRobot");
    const file = ds.dataset.videoFile(2, CAM).file;
    const probe = await probeVideo(file);
    expect(probe.codec).toBe("av1");
    expect([probe.width, probe.height]).toEqual([640, 480]);
    const part = await decodeVideo(file, { width: 32, height: 24 }, { start: 5, duration: 1 });
    expect(part.count).toBe(30);
    for (let k = 0; k < part.count; k++) expect(part.times[k]).toBeCloseTo(5 + k / 30, 6);
  });

  it("refuses an episode without video naming it and the file, or skips it with a message", async () => {
    await expect(loadEpisodeFrames(ds, 0, CAM, { width: 32, height: 24 })).rejects.toThrow(
      /episode 0 has no video for 'observation.images.cam_high' \(.*episode_000000\.mp4 is missing\)/,
    );
    const messages: string[] = [];
    const skipped = await loadEpisodeFrames(
      ds,
      3,
      CAM,
      { width: 32, height: 24 },
      {
        missing: "skip",
        log: (m) => messages.push(m),
      },
    );
    expect(skipped).toBeUndefined();
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatch(/episode 3 .*episode_000003\.mp4/);
  });

  it("refuses a feature that is not a camera, naming the cameras", async () => {
    await expect(loadEpisodeFrames(ds, 1, "observation.state", { width: 32, height: 24 })).rejects.toThrow(
      /'observation.state' is not a camera feature \(cameras: observation.images.cam_high/,
    );
  });
});

describe.skipIf(why !== undefined)("timestamps that no frame matches", () => {
  let dir: string;
  afterAll(async () => removeDir(dir));
  it("is an error naming the episode, key and timestamp", async () => {
    dir = await copyG1();
    // shift frame 10's timestamp by 5 ms: farther than the 1e-4 s tolerance from every frame
    const file = join(dir, "data/chunk-000/episode_000001.parquet");
    const rows = await readAllRows(file);
    rows[10]!.timestamp = Number(rows[10]!.timestamp) + 0.005;
    await rm(file);
    await writeRows(file, rows, G1_COLUMNS);
    const ds = await openDataset(dir);
    try {
      await expect(loadEpisodeFrames(ds, 1, CAM, { width: 16, height: 12 }, { cache: false })).rejects.toThrow(
        /episode 1, key 'observation.images.cam_high': no frame within 0.0001 s of timestamp 0.338333/,
      );
    } finally {
      ds.dataset.close();
    }
  });
});
