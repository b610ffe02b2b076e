import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ParquetFile } from "../../datasets/lerobot/parquet.ts";
import { openDataset } from "../../datasets/open.ts";
import { ffmpegAvailable, hasEncoder } from "../../datasets/video/ffmpeg.ts";
import { loadEpisodeFrames } from "../../datasets/video/frames.ts";
import { RayCamera, cameraSpecs, lookAtRotation, parseCameraSize } from "../../sim/camera.ts";
import { collect } from "../../sim/collect.ts";
import { evaluate } from "../../sim/eval.ts";
import { ExpertChunkPolicy } from "../../sim/policy.ts";
import type { Vec3 } from "../../sim/env.ts";
import { readActionflowMeta, replay } from "../../sim/replay.ts";
import { createTask, parseObsParts, selectObservation } from "../../sim/tasks/index.ts";
import type { Task } from "../../sim/tasks/index.ts";
import { REACH_RADIUS, type ReachTask } from "../../sim/tasks/reach.ts";
import { removeDir, tempDir } from "../datasets/lerobot/helpers.ts";

/** Pixel (column, row) of a world point seen by a camera at `pos` with rotation `rot` (columns = axes). */
function project(p: Vec3, pos: Vec3, rot: number[], fovy: number, w: number, h: number): [number, number] {
  const d = [p[0] - pos[0], p[1] - pos[1], p[2] - pos[2]];
  const x = rot[0]! * d[0]! + rot[3]! * d[1]! + rot[6]! * d[2]!;
  const y = rot[1]! * d[0]! + rot[4]! * d[1]! + rot[7]! * d[2]!;
  const z = rot[2]! * d[0]! + rot[5]! * d[1]! + rot[8]! * d[2]!;
  const t = Math.tan((fovy * Math.PI) / 360);
  const u = x / -z / (t * (w / h));
  const v = y / -z / t;
  return [Math.floor(((u + 1) / 2) * w), Math.floor(((1 - v) / 2) * h)];
}

