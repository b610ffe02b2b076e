/**
 * A compressed camera over rosbridge, end to end: a ROS-side camera publishes PNG
 * `sensor_msgs/CompressedImage`s (base64, as rosbridge carries `uint8[]`), RosLink decodes them off
 * the loop's thread, and the control loop gives the policy each fresh image at its size; once the
 * camera stops, no inference runs on the old image (stale, counted), and a broken image is
 * refused, named. The simulated robot node publishes the same messages for a compressed camera.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ControlLoop } from "../../../bridge/loop.ts";
import { RosLink } from "../../../bridge/ros/link.ts";
import { RosRobotNode } from "../../../bridge/ros/robot-node.ts";
import { compressedImage, parseCompressedImage, resizeRgb, type RgbImage } from "../../../bridge/ros/protocol.ts";
import { realScheduler } from "../../../bridge/scheduler.ts";
import type { Observation } from "../../../policy/chunk-policy.ts";
import { CameraPolicy, testProfile } from "../fakes.ts";
import { TestRosbridge } from "../rosbridge-server.ts";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const TOPIC = "/cam/front/compressed";
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Camera frame `seed`: 64x48, its seed in the first pixel's red byte. */
function source(seed: number): RgbImage {
  const rgb = new Uint8Array(64 * 48 * 3).map((_, i) => (i * 3 + seed * 29) % 256);
  return { width: 64, height: 48, rgb };
}

const profile = testProfile({
  cameras: [
    {
      topic: TOPIC,
      feature: "observation.images.front",
      width: 32,
      height: 24,
      transport: "compressed",
      max_age_s: 0.15,
    },
  ],
});

describe("a compressed camera topic over rosbridge", () => {
  it("feeds each fresh image to the policy at its size, holds on a stale one and refuses a broken one", async () => {
    const server = await TestRosbridge.create({ dialect: 2 });
    cleanups.push(() => server.stop());
    server.declareTopic("/joint_states", "sensor_msgs/JointState");
    server.declareTopic(TOPIC, "sensor_msgs/CompressedImage");
    const sched = realScheduler();
    const link = RosLink.open({ url: server.url, profile, now: () => sched.now() });
    cleanups.push(() => link.close());
    const policy = new CameraPolicy(
      { horizon: 10, actionDim: 2, scheduler: sched, latencyS: 0.005 },
      { height: 24, width: 32 },
    );
    // what each call saw: its time, the arrival time of its image (the same tick), the image
    const seen: Array<{ atS: number; imageAtS: number; rgb: Observation[string] | undefined }> = [];
    const sample = policy.sampleChunk.bind(policy);
    policy.sampleChunk = (obs, req) => {
      seen.push({
        atS: sched.now(),
        imageAtS: link.image("observation.images.front")!.atS,
        rgb: obs["observation.images.front"],
      });
      return sample(obs, req);
    };
    const loop = new ControlLoop({ policy, link, profile, scheduler: sched, merge: { mode: "sync", nActionSteps: 5 } });
    await link.waitConnected(5000);
    const js = setInterval(
      () => server.publishFromRos("/joint_states", "sensor_msgs/JointState", { name: ["a", "b"], position: [0, 0] }),
      5,
    );
    cleanups.push(() => clearInterval(js));
    let seed = 0;
    const cam = setInterval(
      () => server.publishFromRos(TOPIC, "sensor_msgs/CompressedImage", compressedImage(2, source(++seed), "png")),
      30,
    );
    cleanups.push(() => clearInterval(cam));
    // the decoder thread starts on the first image (a second or so under load)
    const t0 = Date.now();
    while (link.image("observation.images.front") === undefined && Date.now() - t0 < 10_000) await sleep(10);
    loop.start();
    cleanups.push(() => void loop.stop());
    await sleep(700);
    clearInterval(cam);
    const published = seed;
    await sleep(300);
    // a JPEG that says it is one but holds a PNG
    server.publishFromRos(TOPIC, "sensor_msgs/CompressedImage", {
      ...compressedImage(2, source(99), "png"),
      format: "jpeg",
    });
    await sleep(400);
    const stats = loop.stop();

    expect(published).toBeGreaterThan(3);
    expect(seen.length).toBeGreaterThan(2);
    const want = new Map<string, number>();
    for (let s = 1; s <= published; s++) want.set(Buffer.from(resizeRgb(source(s), 32, 24)).toString("base64"), s);
    for (const c of seen) {
      // each call's image: one the camera published, decoded and resized to the profile's (= the policy's) size
      expect(c.rgb).toBeInstanceOf(Uint8Array);
      expect(want.has(Buffer.from(c.rgb!).toString("base64"))).toBe(true);
      // never older than max_age_s at the call
      expect(c.atS - c.imageAtS).toBeLessThanOrEqual(0.15 + 1e-9);
    }
    const rejected = link.rejections.snapshot()[TOPIC] ?? {};
    expect(rejected.stale).toBeGreaterThan(0);
    expect(rejected.malformed).toBe(1);
    expect(link.stats().lastError[TOPIC]).toMatch(
      /\/cam\/front\/compressed \(observation\.images\.front\): CompressedImage: format 'jpeg' but the \d+ data bytes are a PNG/,
    );
    expect(stats.staleFeatureTicks).toBeGreaterThan(0);
  }, 20_000);

  it("is what the simulated robot node publishes for a compressed camera", async () => {
    const server = await TestRosbridge.create({ dialect: 2 });
    cleanups.push(() => server.stop());
    server.declareTopic("/arm/joint_trajectory", "trajectory_msgs/JointTrajectory");
    const frame = source(5);
    const node = new RosRobotNode({
      url: server.url,
      profile,
      plant: {
        dtS: 0.02,
        positions: () => [0, 0],
        features: () => ({}),
        images: () => ({ "observation.images.front": frame }),
        step: () => undefined,
      },
    });
    node.start();
    cleanups.push(() => void node.stop());
    const t0 = Date.now();
    while (server.received(TOPIC).length === 0 && Date.now() - t0 < 5000) await sleep(10);
    const got = server.received(TOPIC)[0]!;
    expect(got.type).toBe("sensor_msgs/CompressedImage");
    expect(got.msg["format"]).toBe("png");
    const r = parseCompressedImage(got.msg, TOPIC);
    expect(r.kind === "ok" ? r.value : r.error).toEqual(frame);
  }, 20_000);
});
