import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collect } from "../../sim/collect.ts";
import { trainRun } from "../../training/run.ts";
import { exportOnnx } from "../../policy/onnx/export.ts";
import { OnnxPolicy } from "../../policy/runtime/onnx-policy.ts";
import { loadCheckpoint } from "../../policy/checkpoint/checkpoint.ts";
import { createTask } from "../../sim/tasks/index.ts";
import { selectObservation } from "../../sim/tasks/task.ts";
import { policyCameras } from "../../sim/camera.ts";
import { checkOnnxFile, onnxCheckerUnavailable } from "../policy/onnx/helpers.ts";
import { G1, removeDir, tempDir } from "../datasets/lerobot/helpers.ts";

const TINY = {
  transformer: { width: 32, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 16 },
  vision: { width: 16, channels: 16, groups: 4 },
};

let dir: string;
beforeAll(async () => {
  dir = await tempDir("camera-train");
  // 3 vision-only reach demonstrations with a 48x48 front camera (H.264: quick to encode)
  await collect({
    task: "reach",
    episodes: 3,
    seed: 0,
    out: join(dir, "D"),
    cameras: [{ name: "front", width: 48, height: 48 }],
    obs: ["state", "camera"],
    vcodec: "h264",
  });
}, 240_000);
afterAll(async () => {
  await removeDir(dir);
});

describe("an image policy", () => {
  it("trains on camera frames, exports a pixels-in graph the checker accepts, and samples from uint8 images", async () => {
    const r = await trainRun({
      dataset: join(dir, "D"),
      out: join(dir, "R"),
      obs: "state=observation.state,front=observation.images.front",
      config: TINY,
      steps: 3,
      batch: 4,
      horizon: 8,
      valEpisodes: "2:3",
      backend: "ort",
    });
    expect(r.steps).toBe(3);
    expect(Number.isFinite(r.valLoss)).toBe(true);
    const ckpt = await loadCheckpoint(r.checkpoint);
    const cam = ckpt.config.obs.find((f) => f.name === "front")!;
    expect(cam).toMatchObject({ kind: "image", shape: [48, 48, 3] });
    // an image policy recommends 16 actions per chunk to runtimes, within its horizon of 8
    expect(ckpt.config.nActionSteps).toBe(8);
    // per-channel stats of pixel / 255 computed from the decoded frames
    const st = ckpt.normalization.obs["front"]!.stats;
    expect(st.mean).toHaveLength(3);
    for (const m of st.mean) expect(m).toBeGreaterThan(0.05);
    for (const m of st.max) expect(m).toBeLessThanOrEqual(1);

    const ex = await exportOnnx(join(dir, "R"));
    expect(ex.inputs).toContain("obs.front");
    const why = onnxCheckerUnavailable();
    if (why === undefined) expect(checkOnnxFile(ex.onnx)).toBe("");
    else console.warn(`ONNX checker skipped: ${why}`);

    const policy = await OnnxPolicy.load(join(dir, "R"));
    try {
      const f = policy.features.find((x) => x.name === "front")!;
      expect(f).toMatchObject({ kind: "image", rawShape: [48, 48, 3], key: "observation.images.front" });
      expect(policyCameras(policy.features)).toEqual([{ name: "front", width: 48, height: 48 }]);
      expect(policy.nActionSteps).toBe(8);
      // the simulator's own observation (vision only: no environment state) drives it
      const task = await createTask("reach", { camera: { name: "front", width: 48, height: 48 } });
      task.reset(5);
      const obs = selectObservation(task.observe(), ["state", "camera"]);
      expect(obs["observation.environment_state"]).toBeUndefined();
      const a = await policy.sampleChunk(obs, { seed: 1 });
      expect(a).toHaveLength(8 * policy.actionDim);
      expect(a.every(Number.isFinite)).toBe(true);
      // the same seed and image give the same chunk; another image another one
      expect(Array.from(await policy.sampleChunk(obs, { seed: 1 }))).toEqual(Array.from(a));
      const dark = { ...obs, "observation.images.front": new Uint8Array(48 * 48 * 3) };
      expect(Array.from(await policy.sampleChunk(dark, { seed: 1 }))).not.toEqual(Array.from(a));
      // wrong dtype and size are refused naming the camera
      await expect(
        policy.sampleChunk({ ...obs, "observation.images.front": new Float32Array(48 * 48 * 3) }, { seed: 1 }),
      ).rejects.toThrow(/camera 'observation.images.front' must be uint8 RGB \[48, 48, 3\]/);
      await expect(
        policy.sampleChunk({ ...obs, "observation.images.front": new Uint8Array(16 * 16 * 3) }, { seed: 1 }),
      ).rejects.toThrow(/camera 'observation.images.front' has 768 bytes, expected 6912/);
    } finally {
      await policy.release();
    }
  }, 300_000);

  it("refuses episodes without video naming them, and an image size the encoder does not tile", async () => {
    await expect(
      trainRun({
        dataset: G1,
        out: join(dir, "G"),
        obs: "state=observation.state,cam=observation.images.cam_high",
        imageSize: "64x48",
        steps: 1,
      }),
    ).rejects.toThrow(
      /episodes 0 \(observation.images.cam_high\), 3 .*, 6 .*, 9 .* have no video; .*--missing-video skip/,
    );
    await expect(
      trainRun({
        dataset: G1,
        out: join(dir, "G2"),
        obs: "state=observation.state,cam=observation.images.cam_high",
        imageSize: "33x24",
        steps: 1,
      }),
    ).rejects.toThrow(/not a multiple of the stem patch 4/);
  }, 120_000);
});
