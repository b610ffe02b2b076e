import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FFMPEG, ffmpegAvailable } from "../../../datasets/video/ffmpeg.ts";
import { exportOnnx } from "../../../policy/onnx/export.ts";
import { IR_VERSION, OPSET, encodeModel, type ModelProto } from "../../../policy/onnx/proto.ts";
import { CAMERA_INPUTS_METADATA, areaMatrix, resizeNodes } from "../../../policy/onnx/resize.ts";
import { Rng } from "../../../policy/random.ts";
import { OnnxPolicy } from "../../../policy/runtime/onnx-policy.ts";
import { policyCameras } from "../../../sim/camera.ts";
import { collect } from "../../../sim/collect.ts";
import { createTask } from "../../../sim/tasks/index.ts";
import { trainRun } from "../../../training/run.ts";
import { removeDir, tempDir } from "../../datasets/lerobot/helpers.ts";
import { checkOnnxFile, maxAbsDiff, onnxCheckerUnavailable } from "./helpers.ts";
import * as ort from "onnxruntime-node";

const CAM = "observation.images.front";
const why = ffmpegAvailable()
  ? undefined
  : "ffmpeg/ffprobe not on the PATH (test/setup/install-ffmpeg.sh installs them)";
if (why) console.warn(`skipping the in-graph resize tests that need ffmpeg: ${why}`);

/** The float64 reference of the area resize (rounded half to even, as the graph's Round), uint8 NHWC. */
function areaResize(rgb: Uint8Array, from: { width: number; height: number }, to: typeof from): Uint8Array {
  const ah = areaMatrix(from.height, to.height);
  const aw = areaMatrix(from.width, to.width);
  const out = new Uint8Array(to.width * to.height * 3);
  for (let i = 0; i < to.height; i++)
    for (let j = 0; j < to.width; j++)
      for (let c = 0; c < 3; c++) {
        let acc = 0;
        for (let y = 0; y < from.height; y++) {
          const wy = ah[i * from.height + y]!;
          if (wy === 0) continue;
          for (let x = 0; x < from.width; x++) acc += wy * aw[j * from.width + x]! * rgb[(y * from.width + x) * 3 + c]!;
        }
        const r = Math.round(acc);
        out[(i * to.width + j) * 3 + c] = Math.abs(acc - Math.trunc(acc)) === 0.5 && r % 2 === 1 ? r - 1 : r;
      }
  return out;
}

/**
 * ffmpeg's own area scaling of one rgb24 frame, reading and writing every pixel's chroma
 * (`full_chroma_inp`, `full_chroma_int`): by default swscale reads an RGB input's chroma at half the
 * width, which blurs colour detail before the area filter sees it.
 */