describe("ray-cast camera", () => {
  let task: Task;
  beforeAll(async () => {
    task = await createTask("reach", { camera: { name: "front", width: 96, height: 96 } });
  });
  afterAll(() => task.dispose());

  it("puts observation.images.front, uint8 [96, 96, 3], beside the state", () => {
    task.reset(3);
    const obs = task.observe();
    expect(obs["observation.images.front"]).toBeInstanceOf(Uint8Array);
    expect(obs["observation.images.front"]!.length).toBe(96 * 96 * 3);
    expect(obs["observation.state"]).toBeInstanceOf(Float32Array);
    expect(Object.keys(selectObservation(obs, parseObsParts("state,camera"))).sort()).toEqual([
      "observation.images.front",
      "observation.state",
    ]);
  });

  it("shows the green target where the scene camera projects it, at its depth", () => {
    const cam = new RayCamera(task.env, { name: "front", width: 96, height: 96 });
    try {
      for (const seed of [0, 1, 2, 5]) {
        task.reset(seed);
        const target = (task as ReachTask).target;
        const { pos, rot } = cam.pose();
        const frame = cam.render();
        const [c, r] = project(target, pos, rot, 45, 96, 96);
        const i = r * 96 + c;
        const [R, G, B] = [frame.rgb[3 * i]!, frame.rgb[3 * i + 1]!, frame.rgb[3 * i + 2]!];
        expect(G).toBeGreaterThan(R + 30);
        expect(G).toBeGreaterThan(B + 30);
        // depth along the viewing axis of the sphere's centre, less at most its radius (the success radius)
        const d = [target[0] - pos[0], target[1] - pos[1], target[2] - pos[2]];
        const axial = -(rot[2]! * d[0]! + rot[5]! * d[1]! + rot[8]! * d[2]!);
        expect(frame.depth[i]).toBeLessThan(axial + 1e-3);
        expect(frame.depth[i]).toBeGreaterThan(axial - REACH_RADIUS - 1e-3);
      }
    } finally {
      cam.dispose();
    }
  });

  it("measures the table's depth exactly, and the target casts its shadow away from the light", () => {
    task.reset(4);
    const T = (task as ReachTask).target;
    const L: Vec3 = [T[0] + 1, T[1], T[2] + 0.5];
    // the shadow of the target's centre on the table z = 0, and the mirror point on the lit side
    const k = T[2] / (L[2] - T[2]);
    const S: Vec3 = [T[0] + (T[0] - L[0]) * k, T[1], 0];
    const M: Vec3 = [T[0] - (T[0] - L[0]) * k, T[1], 0];
    const h = 0.5;
    const pos: Vec3 = [T[0], T[1], h];
    const cam = new RayCamera(task.env, { name: "top", width: 64, height: 64, pos, lookAt: [T[0], T[1], 0], light: L });
    try {
      const f = cam.render();
      const rot = lookAtRotation(pos, [T[0], T[1], 0]);
      const at = (p: Vec3): number => {
        const [c, r] = project(p, pos, rot, 45, 64, 64);
        return r * 64 + c;
      };
      const lum = (i: number): number => f.rgb[3 * i]! + f.rgb[3 * i + 1]! + f.rgb[3 * i + 2]!;
      // straight down onto the lit side: the table's depth is the camera's height
      expect(f.depth[at(M)]).toBeCloseTo(h, 3);
      expect(lum(at(S))).toBeLessThan(0.8 * lum(at(M)));
      // without shadows both points are lit alike
      const flat = new RayCamera(task.env, {
        name: "top",
        width: 64,
        height: 64,
        pos,
        lookAt: [T[0], T[1], 0],
        light: L,
        shadows: false,
      });
      try {
        const g = flat.render();
        const lum2 = (i: number): number => g.rgb[3 * i]! + g.rgb[3 * i + 1]! + g.rgb[3 * i + 2]!;
        expect(Math.abs(lum2(at(S)) - lum2(at(M)))).toBeLessThan(0.1 * lum2(at(M)));
      } finally {
        flat.dispose();
      }
    } finally {
      cam.dispose();
    }
  });

  it("changes the image when only the target moves (the target's position is in the picture)", () => {
    task.reset(0);
    const a = task.observe()["observation.images.front"]!.slice();
    task.reset(1);
    const b = task.observe()["observation.images.front"]!;
    let changed = 0;
    for (let i = 0; i < a.length; i += 3) if (Math.abs(a[i + 1]! - b[i + 1]!) > 40) changed++;
    expect(changed).toBeGreaterThan(4);
  });

  it("sim eval draws the images the policy saw under each rollout picture", async () => {
    const outDir = await tempDir("eval-camera");
    try {
      const seenKeys: string[][] = [];
      const info = await evaluate({
        task: "reach",
        policy: (t) => {
          const expert = new ExpertChunkPolicy(t, { horizon: 16 });
          return {
            horizon: expert.horizon,
            actionDim: expert.actionDim,
            reset: (s: number) => expert.reset(s),
            sampleChunk: (obs, req) => {
              seenKeys.push(Object.keys(obs).sort());
              return expert.sampleChunk(obs, req);
            },
          };
        },
        episodes: 1,
        seed: 7,
        nActionSteps: 8,
        outDir,
        camera: [{ name: "front", width: 32, height: 32 }],
      });
      expect(info.per_episode).toHaveLength(1);
      expect(seenKeys[0]).toContain("observation.images.front");
      const svg = await readFile(join(outDir, "pictures", "eval_episode_0.svg"), "utf8");
      expect(svg.match(/<image /g)?.length).toBe(Math.min(8, seenKeys.length));
      expect(svg).toContain("observation.images.front: what the policy saw");
    } finally {
      await removeDir(outDir);
    }
  });

  it("parses sizes and camera flags, naming the bad value", () => {
    expect(parseCameraSize("96x64")).toEqual({ width: 96, height: 64 });
    expect(() => parseCameraSize("96")).toThrow("--camera-size: '96' is not a size WxH");
    expect(cameraSpecs(["front", "side"], ["64x64"])).toEqual([
      { name: "front", width: 64, height: 64 },
      { name: "side", width: 64, height: 64 },
    ]);
    expect(() => cameraSpecs(["a", "b", "c"], ["64x64", "32x32"])).toThrow("one size for all cameras or one per");
    expect(() => parseObsParts("state,depth")).toThrow("--obs: unknown part 'depth'");
  });
});

const why = !ffmpegAvailable()
  ? "ffmpeg not on the PATH (test/setup/install-ffmpeg.sh)"
  : !hasEncoder("libsvtav1")
    ? "this ffmpeg has no libsvtav1 encoder"
    : undefined;
if (why) console.warn(`skipping sim collect --camera: ${why}`);

