import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parquetWriteBuffer } from "hyparquet-writer";
import { afterAll, describe, expect, it } from "vitest";
import { openDataset } from "../../../datasets/open.ts";
import { ffmpegAvailable } from "../../../datasets/video/ffmpeg.ts";
import { loadEpisodeFrames } from "../../../datasets/video/frames.ts";
import { encodePng } from "../../../eval/frames.ts";
import { removeDir, tempDir } from "../lerobot/helpers.ts";

const why = ffmpegAvailable() ? undefined : "ffmpeg not on the PATH (test/setup/install-ffmpeg.sh)";
if (why) console.warn(`skipping the image-feature test: ${why}`);

/** A v2.1 dataset of one 5-frame episode whose camera is an `image` feature: PNGs in a {bytes, path} struct. */
async function imageDataset(dir: string, frames: Uint8Array[], w: number, h: number): Promise<void> {
  const n = frames.length;
  await mkdir(join(dir, "meta"), { recursive: true });
  await mkdir(join(dir, "data/chunk-000"), { recursive: true });
  const scalar = (dtype: string) => ({ dtype, shape: [1], names: null });
  const info = {
    codebase_version: "v2.1",
    fps: 10,
    chunks_size: 1000,
    data_path: "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
    features: {
      "observation.image": { dtype: "image", shape: [h, w, 3], names: ["height", "width", "channel"] },
      timestamp: scalar("float32"),
      frame_index: scalar("int64"),
      episode_index: scalar("int64"),
      index: scalar("int64"),
      task_index: scalar("int64"),
    },
  };
  await writeFile(join(dir, "meta/info.json"), JSON.stringify(info));
  await writeFile(
    join(dir, "meta/episodes.jsonl"),
    JSON.stringify({ episode_index: 0, tasks: ["look"], length: n }) + "\n",
  );
  await writeFile(join(dir, "meta/tasks.jsonl"), JSON.stringify({ task_index: 0, task: "look" }) + "\n");
  const buf = parquetWriteBuffer({
    schema: [
      { name: "schema", num_children: 6 },
      { name: "observation.image", repetition_type: "OPTIONAL", num_children: 2 },
      { name: "bytes", type: "BYTE_ARRAY", repetition_type: "OPTIONAL" },
      { name: "path", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
      { name: "timestamp", type: "FLOAT", repetition_type: "OPTIONAL" },
      { name: "frame_index", type: "INT64", repetition_type: "OPTIONAL" },
      { name: "episode_index", type: "INT64", repetition_type: "OPTIONAL" },
      { name: "index", type: "INT64", repetition_type: "OPTIONAL" },
      { name: "task_index", type: "INT64", repetition_type: "OPTIONAL" },
    ],
    columnData: [
      {
        name: "observation.image",
        data: frames.map((f, i) => ({ bytes: encodePng(f, w, h), path: `frame_${i}.png` })) as never,
      },
      { name: "timestamp", data: Float32Array.from({ length: n }, (_, i) => i / 10) as never },
      { name: "frame_index", data: Array.from({ length: n }, (_, i) => BigInt(i)) as never },
      { name: "episode_index", data: Array.from({ length: n }, () => 0n) as never },
      { name: "index", data: Array.from({ length: n }, (_, i) => BigInt(i)) as never },
      { name: "task_index", data: Array.from({ length: n }, () => 0n) as never },
    ],
  });
  await writeFile(join(dir, "data/chunk-000/episode_000000.parquet"), new Uint8Array(buf));
}

describe.skipIf(why !== undefined)("image features (encoded images in the parquet data)", () => {
  let dir: string;
  afterAll(async () => removeDir(dir));

  it("decode through loadEpisodeFrames to the exact pixels, cached like videos", async () => {
    dir = await tempDir("image-feature");
    const w = 16;
    const h = 12;
    const frames = Array.from({ length: 5 }, (_, k) =>
      Uint8Array.from({ length: w * h * 3 }, (_, i) => (i * 7 + k * 31) % 256),
    );
    await imageDataset(join(dir, "ds"), frames, w, h);
    const ds = await openDataset(join(dir, "ds"));
    try {
      if (ds.format !== "lerobot") throw new Error("expected LeRobot");
      expect(ds.dataset.cameraKeys).toEqual(["observation.image"]);
      for (const pass of ["decode", "cached"]) {
        const f = await loadEpisodeFrames(
          ds,
          0,
          "observation.image",
          { width: w, height: h },
          {
            cacheDir: join(dir, "cache"),
          },
        );
        expect(f!.count, pass).toBe(5);
        for (let k = 0; k < 5; k++)
          expect(
            Buffer.from(f!.data.subarray(k * w * h * 3, (k + 1) * w * h * 3)).equals(Buffer.from(frames[k]!)),
            pass,
          ).toBe(true);
      }
    } finally {
      ds.dataset.close();
    }
  });
});
