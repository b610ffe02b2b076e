/**
 * Interventions over rosbridge: while the profile's intervention topic says true a person has the
 * robot; the loop sends one hold message and then nothing, the run log marks the interval (a
 * std_msgs/Bool on the intervention topic, event lines) and holds the person's commands on the
 * command channel, and once released the loop ramps back in from the measured position.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MessageReader } from "@foxglove/rosmsg2-serialization";
import { afterAll, describe, expect, it } from "vitest";
import { driveRobot } from "../../bridge/drive.ts";
import { ros2Definitions } from "../../bridge/log/run-log.ts";
import { convertBags } from "../../bridge/record/convert.ts";
import { openMcapBytes } from "../../bridge/record/convert-mcap.ts";
import { openLeRobot } from "../../datasets/lerobot/reader.ts";
import { realScheduler } from "../../bridge/scheduler.ts";
import { FakePolicy, testProfile } from "./fakes.ts";
import { TestRosbridge } from "./rosbridge-server.ts";

const dir = mkdtempSync(join(tmpdir(), "actionflow-intervention-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("an intervention", () => {
  it("silences the loop, logs the person's commands, and ramps back in when released", async () => {
    const server = await TestRosbridge.create({ dialect: 2 });
    server.declareTopic("/joint_states", "sensor_msgs/JointState");
    server.declareTopic("/teleop/active", "std_msgs/Bool");
    let q = [0.1, 0.2];
    const js = setInterval(
      () => server.publishFromRos("/joint_states", "sensor_msgs/JointState", { name: ["a", "b"], position: q }),
      5,
    );
    const profile = testProfile({
      ros: {
        version: 2,
        joint_states: "/joint_states",
        command: "/arm/joint_trajectory",
        intervention: "/teleop/active",
      },
      ramp_s: 0.2,
    });
    const sched = realScheduler();
    const lines: string[] = [];
    const path = join(dir, "run.mcap");
    try {
      const run = driveRobot({
        url: server.url,
        profile,
        policy: new FakePolicy({ horizon: 10, actionDim: 2, scheduler: sched, latencyS: 0.01 }),
        merge: { mode: "blend", aggregate: "latest_only" },
        seconds: 2.4,
        scheduler: sched,
        log: (l) => lines.push(l),
        runLog: { path, argv: ["test"] },
      });
      await sleep(700);
      const beforeTakeover = server.received("/arm/joint_trajectory").length;
      expect(beforeTakeover).toBeGreaterThan(5);
      server.publishFromRos("/teleop/active", "std_msgs/Bool", { data: true });
      await sleep(200);
      const atTakeover = server.received("/arm/joint_trajectory").filter((m) => m.client >= 0).length;
      // the person moves the arm: five commands, the measured state follows
      for (let i = 0; i < 5; i++) {
        const target = [0.5 + i * 0.01, -0.3];
        server.publishFromRos("/arm/joint_trajectory", "trajectory_msgs/JointTrajectory", {
          joint_names: ["b", "a"],
          points: [{ positions: [target[1], target[0]], time_from_start: { sec: 0, nanosec: 20_000_000 } }],
        });
        q = target;
        await sleep(60);
      }
      const duringIntervention = server.received("/arm/joint_trajectory").filter((m) => m.client >= 0).length;
      server.publishFromRos("/teleop/active", "std_msgs/Bool", { data: false });
      const res = await run;
      const ours = server.received("/arm/joint_trajectory").filter((m) => m.client >= 0);
      // silent while the person had the robot: at most the one hold message after the takeover
      expect(duringIntervention).toBe(atTakeover);
      expect(atTakeover - beforeTakeover).toBeLessThanOrEqual(2);
      // back in after the release, starting from where the person left the arm (the ramp's first step)
      expect(ours.length).toBeGreaterThan(duringIntervention + 5);
      const first = (ours[duringIntervention]!.msg.points as { positions: number[] }[])[0]!.positions;
      expect(Math.abs(first[0]! - 0.54)).toBeLessThan(0.05);
      expect(res.loop.safety.interventions).toBe(1);
      expect(lines.some((l) => l.includes("a person has the robot"))).toBe(true);
      expect(lines.some((l) => l.includes("ramping back in"))).toBe(true);

      // the log: the interval as Bools, the person's five commands beside the loop's own
      const bytes = new Uint8Array(readFileSync(path));
      const reader = await openMcapBytes(bytes);
      const bools = new MessageReader(ros2Definitions("std_msgs/Bool"));
      const marks: boolean[] = [];
      for await (const m of reader.readMessages({ topics: ["/teleop/active"] }))
        marks.push((bools.readMessage(m.data) as { data: boolean }).data);
      expect(marks).toEqual([true, false]);
      const traj = new MessageReader(ros2Definitions("trajectory_msgs/JointTrajectory"));
      const logged: number[][] = [];
      for await (const m of reader.readMessages({ topics: ["/arm/joint_trajectory"] }))
        logged.push(
          Array.from((traj.readMessage(m.data) as { points: { positions: Float64Array }[] }).points[0]!.positions),
        );
      expect(logged.length).toBe(res.loop.sent + 5);
      const person = logged.filter((p) => Math.abs(p[1]! + 0.3) < 1e-9);
      expect(person.map((p) => p[0])).toEqual([0.5, 0.51, 0.52, 0.53, 0.54]);

      // `dataset convert --interventions-only`: the person's stretch becomes one episode, their commands its actions
      const out = join(dir, "corrections");
      const conv = await convertBags(path, out, { profile, profileSource: "test", interventionsOnly: true });
      expect(conv.episodes).toBe(1);
      // from the person's first command to the release: about 0.3 s at 50 Hz
      expect(conv.frames).toBeGreaterThan(8);
      expect(conv.frames).toBeLessThan(30);
      const ds = await openLeRobot(out);
      try {
        const actions = (await ds.readEpisode(0, ["action"]))["action"] as Float32Array;
        const firstJoint = Array.from({ length: conv.frames }, (_, i) => actions[i * 2] as number);
        expect(firstJoint.every((v) => v >= 0.5 - 1e-6 && v <= 0.54 + 1e-6)).toBe(true);
      } finally {
        ds.close();
      }
    } finally {
      clearInterval(js);
      await server.stop();
    }
  }, 30_000);
});