function ffmpegArea(rgb: Uint8Array, from: { width: number; height: number }, to: typeof from): Uint8Array {
  const r = spawnSync(
    FFMPEG,
    [
      ...["-hide_banner", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", `${from.width}x${from.height}`],
      ...[
        "-i",
        "pipe:0",
        "-vf",
        `scale=${to.width}:${to.height}:flags=area+full_chroma_inp+full_chroma_int`,
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
      ],
      "pipe:1",
    ],
    { input: rgb, maxBuffer: 1 << 26 },
  );
  if (r.status !== 0) throw new Error(`ffmpeg failed: ${r.stderr.toString()}`);
  return new Uint8Array(r.stdout);
}

/** The resize nodes alone as a model: uint8 [1, h, w, 3] -> uint8 [1, H, W, 3]. */
function resizeModel(from: { width: number; height: number }, to: typeof from): ModelProto {
  const { nodes, initializers } = resizeNodes("pixels", "resized", from, to, "r/");
  const io = (name: string, s: typeof from) => ({
    name,
    type: {
      tensorType: {
        elemType: 2,
        shape: { dim: [{ dimValue: 1 }, { dimValue: s.height }, { dimValue: s.width }, { dimValue: 3 }] },
      },
    },
  });
  return {
    irVersion: IR_VERSION,
    opsetImport: [{ domain: "", version: OPSET }],
    graph: {
      name: "resize",
      node: nodes,
      initializer: initializers,
      input: [io("pixels", from)],
      output: [io("resized", to)],
    },
  };
}

async function runResize(
  model: ModelProto,
  rgb: Uint8Array,
  from: { width: number; height: number },
): Promise<Uint8Array> {
  const s = await ort.InferenceSession.create(encodeModel(model));
  try {
    const y = await s.run({ pixels: new ort.Tensor("uint8", rgb, [1, from.height, from.width, 3]) });
    return Uint8Array.from(y.resized!.data as Uint8Array);
  } finally {
    await s.release();
  }
}

describe("areaMatrix", () => {
  it("gives each output pixel the coverage-weighted mean of the input pixels it covers", () => {
    expect(Array.from(areaMatrix(3, 2))).toEqual([2 / 3, 1 / 3, 0, 0, 1 / 3, 2 / 3]);
    expect(Array.from(areaMatrix(4, 2))).toEqual([0.5, 0.5, 0, 0, 0, 0, 0.5, 0.5]);
    expect(Array.from(areaMatrix(5, 5))).toEqual([
      1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1,
    ]);
    const m = areaMatrix(640, 96);
    for (let i = 0; i < 96; i++) {
      let s = 0;
      for (let y = 0; y < 640; y++) s += m[i * 640 + y]!;
      expect(s).toBeCloseTo(1, 12);
    }
  });
});

let dir: string;
beforeAll(async () => {
  dir = await tempDir("resize");
});
afterAll(async () => {
  await removeDir(dir);
});

describe.skipIf(why !== undefined)("in-graph area resize", () => {
  it("matches ffmpeg's area scaling of the same frame and its float64 reference within one level", async () => {
    const task = await createTask("reach", { camera: { name: "front", width: 100, height: 75 } });
    task.reset(4);
    const frame = task.observe()[CAM] as Uint8Array;
    const rng = new Rng(3);
    const noise = Uint8Array.from({ length: 100 * 75 * 3 }, () => Math.floor(rng.uniform() * 256));
    for (const [from, to] of [
      [
        { width: 100, height: 75 },
        { width: 32, height: 32 },
      ],
      [
        { width: 100, height: 75 },
        { width: 40, height: 30 },
      ],
    ] as const) {
      for (const img of [frame, noise]) {
        const got = await runResize(resizeModel(from, to), img, from);
        const ff = ffmpegArea(img, from, to);
        expect(got.length).toBe(ff.length);
        expect(maxAbsDiff(got, ff)).toBeLessThanOrEqual(1);
        expect(maxAbsDiff(got, areaResize(img, from, to))).toBeLessThanOrEqual(1);
      }
    }
  });

  it("export --camera-input: a trained image policy takes its native size and samples what the trained size gives", async () => {
    await collect({
      task: "reach",
      episodes: 3,
      seed: 0,
      out: join(dir, "D"),
      cameras: [{ name: "front", width: 32, height: 32 }],
      obs: ["state", "camera"],
      vcodec: "h264",
    });
    const run = join(dir, "R");
    await trainRun({
      dataset: join(dir, "D"),
      out: run,
      obs: `state=observation.state,front=${CAM}`,
      config: {
        transformer: { width: 32, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 16 },
        vision: { width: 16, channels: 16, groups: 4 },
      },
      steps: 2,
      batch: 4,
      horizon: 8,
      valEpisodes: "2:3",
      backend: "ort",
    });
    const plain = await exportOnnx(run, { out: join(dir, "plain.onnx") });
    const native = { width: 100, height: 75 };
    const ex = await exportOnnx(run, { out: join(dir, "native.onnx"), cameraInputs: { front: native } });
    expect(ex.cameraInputs).toEqual({ front: native });
    expect(plain.cameraInputs).toBeUndefined();
    const unavailable = onnxCheckerUnavailable();
    if (unavailable === undefined) expect(checkOnnxFile(ex.onnx)).toBe("");
    else console.warn(`ONNX checker skipped: ${unavailable}`);

    const a = await OnnxPolicy.load(ex.onnx, { threads: 1 });
    const b = await OnnxPolicy.load(plain.onnx, { threads: 1 });
    try {
      expect(a.features.find((f) => f.name === "front")).toMatchObject({
        key: CAM,
        rawShape: [75, 100, 3],
        kind: "image",
      });
      expect(policyCameras(a.features)).toEqual([{ name: "front", width: 100, height: 75 }]);
      expect(JSON.parse(a.metadata[CAMERA_INPUTS_METADATA]!)).toEqual({
        front: { input: native, model: { width: 32, height: 32 }, filter: "area" },
      });
      const task = await createTask("reach", { camera: { name: "front", ...native } });
      task.reset(9);
      const obs = task.observe();
      const big = obs[CAM] as Uint8Array;
      const small = areaResize(big, native, { width: 32, height: 32 });
      const noise = Float32Array.from({ length: a.horizon * a.modelActionDim }, (_, i) => Math.sin(i));
      const state = obs["observation.state"]!;
      const x = await a.sampleChunk({ "observation.state": state, [CAM]: big }, { noise });
      const y = await b.sampleChunk({ "observation.state": state, [CAM]: small }, { noise });
      expect(maxAbsDiff(x, y)).toBeLessThanOrEqual(1e-4);
      // the pixels do reach the head: a dark frame gives another chunk
      const dark = await a.sampleChunk({ "observation.state": state, [CAM]: new Uint8Array(big.length) }, { noise });
      expect(maxAbsDiff(x, dark)).toBeGreaterThan(100 * maxAbsDiff(x, y));
      await expect(a.sampleChunk({ "observation.state": state, [CAM]: small }, { noise })).rejects.toThrow(
        `camera '${CAM}' has 3072 bytes, expected 22500 (RGB [75, 100, 3]`,
      );
    } finally {
      await a.release();
      await b.release();
    }
    await expect(
      exportOnnx(run, { out: join(dir, "x.onnx"), cameraInputs: { front: { width: 16, height: 16 } } }),
    ).rejects.toThrow("--camera-input front=16x16: smaller than the 32x32 the policy takes");
    await expect(exportOnnx(run, { out: join(dir, "x.onnx"), cameraInputs: { wrist: native } })).rejects.toThrow(
      "--camera-input wrist: the policy has no camera 'wrist' (cameras: front)",
    );
  }, 300_000);
});
