import { afterEach, describe, expect, it } from "vitest";
import { Ros, Topic } from "roslib";
import { ControlLoop } from "../../../bridge/loop.ts";
import { RosLink } from "../../../bridge/ros/link.ts";
import { jointTrajectory } from "../../../bridge/ros/protocol.ts";
import type { Plant } from "../../../bridge/plant.ts";
import { RosRobotNode } from "../../../bridge/ros/robot-node.ts";
import { realScheduler } from "../../../bridge/scheduler.ts";
import { FakeScheduler } from "../fake-scheduler.ts";
import { FakePolicy, testProfile } from "../fakes.ts";
import { TestRosbridge } from "../rosbridge-server.ts";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const until = async (cond: () => boolean, ms = 3000): Promise<void> => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error("timed out");
    await sleep(5);
  }
};

/** A first-order plant: each step closes `gain` of the gap to the target. */
class LagPlant implements Plant {
  q: number[];
  constructor(
    q0: number[],
    readonly dtS: number,
    private readonly gain = 0.3,
  ) {
    this.q = [...q0];
  }
  positions(): number[] {
    return this.q;
  }
  features(): Record<string, number[]> {
    return { "observation.environment_state": [this.q[0] ?? 0] };
  }
  step(t: ArrayLike<number>): void {
    this.q = this.q.map((x, i) => x + this.gain * ((t[i] as number) - x));
  }
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("RosRobotNode (the simulated robot's side)", () => {
  it("follows a JointTrajectory by linear interpolation from the current reference, as the controller does", async () => {
    const server = await TestRosbridge.create({ dialect: 2 });
    cleanups.push(() => server.stop());
    const profile = testProfile();
    const sched = new FakeScheduler();
    const node = new RosRobotNode({ url: server.url, profile, plant: new LagPlant([0, 0], 0.01), scheduler: sched });
    node.start();
    cleanups.push(() => node.stop());
    await until(() => server.ops.some((o) => o.op === "subscribe" && o.topic === "/arm/joint_trajectory"));
    const ros = new Ros({});
    cleanups.push(() => ros.close());
    await ros.connect(server.url);
    await until(() => ros.isConnected);
    const pub = new Topic({ ros, name: "/arm/joint_trajectory", messageType: "trajectory_msgs/JointTrajectory" });
    pub.publish(
      jointTrajectory(
        2,
        ["b", "a"],
        [
          [10, 1],
          [20, 2],
        ],
        0.1,
      ),
    ); // b then a: matched by name
    await until(() => node.stats().commands === 1);
    await sched.advance(0.05);
    expect([...node.target].map((x) => +x.toFixed(6))).toEqual([0.5, 5]);
    await sched.advance(0.1);
    expect([...node.target].map((x) => +x.toFixed(6))).toEqual([1.5, 15]);
    await sched.advance(0.2);
    expect([...node.target]).toEqual([2, 20]);
    // a trajectory the controller would reject is rejected and does not move the reference
    pub.publish({ ...jointTrajectory(2, ["a", "b"], [[5, 5]], 0.1), joint_names: ["a"] });
    await until(() => node.stats().rejected === 1);
    expect(node.stats().lastRejection).toMatch(/missing joint 'b'/);
    await sched.advance(0.05);
    expect([...node.target]).toEqual([2, 20]);
  });

  it("closes the loop over ROS: the policy's goal is reached through rosbridge, no stale command", async () => {
    const server = await TestRosbridge.create({ dialect: 1 });
    cleanups.push(() => server.stop());
    const profile = testProfile({
      ros: { version: 1, joint_states: "/joint_states", command: "/arm/joint_trajectory" },
      control_rate_hz: 50,
      joint_limits: { a: { has_velocity_limits: true, max_velocity: 2 } },
      features: [{ topic: "/env", feature: "observation.environment_state", size: 1, stale_after_s: 0.2 }],
    });
    const sched = realScheduler();
    const plant = new LagPlant([0, 0], 0.02);
    const node = new RosRobotNode({ url: server.url, profile, plant, scheduler: sched });
    node.start();
    cleanups.push(() => node.stop());
    const link = RosLink.open({ url: server.url, profile, now: () => sched.now() });
    cleanups.push(() => link.close());
    await link.waitConnected(3000);
    const goal = [0.5, -0.3];
    const policy = new FakePolicy({
      horizon: 10,
      actionDim: 2,
      scheduler: sched,
      latencyS: 0.02,
      chunk: () => Float32Array.from({ length: 20 }, (_, i) => goal[i % 2] as number),
    });
    const loop = new ControlLoop({
      policy,
      link,
      profile,
      scheduler: sched,
      merge: { mode: "blend", aggregate: "latest_only" },
    });
    loop.start();
    await sleep(1200);
    const st = loop.stop();
    const ns = node.stop();
    expect(plant.q[0]).toBeCloseTo(0.5, 2);
    expect(plant.q[1]).toBeCloseTo(-0.3, 2);
    expect(ns.rejected).toBe(0);
    expect(ns.commandsBeforeFirstState).toBe(0);
    expect(ns.commands).toBeGreaterThan(20);
    // joint a was limited to 2 rad/s: 0.04 rad per step, so its first commands were clamped
    expect(st.safety.clamps.velocity.a).toBeGreaterThan(5);
    expect(policy.calls[0]?.obs["observation.environment_state"]?.length).toBe(1);
    expect(server.errors).toEqual([]);
  });
});
