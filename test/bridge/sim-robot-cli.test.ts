import { spawn } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { ARM_JOINTS } from "../../sim/scene/arm.ts";
import { TestRosbridge } from "./rosbridge-server.ts";

const servers: TestRosbridge[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

describe("actionflow sim robot", () => {
  it("publishes the arm's joint states and the task's environment state, then prints one JSON line", async () => {
    const server = await TestRosbridge.create({ dialect: 2 });
    servers.push(server);
    const args = ["tsx", "cli/main.ts", "sim", "robot", "--task", "reach", "--ros", server.url];
    args.push("--robot", "examples/robots/sim-arm.json", "--seconds", "1.5", "--seed", "4", "--json");
    const child = spawn("npx", args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += String(d)));
    child.stderr.on("data", (d: Buffer) => (err += String(d)));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(code, err).toBe(0);
    const lines = out.trim().split("\n");
    const res = JSON.parse(lines[lines.length - 1] as string) as Record<string, unknown>;
    expect(res).toMatchObject({
      task: "reach",
      seed: 4,
      success: false,
      commands: 0,
      rejected: 0,
      staleCommands: 0,
      connects: 1,
    });
    expect(res.steps as number).toBeGreaterThan(10);
    const js = server.received("/joint_states");
    expect(js.length).toBeGreaterThan(10);
    expect(js[0]?.msg.name).toEqual([...ARM_JOINTS]);
    expect((js[0]?.msg.position as number[]).length).toBe(6);
    const env = server.received("/actionflow/environment_state");
    expect((env[0]?.msg.data as number[]).length).toBe(6);
    expect(server.errors).toEqual([]);
  });
});
