/**
 * `sim run` (runSim) with the shipped profiles: every task through the test rosbridge with the
 * scripted expert; a profile whose feature size differs from the task's stops at start naming the
 * file, the feature and both sizes; a wrong-sized feature message published mid-run by another ROS
 * client is reported (once, through the log) and counted in the result; the openpi transport refuses
 * a prefix.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Ros, Topic } from "roslib";
import { defaultSimProfile, runSim, type SimRunOptions } from "../../sim/run.ts";
import type { TaskName } from "../../sim/tasks/index.ts";
import { TestRosbridge } from "../bridge/rosbridge-server.ts";

let server: TestRosbridge;
beforeAll(async () => {
  server = await TestRosbridge.create({ dialect: 2 });
});
afterAll(async () => {
  await server?.stop();
});

const base = (task: TaskName, extra: Partial<SimRunOptions> = {}): SimRunOptions => ({
  task,
  policy: "expert",
  via: "ros",
  ros: server.url,
  merge: "blend", // the CLI default; sync holds one tick between chunks, which loses push's contact
  publish: "step",
  // push takes about 22 s of simulated time; a missed plant step (a loaded machine) is skipped, not run late
  seconds: 45,
  seed: 0,
  horizon: 16,
  provider: "cpu",
  ...extra,
});

describe("sim run through a rosbridge with the shipped profiles", () => {
  for (const task of ["avoid", "push", "fork"] as const)
    it(`solves ${task} with ${defaultSimProfile(task)}, no message refused for its size`, async () => {
      const lines: string[] = [];
      const r = await runSim(base(task, { log: (l) => lines.push(l) }));
      expect(r, JSON.stringify(r) + "\n" + lines.join("\n")).toMatchObject({
        task,
        success: true,
        robotProfile: defaultSimProfile(task),
        estop: null,
        staleCommands: 0,
      });
      expect(r.sent).toBeGreaterThan(0);
      for (const byReason of Object.values(r.rejectedMessages)) expect(byReason.size ?? 0).toBe(0);
    }, 90_000);

  it("refuses at start a profile whose environment state differs in size from the task's", async () => {
    await expect(runSim(base("avoid", { robot: "examples/robots/sim-arm.json" }))).rejects.toThrow(
      "examples/robots/sim-arm.json: features.0.size: feature observation.environment_state has size 6 in the profile, 8 in the avoid task",
    );
  });

  it("reports and counts wrong-sized feature messages published mid-run", async () => {
    const ros = new Ros({});
    await ros.connect(server.url);
    const topic = new Topic({ ros, name: "/actionflow/environment_state", messageType: "std_msgs/Float32MultiArray" });
    const bad = { layout: { dim: [], data_offset: 0 }, data: [1, 2, 3] };
    const timer = setInterval(() => topic.publish(bad), 50);
    const lines: string[] = [];
    try {
      const r = await runSim(base("reach", { seconds: 20, log: (l) => lines.push(l) }));
      const n = r.rejectedMessages["/actionflow/environment_state"]?.size ?? 0;
      expect(n, JSON.stringify(r)).toBeGreaterThan(0);
      const first = lines.filter((l) => l.startsWith("rejecting input on /actionflow/environment_state (size)"));
      // reported when a run of rejections starts, not once per message
      expect(first.length, lines.join("\n")).toBeGreaterThan(0);
      expect(first.length).toBeLessThan(n);
      expect(first[0]).toContain("expected 6 values, got 3");
    } finally {
      clearInterval(timer);
      ros.close();
    }
  }, 60_000);

  it("refuses --via openpi with a prefix at start", async () => {
    await expect(
      runSim(base("reach", { via: "openpi", ros: undefined, merge: "sync", prefixSteps: 2 })),
    ).rejects.toThrow("--via openpi cannot run --prefix-steps 2");
    await expect(runSim(base("reach", { via: "direct" }))).rejects.toThrow("--ros applies to --via ros, not direct");
  });
});
