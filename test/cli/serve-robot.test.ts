import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { MessageReader } from "@foxglove/rosmsg2-serialization";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openMcapBytes } from "../../bridge/record/convert-mcap.ts";
import { exportOnnx } from "../../policy/onnx/export.ts";
import { ros2Definitions } from "../../bridge/log/run-log.ts";
import { TestRosbridge } from "../bridge/rosbridge-server.ts";
import { RAW, tinyModel, writeTinyCheckpoint } from "../policy/onnx/fixture.ts";

const dir = mkdtempSync(join(tmpdir(), "actionflow-serve-robot-"));
const run = join(dir, "run");
const profilePath = join(dir, "arm.json");

beforeAll(async () => {
  await tf.setBackend("cpu");
  await writeTinyCheckpoint(run, tinyModel("mlp"));
  await exportOnnx(run, { steps: 2, solver: "euler" });
  // three joints (the tiny policy's action dim); its 4-value state and its embedding come from topics
  writeFileSync(
    profilePath,
    JSON.stringify({
      name: "tiny-arm",
      joints: ["a", "b", "c"],
      ros: { version: 2, joint_states: "/joint_states", command: "/arm/commands" },
      command_interface: "forward",
      control_rate_hz: 50,
      watchdog_timeout_s: 0.2,
      state_feature: "observation.joints",
      features: [
        { topic: "/obs/state", feature: "observation.state", size: RAW.state, stale_after_s: 0.2 },
        { topic: "/obs/embedding", feature: "observation.embedding", size: 2 * RAW.emb, stale_after_s: 0.2 },
      ],
    }),
  );
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("actionflow serve --robot --ros", () => {
  it("drives a robot over rosbridge for --seconds, prints the loop's figures, and never loads tfjs", async () => {
    const server = await TestRosbridge.create({ dialect: 2 });
    server.declareTopic("/joint_states", "sensor_msgs/JointState");
    server.declareTopic("/obs/state", "std_msgs/Float32MultiArray");
    server.declareTopic("/obs/embedding", "std_msgs/Float32MultiArray");
    const timer = setInterval(() => {
      server.publishFromRos("/joint_states", "sensor_msgs/JointState", {
        name: ["c", "extra", "a", "b"],
        position: [0.3, 9, 0.1, 0.2],
      });
      server.publishFromRos("/obs/state", "std_msgs/Float32MultiArray", { data: [0.1, 0.2, 0.3, 0.4] });
      server.publishFromRos("/obs/embedding", "std_msgs/Float32MultiArray", { data: [1, 2, 3, 4, 5, 6] });
    }, 10);
    const modules = join(dir, "modules.txt");
    writeFileSync(modules, "");
    try {
      // blend, not rtc: with H = 4 at 50 Hz a loaded machine's 40 ms inference would be refused (d = 3 > H/2)
      const args = ["--import", "tsx", "--import", "./test/cli/module-recorder.mjs", "cli/main.ts", "serve"];
      args.push("--policy", run, "--robot", profilePath, "--ros", server.url, "--merge", "blend", "--seconds", "2");
      const logPath = join(dir, "serve-robot.mcap");
      args.push("--log", logPath, "--json");
      const child = spawn(process.execPath, args, {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, ACTIONFLOW_MODULE_LOG: modules },
      });
      let out = "";
      let err = "";
      child.stdout.on("data", (d: Buffer) => (out += String(d)));
      child.stderr.on("data", (d: Buffer) => (err += String(d)));
      const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
      expect(code, err).toBe(0);
      const res = JSON.parse(out.trimEnd().split("\n").pop()!) as Record<string, unknown>;
      expect(res).toMatchObject({
        robot: "tiny-arm",
        merge: "blend",
        stoppedBy: "seconds",
        estop: null,
        inferErrors: 0,
      });
      expect(res["inferCount"] as number).toBeGreaterThan(3);
      const cmds = server.received("/arm/commands");
      expect(cmds.length).toBe(res["sent"]);
      expect(cmds.length).toBeGreaterThan(20);
      for (const c of cmds) {
        const data = c.msg.data as number[];
        expect(data).toHaveLength(3);
        expect(data.every(Number.isFinite)).toBe(true);
      }
      // the run log: one std_msgs/Float64MultiArray per command sent, decoding with the CDR reader
      expect(res["runLog"]).toMatchObject({ file: logPath, dropped: 0 });
      const bytes = new Uint8Array(readFileSync(logPath));
      const reader = await openMcapBytes(bytes);
      const cdr = new MessageReader(ros2Definitions("std_msgs/Float64MultiArray"));
      const logged: number[][] = [];
      for await (const m of reader.readMessages({ topics: ["/arm/commands"] }))
        logged.push(Array.from((cdr.readMessage(m.data) as { data: Float64Array }).data));
      expect(logged.length).toBe(res["sent"]);
      expect(logged.map((d) => d.map((v) => Math.fround(v)))).toEqual(
        cmds.map((c) => (c.msg.data as number[]).map((v) => Math.fround(v))),
      );
      const loaded = readFileSync(modules, "utf8").split("\n");
      // the recorder works (onnxruntime was loaded, in the inference worker) and tfjs never was
      expect(loaded.some((u) => u.includes("/onnxruntime-node/"))).toBe(true);
      expect(loaded.some((u) => u.includes("/bridge/drive.ts"))).toBe(true);
      expect(loaded.filter((u) => u.includes("@tensorflow"))).toEqual([]);
    } finally {
      clearInterval(timer);
      await server.stop();
    }
  }, 60_000);
});