describe.skipIf(why !== undefined)("sim collect with a camera writes LeRobot v3.0 video", () => {
  let out: string;
  beforeAll(async () => {
    out = join(await tempDir("collect-camera"), "ds");
    process.env.ACTIONFLOW_CACHE_DIR = join(out, "..", "cache"); // replay's decoded frames stay in the temp folder
  });
  afterAll(async () => removeDir(join(out, "..")));

  it("records observation.images.front as AV1 that decodes back to the rendered frames", async () => {
    const r = await collect({
      task: "reach",
      episodes: 2,
      seed: 0,
      out,
      cameras: [{ name: "front", width: 64, height: 64 }],
      obs: ["state", "camera"],
    });
    expect(r.episodes).toBe(2);
    const info = JSON.parse(await readFile(join(out, "meta/info.json"), "utf8")) as Record<string, any>;
    expect(info.video_path).toBe("videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4");
    expect(info.features["observation.environment_state"]).toBeUndefined();
    const feat = info.features["observation.images.front"];
    expect(feat.dtype).toBe("video");
    expect(feat.shape).toEqual([64, 64, 3]);
    expect(feat.names).toEqual(["height", "width", "channels"]);
    expect(feat.info["video.codec"]).toBe("av1");
    expect(feat.info["video.pix_fmt"]).toBe("yuv420p");
    expect(feat.info["video.fps"]).toBe(30);
    const epMeta = await ParquetFile.open(join(out, "meta/episodes/chunk-000/file-000.parquet"));
    const rows = await epMeta.readRows([
      "videos/observation.images.front/chunk_index",
      "videos/observation.images.front/file_index",
      "videos/observation.images.front/from_timestamp",
      "videos/observation.images.front/to_timestamp",
      "length",
    ]);
    expect(Number(rows[0]!["videos/observation.images.front/from_timestamp"])).toBe(0);
    expect(rows[1]!["videos/observation.images.front/from_timestamp"]).toBeCloseTo(Number(rows[0]!.length) / 30, 9);
    expect(rows[1]!["videos/observation.images.front/to_timestamp"]).toBeCloseTo(
      (Number(rows[0]!.length) + Number(rows[1]!.length)) / 30,
      9,
    );
    const stats = JSON.parse(await readFile(join(out, "meta/stats.json"), "utf8")) as Record<string, any>;
    expect(stats["observation.images.front"].mean).toHaveLength(3); // per channel, [3, 1, 1]
    const meta = await readActionflowMeta(out);
    expect(meta.cameras).toEqual([{ name: "front", width: 64, height: 64 }]);

    // re-render episode 1 from its seed and the recorded actions; compare with the decoded video
    const ds = await openDataset(out);
    const task = await createTask("reach", { camera: { name: "front", width: 64, height: 64 } });
    try {
      const decoded = await loadEpisodeFrames(
        ds,
        1,
        "observation.images.front",
        { width: 64, height: 64 },
        {
          cache: false,
        },
      );
      if (ds.format !== "lerobot") throw new Error("expected LeRobot");
      const actions = (await ds.dataset.readEpisode(1, ["action"])).action as Float32Array;
      task.reset(meta.episodes[1]!.seed);
      const fb = 64 * 64 * 3;
      let same = 0;
      let shifted = 0;
      let prev: Uint8Array | undefined;
      const n = decoded!.count;
      for (let k = 0; k < n; k++) {
        const img = task.observe()["observation.images.front"] as Uint8Array;
        const dec = decoded!.data.subarray(k * fb, (k + 1) * fb);
        for (let i = 0; i < fb; i++) same += Math.abs(img[i]! - dec[i]!);
        if (prev) for (let i = 0; i < fb; i++) shifted += Math.abs(prev[i]! - dec[i]!);
        prev = img.slice();
        task.step(actions.subarray(k * 6, (k + 1) * 6));
      }
      const meanErr = same / (n * fb);
      expect(meanErr).toBeLessThan(4); // AV1 at CRF 30 on a 64x64 render
      expect(meanErr).toBeLessThan(shifted / ((n - 1) * fb)); // aligned frame by frame, not one off
    } finally {
      task.dispose();
      ds.dataset.close();
    }
  });

  it("sim replay renders the camera again, matching the recorded video, and draws a strip of it", async () => {
    const svg = join(out, "..", "replay.svg");
    const r = await replay({ dataset: out, episode: 0, framesSvg: svg });
    expect(r.trackingErrorRad).toBe(0);
    expect(r.cameras["observation.images.front"]!.meanAbsError).toBeGreaterThan(0); // lossy codec
    expect(r.cameras["observation.images.front"]!.meanAbsError).toBeLessThan(4);
    const text = await readFile(svg, "utf8");
    expect(text.match(/<image /g)?.length).toBe(Math.ceil(r.frames / 10));
    expect(text).toContain("data:image/png;base64,iVBORw0KGgo"); // the PNG signature
  });
});
