/**
 * `actionflow sim run --via ros` as a process against the test rosbridge: a wrong-sized environment
 * state published mid-run by another ROS client is reported on stderr (once per run of rejections,
 * not per message) and counted in the `--json` line; a profile whose environment state differs in
 * size from the task's exits 1 at start with an error naming the file, the feature and both sizes.
 */
import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Ros, Topic } from "roslib";
import { TestRosbridge } from "../bridge/rosbridge-server.ts";

let server: TestRosbridge;
beforeAll(async () => {
  server = await TestRosbridge.create({ dialect: 2 });
});
afterAll(async () => {
  await server?.stop();
});

function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "cli/main.ts", ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += String(d)));
    child.stderr.on("data", (d: Buffer) => (err += String(d)));
    child.on("exit", (code) => resolve({ code, out, err }));
  });
}

describe("actionflow sim run --via ros", () => {
  it("reports wrong-sized feature messages on stderr and counts them in --json", async () => {
    const ros = new Ros({});
    await ros.connect(server.url);
    const topic = new Topic({ ros, name: "/actionflow/environment_state", messageType: "std_msgs/Float32MultiArray" });
    const timer = setInterval(
      () => topic.publish({ layout: { dim: [], data_offset: 0 }, data: [1, 2, 3, 4, 5, 6, 7, 8] }),
      50,
    );
    try {
      const r = await cli(
        ["sim", "run", "--task", "reach", "--policy", "expert", "--via", "ros", "--ros", server.url].concat([
          "--seed",
          "1",
          "--seconds",
          "20",
          "--json",
        ]),
      );
      expect(r.code, r.err).toBe(0);
      const res = JSON.parse(r.out.trim().split("\n").at(-1) as string) as {
        success: boolean;
        rejectedMessages: Record<string, Record<string, number>>;
      };
      const n = res.rejectedMessages["/actionflow/environment_state"]?.size ?? 0;
      expect(n, r.out).toBeGreaterThan(0);
      const lines = r.err.split("\n").filter((l) => l.includes("/actionflow/environment_state (size)"));
      expect(lines[0], r.err).toBe(
        "rejecting input on /actionflow/environment_state (size): /actionflow/environment_state (observation.environment_state).data: expected 6 values, got 8",
      );
      expect(lines.length).toBeLessThan(n);
    } finally {
      clearInterval(timer);
      ros.close();
    }
  }, 60_000);

  it("exits 1 at start on a profile whose environment state differs in size from the task's", async () => {
    const r = await cli(
      ["sim", "run", "--task", "fork", "--policy", "expert", "--via", "ros", "--ros", server.url].concat([
        "--robot",
        "examples/robots/sim-arm.json",
        "--json",
      ]),
    );
    expect(r.code).toBe(1);
    expect(r.err).toContain(
      "examples/robots/sim-arm.json: features.0.size: feature observation.environment_state has size 6 in the profile, 8 in the fork task",
    );
  }, 60_000);
});
