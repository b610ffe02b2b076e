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
      commandsBeforeFirstState: 0,
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

  it.each([
    ["direct", "blend"],
    ["zmq", "rtc"],
    ["openpi", "sync"],
  ])(
    "sim run --via %s (--merge %s) solves reach with the scripted expert and prints the loop's figures",
    async (via, merge) => {
      const args = ["tsx", "cli/main.ts", "sim", "run", "--task", "reach", "--policy", "expert", "--via", via];
      args.push("--merge", merge, "--seconds", "15", "--json");
      const child = spawn("npx", args, { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      child.stdout.on("data", (d: Buffer) => (out += String(d)));
      child.stderr.on("data", (d: Buffer) => (err += String(d)));
      const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
      expect(code, err).toBe(0);
      const lines = out.trim().split("\n");
      const res = JSON.parse(lines[lines.length - 1] as string) as Record<string, number | boolean | string>;
      expect(res).toMatchObject({ task: "reach", via, merge, success: true, staleCommands: 0, inferErrors: 0 });
      if (via !== "direct") expect(res["server"]).toMatch(/^(tcp|ws):\/\/127\.0\.0\.1:\d+$/);
      for (const k of ["loopHz", "jitterP99Ms", "missedDeadlines", "inferP50Ms", "queueEmptyEvents", "clamps"])
        expect(typeof res[k], k).toBe("number");
      // the expert's chunks come back over the network: at least one inference was timed
      expect(res["inferP50Ms"] as number).toBeGreaterThan(0);
      expect(res.loopHz as number).toBeGreaterThan(15);
    },
  );

  it("sim run --via ros solves reach across a rosbridge restart with zero stale commands", async () => {
    const server = await TestRosbridge.create({ dialect: 2 });
    servers.push(server);
    const args = ["tsx", "cli/main.ts", "sim", "run", "--task", "reach", "--policy", "expert", "--via", "ros"];
    args.push("--ros", server.url, "--seconds", "15", "--seed", "1");
    const child = spawn("npx", args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += String(d)));
    child.stderr.on("data", (d: Buffer) => (err += String(d)));
    const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
    const t0 = Date.now();
    while (!err.includes("connected to") && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 250));
    await server.stop();
    await new Promise((r) => setTimeout(r, 300));
    await server.start();
    const code = await closed;
    expect(code, err).toBe(0);
    const res = JSON.parse(out) as Record<string, unknown>;
    expect(res).toMatchObject({ via: "ros", success: true, staleCommands: 0 });
    expect(err).toContain("reconnected: waiting for a fresh joint state and a new chunk (epoch 2)");
    // every received command was matched to one we sent (so the stale count covers them all)
    expect(res.robot).toMatchObject({ connects: 2, unknownCommands: 0, rejected: 0 });
    expect(server.errors).toEqual([]);
  });
});
