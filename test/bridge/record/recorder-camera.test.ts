/**
 * Cameras in `record`: the simulated arm renders the profile's camera and publishes it as
 * `sensor_msgs/Image` (base64 `data`, as rosbridge carries `uint8[]`); the recorder stores it, resized
 * to the profile's size, as a LeRobot v3.0 video feature with one frame per recorded frame.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadRobotProfile, parseRobotProfile } from "../../../bridge/profile.ts";
import { Recorder } from "../../../bridge/record/recorder.ts";
import { parseImage, resizeRgb, sensorImage } from "../../../bridge/ros/protocol.ts";
import { openLeRobot } from "../../../datasets/lerobot/reader.ts";
import { decodeVideo, ffmpegAvailable, hasEncoder } from "../../../datasets/video/ffmpeg.ts";
import { runTeleop } from "../../../sim/teleop.ts";
import { TestRosbridge } from "../rosbridge-server.ts";

const ROBOT = "examples/robots/sim-arm-teleop.json";
const dir = mkdtempSync(join(tmpdir(), "actionflow-recorder-camera-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const why = !ffmpegAvailable()
  ? "ffmpeg not on the PATH (test/setup/install-ffmpeg.sh)"
  : !hasEncoder("libx264")
    ? "ffmpeg has no libx264"
    : undefined;

describe("images over ROS", () => {
  it("round-trips an RGB image through sensor_msgs/Image, in every encoding, and resizes by box average", () => {
    const rgb = Uint8Array.from({ length: 4 * 2 * 3 }, (_, i) => (i * 37) % 256);
    const msg = sensorImage(2, { width: 4, height: 2, rgb });
    const back = parseImage(JSON.parse(JSON.stringify(msg)), "/cam");
    expect(back).toEqual({ kind: "ok", value: { width: 4, height: 2, rgb } });
    const bgr = parseImage({ ...msg, encoding: "bgr8" }, "/cam");
    expect(bgr.kind === "ok" && Array.from(bgr.value.rgb.subarray(0, 3))).toEqual([rgb[2], rgb[1], rgb[0]]);
    expect(parseImage({ ...msg, encoding: "16UC1" }, "/cam")).toMatchObject({
      kind: "error",
      error: /encoding '16UC1'/,
    });
    expect(parseImage({ ...msg, step: 5 }, "/cam")).toMatchObject({ kind: "error", error: /shorter than a row/ });
    const small = resizeRgb({ width: 4, height: 2, rgb }, 2, 1);
    expect(small[0]).toBe(Math.round((rgb[0]! + rgb[3]! + rgb[12]! + rgb[15]!) / 4));
  });

  it.skipIf(why !== undefined)(
    `records the simulated camera as video, frame for frame${why ? ` (${why})` : ""}`,
    async () => {
      const server = await TestRosbridge.create({ dialect: 2 });
      try {
        const base = await loadRobotProfile(ROBOT);
        const profile = parseRobotProfile(
          {
            ...base,
            cameras: [{ topic: "/camera/front/image_raw", feature: "observation.images.front", width: 48, height: 32 }],
          },
          "camera profile",
        );
        const out = join(dir, "cam");
        const rec = await Recorder.open({
          profile,
          profileSource: "camera profile",
          url: server.url,
          out,
          episodes: 2,
          vcodec: "h264",
        });
        const tele = await runTeleop({
          task: "reach",
          profile,
          profilePath: ROBOT,
          url: server.url,
          episodes: 2,
          seed: 0,
        });
        const r = await rec.done;
        expect(tele.successes).toBe(2);
        expect(r.kept).toBeGreaterThanOrEqual(2);
        expect(r.features).toContain("observation.images.front");
        const imgs = server.received("/camera/front/image_raw");
        expect(imgs.length).toBeGreaterThan(20);
        expect(typeof imgs[0]!.msg.data).toBe("string"); // base64, as rosbridge sends uint8[]
        const ds = await openLeRobot(out);
        expect(ds.features["observation.images.front"]).toMatchObject({ dtype: "video", shape: [32, 48, 3] });
        // the arm moves: in some episode a frame differs from the episode's first (on a loaded
        // machine an episode may be kept after the arm stopped, its frames all alike)
        let moved = 0;
        for (const e of ds.episodes) {
          const loc = ds.videoFile(e.index, "observation.images.front");
          const v = await decodeVideo(loc.file, { width: 48, height: 32 }, { start: loc.fromTimestamp });
          expect(v.count).toBe(e.length);
          const n = 48 * 32 * 3;
          for (let k = 1; k < v.count; k++) {
            let diff = 0;
            for (let i = 0; i < n; i++) diff += Math.abs(v.data[i]! - v.data[k * n + i]!);
            moved = Math.max(moved, diff / n);
          }
        }
        expect(moved).toBeGreaterThan(0.2);
      } finally {
        await server.stop();
      }
    },
    60_000,
  );
});
