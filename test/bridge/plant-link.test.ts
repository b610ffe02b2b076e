import { afterEach, describe, expect, it } from "vitest";
import type { ChunkPolicy } from "../../policy/chunk-policy.ts";
import { ControlLoop } from "../../bridge/loop.ts";
import { TrajectoryFollower } from "../../bridge/plant.ts";
import { PlantLink } from "../../bridge/plant-link.ts";
import { loadRobotProfile } from "../../bridge/profile.ts";
import { realScheduler } from "../../bridge/scheduler.ts";
import { resizeRgb } from "../../bridge/ros/protocol.ts";
import { ExpertChunkPolicy } from "../../sim/policy.ts";
import { createTask } from "../../sim/tasks/index.ts";
import { FakeScheduler } from "./fake-scheduler.ts";
import { FakePolicy, testProfile } from "./fakes.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("TrajectoryFollower", () => {
  it("interpolates from the current reference through each point, then holds", () => {
    const f = new TrajectoryFollower([0, 0]);
    f.setTrajectory(
      1,
      [
        [1, 10],
        [2, 20],
      ],
      [0.1, 0.2],
    );
    expect([...f.referenceAt(1.05)].map((x) => +x.toFixed(9))).toEqual([0.5, 5]);
    expect([...f.referenceAt(1.15)].map((x) => +x.toFixed(9))).toEqual([1.5, 15]);
    expect([...f.referenceAt(5)]).toEqual([2, 20]);
    // a new trajectory starts from where the reference is now
    f.setTrajectory(5, [[0, 0]], [1]);
    expect([...f.referenceAt(5.5)]).toEqual([1, 10]);
    f.setPositions([3, 3]);
    expect([...f.referenceAt(6)]).toEqual([3, 3]);
  });
});

describe("PlantLink (--via direct)", () => {
  it("steps the plant on the loop's clock and executes commands as the controller would", async () => {
    const s = new FakeScheduler();
    const plant = {
      q: [0, 0],
      dtS: 0.01,
      positions(): number[] {
        return this.q;
      },
      features: () => ({}),
      step(t: ArrayLike<number>): void {
        this.q = [t[0] as number, t[1] as number]; // a perfect position servo
      },
    };
    const link = new PlantLink({ plant, profile: testProfile(), scheduler: s });
    link.start();
    const policy = new FakePolicy({
      horizon: 5,
      actionDim: 2,
      scheduler: s,
      latencyS: 0.001,
      chunk: () => Float32Array.from({ length: 10 }, () => 1),
    });
    const loop = new ControlLoop({
      policy,
      link,
      profile: testProfile(),
      scheduler: s,
      merge: { mode: "blend", aggregate: "latest_only" },
    });
    loop.start();
    await s.advance(0.02); // the chunk lands at 1 ms; the tick at 20 ms commands 1, reached 20 ms later
    await s.advance(0.01);
    expect(plant.q[0]).toBeCloseTo(0.5, 9);
    await s.advance(0.02);
    expect(plant.q).toEqual([1, 1]);
    const st = loop.stop();
    const ls = link.stop();
    expect(ls.steps).toBe(5);
    expect(ls.dropped).toBe(0);
    expect(st.sent).toBe(ls.commands);
  });

  it("gives the loop the plant's camera image of the latest step, resized to the profile's size", async () => {
    const s = new FakeScheduler();
    let frames = 0;
    const plant = {
      dtS: 0.01,
      positions: () => [0, 0],
      features: () => ({}),
      images: () => {
        frames++;
        const rgb = new Uint8Array(8 * 4 * 3).map((_, i) => (i + Math.round(s.now() * 100)) % 256);
        return { "observation.images.front": { width: 8, height: 4, rgb } };
      },
      step: () => undefined,
    };
    const profile = testProfile({
      cameras: [{ topic: "/cam", feature: "observation.images.front", width: 4, height: 2, max_age_s: 0.05 }],
    });
    const link = new PlantLink({ plant, profile, scheduler: s });
    expect(link.image("observation.images.front")).toBeUndefined();
    link.start();
    await s.advance(0.025);
    const a = link.image("observation.images.front")!;
    expect([a.width, a.height, a.rgb.length, a.epoch]).toEqual([4, 2, 24, 1]);
    expect(a.atS).toBeCloseTo(0.02, 9);
    const src = plant.images()["observation.images.front"];
    expect(a.rgb).toEqual(resizeRgb(src, 4, 2));
    // the same step's image is rendered and resized once
    const n = frames;
    expect(link.image("observation.images.front")).toBe(a);
    expect(frames).toBe(n);
    await s.advance(0.01);
    expect(link.image("observation.images.front")!.atS).toBeCloseTo(0.03, 9);
    link.stop();
  });

  it("solves reach with the loop driving the simulator directly", async () => {
    const profile = await loadRobotProfile("examples/robots/sim-arm.json");
    const task = await createTask("reach", { fps: profile.control_rate_hz });
    cleanups.push(() => task.dispose());
    task.reset(3);
    const sched = realScheduler();
    const link = new PlantLink({
      scheduler: sched,
      profile,
      plant: {
        dtS: 1 / profile.control_rate_hz,
        positions: () => task.env.jointPositions(),
        features: () => ({
          "observation.environment_state": task.observe()["observation.environment_state"] as Float32Array,
        }),
        step: (t) => task.step(t),
      },
    });
    const policy: ChunkPolicy = new ExpertChunkPolicy(task, { horizon: 16 });
    link.start();
    const loop = new ControlLoop({
      policy,
      link,
      profile,
      scheduler: sched,
      merge: { mode: "blend", aggregate: "latest_only" },
    });
    loop.start();
    const t0 = Date.now();
    while (!task.success && Date.now() - t0 < 6000) await new Promise((r) => setTimeout(r, 50));
    const st = loop.stop();
    link.stop();
    expect(task.success).toBe(true);
    expect(st.droppedStale + st.droppedDisconnected).toBe(0);
    expect(st.sent).toBeGreaterThan(10);
  });
});
