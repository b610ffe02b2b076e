/**
 * The simulator as a ROS robot, driven through the test rosbridge by the control loop: the reach
 * task's scripted expert stands in for a trained policy (it reads the same in-process task), so the
 * test checks the whole ROS path, real time and a rosbridge restart, not a network.
 */
import { afterEach, describe, expect, it } from "vitest";
import { Ros, Topic } from "roslib";
import type { ChunkPolicy } from "../../../policy/chunk-policy.ts";
import { ControlLoop } from "../../../bridge/loop.ts";
import { loadRobotProfile } from "../../../bridge/profile.ts";
import { RosLink } from "../../../bridge/ros/link.ts";
import { RosRobotNode } from "../../../bridge/ros/robot-node.ts";
import { trajectoryViolations } from "../../../bridge/ros/trajectory-rules.ts";
import { realScheduler } from "../../../bridge/scheduler.ts";
import { StaleCommandMeter } from "../../../bridge/stale-commands.ts";
import { ExpertChunkPolicy } from "../../../sim/policy.ts";
import { createTask } from "../../../sim/tasks/index.ts";
import { TestRosbridge } from "../rosbridge-server.ts";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("sim robot over ROS", () => {
  it("solves reach through rosbridge, across a rosbridge restart, with zero stale commands", async () => {
    const profile = await loadRobotProfile("examples/robots/sim-arm.json");
    const server = await TestRosbridge.create({ dialect: profile.ros.version });
    cleanups.push(() => server.stop());
    const task = await createTask("reach", { fps: profile.control_rate_hz });
    cleanups.push(() => task.dispose());
    task.reset(3);
    const sched = realScheduler();
    const meter = new StaleCommandMeter();
    const node = new RosRobotNode({
      url: server.url,
      profile,
      scheduler: sched,
      onCommand: (msg, info) => meter.received(msg, info.lastConnectAtS),
      plant: {
        dtS: 1 / profile.control_rate_hz,
        positions: () => task.env.jointPositions(),
        features: () => ({
          "observation.environment_state": task.observe()["observation.environment_state"] as Float32Array,
        }),
        step: (t) => task.step(t),
      },
      backoff: { initialMs: 20, maxMs: 100, factor: 2 },
    });
    node.start();
    cleanups.push(() => node.stop());
    const expert = new ExpertChunkPolicy(task, { horizon: 16 });
    const policy: ChunkPolicy = {
      horizon: expert.horizon,
      actionDim: expert.actionDim,
      fps: profile.control_rate_hz,
      sampleChunk: (obs) => expert.sampleChunk(obs),
      reset: (seed) => expert.reset(seed),
    };
    const link = RosLink.open({
      url: server.url,
      profile,
      now: () => sched.now(),
      onPublish: (msg, cmd) => meter.sent(msg, cmd.sourceAtS),
      backoff: { initialMs: 20, maxMs: 100, factor: 2 },
    });
    cleanups.push(() => link.close());
    await link.waitConnected(3000);
    const loop = new ControlLoop({
      policy,
      link,
      profile,
      scheduler: sched,
      merge: { mode: "blend", aggregate: "latest_only" },
      publish: "step",
    });
    loop.start();
    await sleep(800);
    await server.stop();
    await sleep(300);
    await server.start();
    await sleep(3500);
    const st = loop.stop();
    await sleep(50);
    // every command the robot received was computed from a state newer than its latest reconnect
    expect(meter.stale).toBe(0);
    expect(meter.unknown).toBe(0);
    expect(meter.total).toBe(node.stats().commands + node.stats().rejected);
    // the meter does catch a replay: a run-1 command re-sent after the restart (what roslib's queue
    // would do without the link's gate) counts as stale
    const old = server.received(profile.ros.command).find((d) => d.run === 1)?.msg;
    const ros = new Ros({});
    await ros.connect(server.url);
    cleanups.push(() => ros.close());
    new Topic({ ros, name: profile.ros.command, messageType: "trajectory_msgs/JointTrajectory" }).publish(old);
    const t0 = Date.now();
    while (meter.stale === 0 && Date.now() - t0 < 3000) await sleep(10);
    expect(meter.stale).toBe(1);
    const ns = node.stop();
    expect(task.success).toBe(true);
    expect(ns.commandsBeforeFirstState).toBe(0);
    expect(ns.rejected).toBe(0);
    expect(ns.connects).toBe(2);
    expect(st.resyncs).toBe(1);
    expect(st.droppedDisconnected).toBeGreaterThan(0);
    // the expert's IK and MuJoCo share this thread with the loop (a trained policy runs in a worker):
    // some deadlines are missed, but far from most
    expect(st.missedDeadlines).toBeLessThan(st.ticks / 3);
    for (const d of server.received(profile.ros.command))
      expect(trajectoryViolations(d.msg, { joints: profile.joints, version: profile.ros.version })).toEqual([]);
    expect(server.errors).toEqual([]);
  });
});
