import { spawn } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EMBEDDING_META, defaultEmbeddingKey, embedDataset, statsBins } from "../../../datasets/embed/embed.ts";
import type { EmbeddingMeta } from "../../../datasets/embed/embed.ts";
import { ImageEncoder, modelMetadata, normalizeFrames, parseImageSize } from "../../../datasets/embed/encoder.ts";
import { openDataset } from "../../../datasets/open.ts";
import type { OpenedDataset } from "../../../datasets/open.ts";
import { ffmpegAvailable } from "../../../datasets/video/ffmpeg.ts";
import { loadEpisodeFrames } from "../../../datasets/video/frames.ts";
import { pathExists } from "../../../policy/io/files.ts";
import { encodeModel } from "../../../policy/onnx/proto.ts";
import { cameraSpecs } from "../../../sim/camera.ts";
import { collect } from "../../../sim/collect.ts";
import { runDatasetCli } from "../../cli/dataset-cli.ts";
import { G1, removeDir, tempDir } from "../lerobot/helpers.ts";
import { convEncoder, convReference, writeConvEncoder } from "./encoders.ts";
import type { ConvEncoderSpec } from "./encoders.ts";

const CAM = "observation.images.front";
const why = ffmpegAvailable()
  ? undefined
  : "ffmpeg/ffprobe not on the PATH (test/setup/install-ffmpeg.sh installs them)";
if (why) console.warn(`skipping the embed tests that decode video: ${why}`);

const POOLED: ConvEncoderSpec = { width: 32, height: 32, dim: 8, kernel: 4, output: "pooled", seed: 1 };
const TOKENS: ConvEncoderSpec = {
  width: 32,
  height: 48,
  dim: 6,
  kernel: 8,
  output: "tokens",
  seed: 2,
  dynamicSize: true,
  metadata: { image_mean: "0.5,0.5,0.5", image_std: "[0.5, 0.5, 0.5]" },
};

let dir: string;
beforeAll(async () => {
  dir = await tempDir("embed");
});
afterAll(async () => {
  delete process.env.ACTIONFLOW_CACHE_DIR;
  await removeDir(dir);
});

