import { EventEmitter } from "node:events";
import { afterEach, describe, expect, it } from "vitest";
import { driveRobot } from "../../bridge/drive.ts";
import { realScheduler } from "../../bridge/scheduler.ts";
import { FakePolicy, testProfile } from "./fakes.ts";
import { TestRosbridge } from "./rosbridge-server.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function robotSide(): Promise<TestRosbridge> {
  const server = await TestRosbridge.create({ dialect: 2 });
  cleanups.push(() => server.stop());
  server.declareTopic("/joint_states", "sensor_msgs/JointState");
  const t = setInterval(
    () => server.publishFromRos("/joint_states", "sensor_msgs/JointState", { name: ["a", "b"], position: [0.1, 0.2] }),
    5,
  );
  cleanups.push(() => clearInterval(t));
  return server;
}

describe("driveRobot", () => {
  it("SIGINT latches the e-stop, sends the stop, then exits cleanly", async () => {
    const server = await robotSide();
    const signals = new EventEmitter();
    const sched = realScheduler();
    const lines: string[] = [];
    const run = driveRobot({
      url: server.url,
      profile: testProfile(),
      policy: new FakePolicy({ horizon: 10, actionDim: 2, scheduler: sched, latencyS: 0.01 }),
      merge: { mode: "blend", aggregate: "latest_only" },
      signals,
      scheduler: sched,
      log: (l) => lines.push(l),
    });
    await new Promise((r) => setTimeout(r, 300));
    signals.emit("SIGINT");
    const res = await run;
    await new Promise((r) => setTimeout(r, 50));
    expect(res.stoppedBy).toBe("SIGINT");
    expect(res.loop.safety.estop).toBe(true);
    expect(res.loop.safety.estopReason).toBe("SIGINT");
    const cmds = server.received("/arm/joint_trajectory");
    expect(cmds.length).toBe(res.loop.sent);
    const last = (m: { msg: Record<string, unknown> }): number[] =>
      (m.msg.points as { positions: number[] }[])[0]!.positions;
    // the stop message holds the last command
    expect(last(cmds[cmds.length - 1]!)).toEqual(last(cmds[cmds.length - 2]!));
    expect(lines).toContain("SIGINT: e-stop, holding, then exiting");
    expect(signals.listenerCount("SIGINT")).toBe(0);
    expect(server.clientCount).toBe(0);
  });

  it("stops after --seconds and reports the loop's figures", async () => {
    const server = await robotSide();
    const sched = realScheduler();
    const res = await driveRobot({
      url: server.url,
      profile: testProfile(),
      policy: new FakePolicy({ horizon: 10, actionDim: 2, scheduler: sched, latencyS: 0.01 }),
      merge: { mode: "blend", aggregate: "latest_only" },
      seconds: 0.5,
      signals: new EventEmitter(),
      scheduler: sched,
    });
    expect(res.stoppedBy).toBe("seconds");
    // every 20 ms deadline of the run is either ticked or counted as missed (the machine may be busy)
    expect(res.loop.seconds).toBeGreaterThan(0.45);
    expect(Math.abs(res.loop.ticks + res.loop.missedDeadlines - res.loop.seconds * 50)).toBeLessThanOrEqual(2);
    expect(res.loop.sent).toBeGreaterThan(5);
    expect(res.link.connects).toBe(1);
  });

  it("fails with the URL when rosbridge is not there", async () => {
    const sched = realScheduler();
    await expect(
      driveRobot({
        url: "ws://127.0.0.1:1",
        profile: testProfile(),
        policy: new FakePolicy({ horizon: 10, actionDim: 2, scheduler: sched, latencyS: 0.01 }),
        connectTimeoutMs: 300,
        signals: new EventEmitter(),
      }),
    ).rejects.toThrow("RosLink: no connection to ws://127.0.0.1:1 within 300 ms");
  });
});
