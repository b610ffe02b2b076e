/**
 * Camera images in the control loop, on a fake clock: the cameras a policy declares are read from
 * the link, resized to the policy's size, and a stale, missing or pre-reconnect image blocks
 * inference as a stale feature does (counted, reported, the queue runs dry and the loop holds).
 */
import { describe, expect, it } from "vitest";
import { ControlLoop } from "../../bridge/loop.ts";
import type { ImageSample } from "../../bridge/robot-link.ts";
import { resizeRgb } from "../../bridge/ros/protocol.ts";
import { FakeScheduler } from "./fake-scheduler.ts";
import { CameraPolicy, FakeLink, testProfile } from "./fakes.ts";

/** A FakeLink that also carries camera images. */
class CameraLink extends FakeLink {
  readonly images = new Map<string, ImageSample>();
  image(feature: string): ImageSample | undefined {
    return this.images.get(feature);
  }
}

const camera = (over: Record<string, unknown> = {}) => ({
  topic: "/cam/front/compressed",
  feature: "observation.images.front",
  width: 8,
  height: 6,
  transport: "compressed",
  max_age_s: 0.05,
  ...over,
});

function frame(seed: number, atS: number, epoch = 1): ImageSample {
  const rgb = new Uint8Array(8 * 6 * 3).map((_, i) => (i * 5 + seed) % 256);
  return { width: 8, height: 6, rgb, atS, epoch };
}

/** The reasons of the loop's `starved` events. */
const starved = (events: string[]): string[] =>
  events
    .map((e) => JSON.parse(e) as { kind: string; reason?: string })
    .flatMap((e) => (e.kind === "starved" ? [e.reason!] : []));

function setup(policySize = { height: 6, width: 8 }, cam = camera()) {
  const s = new FakeScheduler();
  const link = new CameraLink();
  const feed = (): void => {
    link.setState([0, 0], s.now());
    s.at(s.now() + 0.01, feed);
  };
  feed();
  const policy = new CameraPolicy({ horizon: 10, actionDim: 2, scheduler: s, latencyS: 0.001 }, policySize);
  const events: string[] = [];
  const loop = new ControlLoop({
    policy,
    link,
    profile: testProfile({ cameras: [cam] }),
    scheduler: s,
    merge: { mode: "sync", nActionSteps: 5 },
    diagnosticsEveryS: 0.05,
    onEvent: (e) => events.push(JSON.stringify(e)),
  });
  return { s, link, policy, loop, events };
}

describe("cameras in the control loop", () => {
  it("gives the policy the newest fresh image, and holds while it is missing or stale", async () => {
    const { s, link, policy, loop, events } = setup();
    loop.start();
    await s.advance(1.1);
    // no image yet: no inference, nothing sent, the reason reported
    expect(policy.calls.length).toBe(0);
    expect(link.sent.length).toBe(0);
    expect(loop.stats().staleFeatureTicks).toBeGreaterThan(50);
    expect(starved(events).at(-1)).toMatch(
      /camera observation\.images\.front on \/cam\/front\/compressed stale or rejected: no valid image yet/,
    );
    link.images.set("observation.images.front", frame(1, s.now()));
    await s.advance(0.02);
    expect(policy.calls.length).toBe(1);
    expect(policy.calls[0]!.obs["observation.images.front"]).toEqual(frame(1, 0).rgb);
    await s.advance(0.03);
    expect(link.sent.length).toBeGreaterThan(0);
    // the image goes stale (no new one for longer than max_age_s): no new chunk; the queue drains and stops
    const calls = policy.calls.length;
    await s.advance(0.5);
    expect(policy.calls.length).toBe(calls);
    const sentAfter = link.sent.length;
    await s.advance(1.2);
    expect(link.sent.length).toBe(sentAfter);
    expect(starved(events).at(-1)).toMatch(
      /camera observation\.images\.front .*last valid image \d\.\d{3} s ago, max_age_s 0\.05/,
    );
    // a fresh image again: inference resumes with it
    link.images.set("observation.images.front", frame(2, s.now()));
    await s.advance(0.02);
    expect(policy.calls.length).toBe(calls + 1);
    expect(policy.calls.at(-1)!.obs["observation.images.front"]).toEqual(frame(2, 0).rgb);
    loop.stop();
  });

  it("refuses an image from before the latest reconnect", async () => {
    const { s, link, policy, loop, events } = setup();
    link.epoch = 2;
    link.images.set("observation.images.front", frame(1, 0, 1));
    loop.start();
    await s.advance(1.1);
    expect(policy.calls.length).toBe(0);
    expect(starved(events).at(-1)).toMatch(/camera observation\.images\.front .*none since the reconnect/);
    loop.stop();
  });

  it("resizes the profile-size image to the policy's size, once per image", async () => {
    const { s, link, policy, loop } = setup({ height: 3, width: 4 });
    const f = frame(4, 0);
    link.images.set("observation.images.front", f);
    loop.start();
    for (let i = 0; i < 4; i++) {
      f.atS = s.now();
      await s.advance(0.1);
    }
    expect(policy.calls.length).toBeGreaterThan(1);
    const want = resizeRgb(f, 4, 3);
    expect(want.length).toBe(3 * 4 * 3);
    for (const c of policy.calls) expect(c.obs["observation.images.front"]).toEqual(want);
    // the same image resized once: every call got the same array
    expect(new Set(policy.calls.map((c) => c.obs["observation.images.front"])).size).toBe(1);
    loop.stop();
  });

  it("refuses to start without a profile camera for the policy's camera, or without its max_age_s", () => {
    expect(() => setup(undefined, camera({ feature: "observation.images.wrist" }))).toThrow(
      /ControlLoop: the policy takes camera observation\.images\.front \(\[6, 8, 3\]\); profile 'test-arm' has no camera for it \(cameras: observation\.images\.wrist\)/,
    );
    expect(() => setup(undefined, camera({ max_age_s: undefined }))).toThrow(
      /profile 'test-arm': cameras\.0\.max_age_s: required, the policy takes observation\.images\.front/,
    );
  });
});