describe("ImageEncoder", () => {
  it("reads the image input, the output shape and the graph's size; mean and std default to ImageNet's with a message", async () => {
    const file = join(dir, "pooled.onnx");
    await writeConvEncoder(file, POOLED);
    const messages: string[] = [];
    const enc = await ImageEncoder.load(file, { log: (m) => messages.push(m) });
    try {
      const d = enc.describe();
      expect(d).toMatchObject({ input: "pixel_values", output: "pooler_output", shape: [8] });
      expect(d.size).toEqual({ width: 32, height: 32 });
      expect(d.sources).toEqual({ size: "graph", mean: "imagenet", std: "imagenet" });
      expect(d.mean).toEqual([0.485, 0.456, 0.406]);
      expect(messages.join("\n")).toContain("using ImageNet's");
    } finally {
      await enc.release();
    }
  });

  it("takes size, mean and std from metadata_props, flags winning over them", async () => {
    const file = join(dir, "meta.onnx");
    await writeConvEncoder(file, {
      ...TOKENS,
      metadata: { image_size: "32x48", image_mean: "0.1,0.2,0.3", image_std: "[0.4, 0.5, 0.6]" },
    });
    expect(modelMetadata(await readFile(file), file)).toMatchObject({ image_size: "32x48" });
    const a = await ImageEncoder.load(file);
    expect(a.describe()).toMatchObject({
      size: { width: 32, height: 48 },
      mean: [0.1, 0.2, 0.3],
      std: [0.4, 0.5, 0.6],
      shape: [24, 6],
      sources: { size: "metadata", mean: "metadata", std: "metadata" },
    });
    await a.release();
    const b = await ImageEncoder.load(file, { size: { width: 16, height: 16 }, mean: [0, 0, 0] });
    expect(b.describe()).toMatchObject({
      size: { width: 16, height: 16 },
      shape: [4, 6],
      mean: [0, 0, 0],
      std: [0.4, 0.5, 0.6],
      sources: { size: "flag", mean: "flag", std: "metadata" },
    });
    await b.release();
  });

  it("reads Hugging Face's preprocessor_config.json beside the model", async () => {
    const sub = join(dir, "hf");
    await mkdir(sub, { recursive: true });
    await writeConvEncoder(join(sub, "model.onnx"), { ...TOKENS, metadata: {} });
    await writeFile(
      join(sub, "preprocessor_config.json"),
      JSON.stringify({
        do_center_crop: true,
        crop_size: { height: 24, width: 16 },
        size: { shortest_edge: 32 },
        image_mean: [0.485, 0.456, 0.406],
        image_std: [0.229, 0.224, 0.225],
        rescale_factor: 1 / 255,
      }),
    );
    const enc = await ImageEncoder.load(join(sub, "model.onnx"));
    expect(enc.describe()).toMatchObject({
      size: { width: 16, height: 24 },
      shape: [6, 6],
      sources: { size: "preprocessor_config", mean: "preprocessor_config", std: "preprocessor_config" },
    });
    await enc.release();
  });

  it("refuses a dynamic size with no size anywhere, asking for --size", async () => {
    const file = join(dir, "dynamic.onnx");
    await writeConvEncoder(file, { ...TOKENS, metadata: {} });
    await expect(ImageEncoder.load(file, { log: () => {} })).rejects.toThrow(
      `${file}: input 'pixel_values' has a dynamic size [N, 3, H, W] and neither metadata_props image_size nor preprocessor_config.json gives one; pass --size WxH`,
    );
  });

  it("refuses a size that differs from the graph's static one, naming both", async () => {
    const file = join(dir, "pooled-size.onnx");
    await writeConvEncoder(file, POOLED);
    await expect(ImageEncoder.load(file, { size: { width: 64, height: 64 }, log: () => {} })).rejects.toThrow(
      `${file}: input 'pixel_values' takes [N, 3, 32, 32], but the --size flag asks for 64x64`,
    );
  });

  it("refuses a rank-3 input and a 1-channel input, naming the file and the input", async () => {
    const rank3 = join(dir, "rank3.onnx");
    await writeConvEncoder(rank3, { ...POOLED, rank3: true });
    await expect(ImageEncoder.load(rank3)).rejects.toThrow(
      `${rank3}: input 'pixel_values' has rank 3; an encoder needs an image input [N, 3, H, W] float32 (inputs: 'pixel_values' float32 [batch, 32, 32])`,
    );
    const gray = join(dir, "gray.onnx");
    await writeConvEncoder(gray, { ...POOLED, channels: 1 });
    await expect(ImageEncoder.load(gray)).rejects.toThrow(
      `${gray}: input 'pixel_values' has 1 channels; an encoder needs an image input [N, 3, H, W] float32`,
    );
  });

  it("pads the last batch of a graph with a static batch size and gives the same values as a dynamic one", async () => {
    const fixed = join(dir, "fixed.onnx");
    const dynamic = join(dir, "pooled-again.onnx");
    await writeConvEncoder(fixed, { ...POOLED, batch: 4 });
    await writeConvEncoder(dynamic, POOLED);
    const rgb = Uint8Array.from({ length: 5 * 32 * 32 * 3 }, (_, i) => (i * 37) % 256);
    const a = await ImageEncoder.load(fixed, { log: () => {} });
    const b = await ImageEncoder.load(dynamic, { log: () => {} });
    expect(a.fixedBatch).toBe(4);
    const ya = await a.encode(rgb, 5);
    const yb = await b.encode(rgb, 5, { batch: 2 });
    expect(ya.length).toBe(5 * 8);
    for (let i = 0; i < ya.length; i++) expect(ya[i]).toBeCloseTo(yb[i]!, 5);
    const ref = convReference(POOLED, rgb, 5, b.describe());
    for (let i = 0; i < ya.length; i++) expect(ya[i]).toBeCloseTo(ref[i]!, 4);
    await a.release();
    await b.release();
  });

  it("normalises HWC uint8 to NCHW (x/255 - mean)/std", () => {
    const rgb = Uint8Array.from([0, 255, 51, 255, 0, 102]); // two pixels of a 2x1 frame
    const x = normalizeFrames(rgb, 1, { width: 2, height: 1 }, { mean: [0, 0.5, 0.2], std: [1, 0.5, 0.2] });
    const expected = [0, 1, (1 - 0.5) / 0.5, (0 - 0.5) / 0.5, (0.2 - 0.2) / 0.2, (0.4 - 0.2) / 0.2];
    expect(x.length).toBe(6);
    for (let i = 0; i < 6; i++) expect(x[i]).toBeCloseTo(expected[i]!, 6);
  });

  it("parses sizes and names the flag on a bad one", () => {
    expect(parseImageSize("224x160", "--size")).toEqual({ width: 224, height: 160 });
    expect(parseImageSize("224", "--size")).toEqual({ width: 224, height: 224 });
    expect(() => parseImageSize("224x", "--size")).toThrow(
      "--size: expected an image size WxH (e.g. 224x224), got '224x'",
    );
  });

  it("gives fewer histogram bins to a feature of many values", () => {
    expect(statsBins(768)).toBe(8192);
    expect(statsBins(257 * 768)).toBe(128);
    expect(statsBins(1e9)).toBe(64);
  });
});

