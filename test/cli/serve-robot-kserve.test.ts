/**
 * `serve --robot --via kserve` (its pipeline, serveRobot): the shipped reach policy behind the test
 * KServe server process drives the simulated reach arm, which plays a ROS robot on the test
 * rosbridge; the run solves reach, and the result names the transport and counts refused inputs.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadRobotProfile } from "../../bridge/profile.ts";
import { RosRobotNode } from "../../bridge/ros/robot-node.ts";
import { serveRobot } from "../../pipelines/serve-robot.ts";
import { simTask, taskPlant } from "../../sim/run.ts";
import { reachRepository, startServerProcess, type ServerProcess } from "../bridge/kserve/helpers.ts";
import { TestRosbridge } from "../bridge/rosbridge-server.ts";

const ROBOT = "examples/robots/sim-arm.json";
const dir = mkdtempSync(join(tmpdir(), "actionflow-serve-kserve-"));
let server: ServerProcess;
let ros: TestRosbridge;
beforeAll(async () => {
  server = await startServerProcess((await reachRepository(dir)).repo);
  ros = await TestRosbridge.create({ dialect: 2 });
}, 120_000);
afterAll(async () => {
  await ros?.stop();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("serve --robot --via kserve", () => {
  it("drives the simulated reach arm over rosbridge with the policy on the KServe server", async () => {
    const profile = await loadRobotProfile(ROBOT);
    const seed = 1; // an episode the shipped reach policy (about 90%) solves
    const task = await simTask("reach", profile, ROBOT, seed);
    const node = new RosRobotNode({ url: ros.url, profile, plant: taskPlant(task, profile) });
    node.start();
    const lines: string[] = [];
    let solvedAt: number | undefined;
    const watch = setInterval(() => (solvedAt ??= task.success ? Date.now() : undefined), 50);
    try {
      const r = await serveRobot({
        robot: ROBOT,
        ros: ros.url,
        via: "kserve",
        server: server.http,
        timeoutMs: 5000,
        seed,
        provider: "cpu",
        merge: "sync",
        publish: "step",
        seconds: 8,
        log: (l) => lines.push(l),
      });
      expect(r, JSON.stringify(r) + "\n" + lines.join("\n")).toMatchObject({
        via: "kserve",
        stoppedBy: "seconds",
        inferErrors: 0,
        estop: null,
      });
      expect(r.policy).toContain(`kserve http ${server.http}`);
      expect(r.sent).toBeGreaterThan(0);
      expect(r.rejectedMessages["/joint_states"]).toBeUndefined();
      expect(solvedAt, lines.join("\n")).toBeDefined();
    } finally {
      clearInterval(watch);
      node.stop();
      task.dispose();
    }
  }, 60_000);

  it("refuses --policy with --via kserve, and --server without it", async () => {
    const base = { robot: ROBOT, ros: ros.url, seed: 0, provider: "cpu", merge: "sync", publish: "step" } as const;
    await expect(
      serveRobot({ ...base, via: "kserve", server: server.http, policy: "examples/policies/reach", log: () => {} }),
    ).rejects.toThrow("--via kserve: the server holds the policy; drop --policy");
    await expect(
      serveRobot({ ...base, via: "local", policy: "examples/policies/reach", server: server.http, log: () => {} }),
    ).rejects.toThrow("--server applies to --via kserve, not local");
  });
});