describe.skipIf(why !== undefined)("dataset embed on a simulated reach dataset with a front camera", () => {
  let data: string;
  let cacheDir: string;
  beforeAll(async () => {
    data = join(dir, "reach");
    cacheDir = join(dir, "cache");
    await collect({ task: "reach", episodes: 3, seed: 0, out: data, cameras: cameraSpecs(["front"]) });
  });

  /** The encoder run directly (its own session) on the decoded, normalised frames of each episode. */
  async function direct(
    file: string,
    spec: ConvEncoderSpec,
    norm: { mean: number[]; std: number[] },
  ): Promise<{ ort: Float32Array[]; reference: Float64Array[] }> {
    const ds: OpenedDataset = await openDataset(data);
    const session = await ort.InferenceSession.create(file);
    const out: Float32Array[] = [];
    const reference: Float64Array[] = [];
    try {
      for (const ep of ds.dataset.episodes) {
        const f = (await loadEpisodeFrames(ds, ep.index, CAM, spec, { cacheDir }))!;
        const x = normalizeFrames(f.data, f.count, spec, norm);
        const name = session.outputNames[0]!;
        const y = await session.run({
          pixel_values: new ort.Tensor("float32", x, [f.count, 3, spec.height, spec.width]),
        });
        out.push(Float32Array.from(y[name]!.data as Float32Array));
        reference.push(convReference(spec, f.data, f.count, norm));
      }
    } finally {
      await session.release();
      ds.dataset.close();
    }
    return { ort: out, reference };
  }

  it("writes the embeddings of every frame, equal value by value to the encoder run on the decoded frames", async () => {
    const file = join(dir, "reach-pooled.onnx");
    await writeConvEncoder(file, POOLED);
    const out = join(dir, "reach-pooled");
    const r = await embedDataset({ dataset: data, encoder: file, camera: CAM, out, cacheDir, batch: 7, log: () => {} });
    expect(r).toMatchObject({ feature: "observation.embeddings.front", shape: [8], dim: 8, episodes: 3, skipped: [] });
    expect(r.copied).toEqual(["observation.state", "observation.environment_state", "action"]);
    expect(r.notCopied).toEqual([CAM]);

    const want = await direct(file, POOLED, { mean: r.encoder.mean, std: r.encoder.std });
    const src = await openDataset(data);
    const got = await openDataset(out);
    try {
      if (got.format !== "lerobot" || src.format !== "lerobot") throw new Error("expected LeRobot");
      expect(got.dataset.codebaseVersion).toBe("v3.0");
      expect(got.dataset.features["observation.embeddings.front"]).toMatchObject({ dtype: "float32", shape: [8] });
      expect(got.dataset.cameraKeys).toEqual([]);
      expect(got.dataset.tasks).toEqual(src.dataset.tasks);
      let frames = 0;
      for (const [k, ep] of src.dataset.episodes.entries()) {
        const cols = await got.dataset.readEpisode(k, ["observation.embeddings.front", "observation.state", "action"]);
        const srcCols = await src.dataset.readEpisode(ep.index, ["observation.state", "action"]);
        const e = cols["observation.embeddings.front"] as Float32Array;
        expect(e.length).toBe(ep.length * 8);
        // same session kind on the same inputs: identical; the float64 reference within float32 rounding
        expect(Buffer.from(e.buffer, e.byteOffset, e.byteLength).equals(Buffer.from(want.ort[k]!.buffer))).toBe(true);
        for (let i = 0; i < e.length; i++) expect(Math.abs(e[i]! - want.reference[k]![i]!)).toBeLessThan(1e-4);
        for (const c of ["observation.state", "action"])
          expect(Array.from(cols[c] as Float32Array)).toEqual(Array.from(srcCols[c] as Float32Array));
        frames += ep.length;
      }
      expect(r.frames).toBe(frames);
      // its statistics, as for any feature
      const s = got.dataset.stats()["observation.embeddings.front"]!;
      expect(s.count).toBe(frames);
      const all = want.ort.flatMap((a) => Array.from(a));
      for (let d = 0; d < 8; d++) {
        const col = all.filter((_, i) => i % 8 === d);
        expect(s.min[d]).toBeCloseTo(Math.min(...col), 5);
        expect(s.max[d]).toBeCloseTo(Math.max(...col), 5);
        expect(s.mean[d]).toBeCloseTo(col.reduce((a, b) => a + b, 0) / col.length, 5);
      }
    } finally {
      src.dataset.close();
      got.dataset.close();
    }
    const meta = JSON.parse(await readFile(join(out, "meta", EMBEDDING_META), "utf8")) as EmbeddingMeta;
    expect(meta.videos).toMatchObject({ copied: false, keys: [CAM] });
    expect(meta.episodes.map((e) => e.source_episode_index)).toEqual([0, 1, 2]);
    expect(meta.encoder.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("writes a [T, D] feature (CLI, --json) that train takes as T tokens", async () => {
    const file = join(dir, "reach-tokens.onnx");
    await writeConvEncoder(file, TOKENS);
    const out = join(dir, "reach-tokens");
    process.env.ACTIONFLOW_CACHE_DIR = cacheDir;
    const r = await runDatasetCli([
      "embed",
      data,
      "--encoder",
      file,
      "--camera",
      CAM,
      "--out",
      out,
      "--size",
      "32x48",
      "--batch",
      "16",
      "--json",
    ]);
    expect(r).toMatchObject({ feature: "observation.embeddings.front", shape: [24, 6], dim: 6, episodes: 3, out });
    expect(r.skipped).toEqual([]);
    expect(r.seconds).toBeGreaterThan(0);
    expect((r.encoder as { sources: unknown }).sources).toEqual({ size: "flag", mean: "metadata", std: "metadata" });

    const want = await direct(file, TOKENS, { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
    const got = await openDataset(out);
    try {
      for (const [k] of got.dataset.episodes.entries()) {
        const e = (await got.dataset.readEpisode(k, ["observation.embeddings.front"]))[
          "observation.embeddings.front"
        ] as Float32Array;
        expect(Buffer.from(e.buffer, e.byteOffset, e.byteLength).equals(Buffer.from(want.ort[k]!.buffer))).toBe(true);
        for (let i = 0; i < e.length; i++) expect(Math.abs(e[i]! - want.reference[k]![i]!)).toBeLessThan(1e-4);
      }
    } finally {
      got.dataset.close();
    }

    const config = join(dir, "tiny.json");
    await writeFile(
      config,
      JSON.stringify({ transformer: { width: 32, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 16 } }),
    );
    const run = join(dir, "run-tokens");
    const t = await cli([
      "train",
      "--dataset",
      out,
      "--out",
      run,
      "--obs",
      "state=observation.state,front=observation.embeddings.front",
      "--steps",
      "5",
      "--config",
      config,
      "--json",
    ]);
    expect(t.code, t.stderr).toBe(0);
    const res = JSON.parse(t.stdout.trimEnd().split("\n").pop()!) as { steps: number; trainLoss: number };
    expect(res.steps).toBe(5);
    expect(Number.isFinite(res.trainLoss)).toBe(true);
    const head = JSON.parse(await readFile(join(run, "checkpoints", "step-000005", "config.json"), "utf8")) as {
      obs: { name: string; key: string; shape: number[] }[];
    };
    expect(head.obs).toContainEqual({ name: "front", key: "observation.embeddings.front", shape: [24, 6] });
  });

  it("refuses an unknown camera key and a wrong encoder, naming them, and leaves no output", async () => {
    const file = join(dir, "reach-ok.onnx");
    await writeConvEncoder(file, POOLED);
    const out = join(dir, "refused");
    await expect(
      embedDataset({ dataset: data, encoder: file, camera: "observation.images.wrist", out, log: () => {} }),
    ).rejects.toThrow(`'observation.images.wrist' is not a camera feature (cameras: ${CAM})`);
    const gray = join(dir, "reach-gray.onnx");
    await writeFile(gray, encodeModel(convEncoder({ ...POOLED, channels: 1 })));
    await expect(embedDataset({ dataset: data, encoder: gray, camera: CAM, out, log: () => {} })).rejects.toThrow(
      `${gray}: input 'pixel_values' has 1 channels`,
    );
    expect(await pathExists(out)).toBe(false);
    expect(defaultEmbeddingKey("observation.images.cam_high")).toBe("observation.embeddings.cam_high");
  });
});

describe.skipIf(why !== undefined)("dataset embed on the G1 dataset (AV1 640x480, videos for 6 of 10 episodes)", () => {
  it("refuses by default naming the first episode without video, and with missing-video skip embeds the other six", async () => {
    const file = join(dir, "g1.onnx");
    const spec: ConvEncoderSpec = { width: 64, height: 48, dim: 16, kernel: 8, output: "pooled", seed: 3 };
    await writeConvEncoder(file, spec);
    const cacheDir = join(dir, "cache");
    const out = join(dir, "g1-embedded");
    await expect(
      embedDataset({ dataset: G1, encoder: file, camera: "observation.images.cam_high", out, cacheDir, log: () => {} }),
    ).rejects.toThrow(
      /episode 0 has no video for 'observation.images.cam_high' \(.*episode_000000\.mp4 is missing\), nor do episodes 3, 6, 9; skip such episodes with --missing-video skip/,
    );
    const messages: string[] = [];
    const r = await embedDataset({
      dataset: G1,
      encoder: file,
      camera: "observation.images.cam_high",
      out,
      cacheDir,
      missingVideo: "skip",
      log: (m) => messages.push(m),
    });
    expect(r.skipped.map((s) => s.episode)).toEqual([0, 3, 6, 9]);
    expect(messages.filter((m) => m.startsWith("skipping: episode"))).toHaveLength(4);
    expect(r.episodes).toBe(6);
    const ds = await openDataset(out);
    const src = await openDataset(G1);
    try {
      const lengths = [1, 2, 4, 5, 7, 8].map((e) => src.dataset.episodes.find((x) => x.index === e)!.length);
      expect(ds.dataset.episodes.map((e) => e.length)).toEqual(lengths);
      expect(r.frames).toBe(lengths.reduce((a, b) => a + b, 0));
    } finally {
      ds.dataset.close();
      src.dataset.close();
    }
    const meta = JSON.parse(await readFile(join(out, "meta", EMBEDDING_META), "utf8")) as EmbeddingMeta;
    expect(meta.episodes.map((e) => e.source_episode_index)).toEqual([1, 2, 4, 5, 7, 8]);
    expect(meta.skipped.map((s) => s.episode)).toEqual([0, 3, 6, 9]);
  });
});

/** Runs the real CLI (`node cli/bin.js ...`). */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["cli/bin.js", ...args], {
    cwd: process.cwd(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((res, rej) => {
    child.on("error", rej);
    child.on("close", (code) => res({ code, stdout, stderr }));
  });
}
