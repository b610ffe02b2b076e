/**
 * `sim run --log`: runSim writes the run log for the in-process transport and through the test
 * rosbridge (`--via ros`): one command message per command sent, the joint states and the
 * environment-state feature as received, each decoding with the CDR reader, and the metadata records.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MessageReader } from "@foxglove/rosmsg2-serialization";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openMcapBytes } from "../../../bridge/record/convert-mcap.ts";
import { ros2Definitions } from "../../../bridge/log/run-log.ts";
import { loadRobotProfile } from "../../../bridge/profile.ts";
import { runSim, type SimRunOptions } from "../../../sim/run.ts";
import { TestRosbridge } from "../rosbridge-server.ts";

const dir = mkdtempSync(join(tmpdir(), "actionflow-simlog-"));
let server: TestRosbridge;
beforeAll(async () => {
  server = await TestRosbridge.create({ dialect: 2 });
});
afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const base: SimRunOptions = {
  task: "reach",
  policy: "expert",
  via: "direct",
  merge: "sync",
  publish: "step",
  seconds: 10,
  seed: 2,
  horizon: 16,
  provider: "cpu",
};

/** Messages by topic, decoded with the CDR reader of each channel's ROS 2 type. */
async function readLog(path: string): Promise<{ byTopic: Map<string, unknown[]>; metadata: string[]; total: number }> {
  const bytes = new Uint8Array(readFileSync(path));
  const reader = await openMcapBytes(bytes);
  const readers = new Map<number, MessageReader | "json">();
  for (const c of reader.channelsById.values()) {
    const schema = reader.schemasById.get(c.schemaId);
    readers.set(
      c.id,
      schema?.encoding === "ros2msg" ? new MessageReader(ros2Definitions(schema.name.replace("/msg/", "/"))) : "json",
    );
  }
  const byTopic = new Map<string, unknown[]>();
  let total = 0;
  for await (const m of reader.readMessages()) {
    const topic = reader.channelsById.get(m.channelId)?.topic ?? "?";
    const r = readers.get(m.channelId);
    const msg = r === "json" ? JSON.parse(new TextDecoder().decode(m.data)) : r?.readMessage(m.data);
    byTopic.set(topic, [...(byTopic.get(topic) ?? []), msg]);
    total++;
  }
  return { byTopic, metadata: reader.metadataIndexes.map((m) => m.name), total };
}

describe("sim run with a run log", () => {
  for (const via of ["direct", "ros"] as const)
    it(`--via ${via}: one command message per command sent, joint states and features decode`, async () => {
      const path = join(dir, `reach-${via}.mcap`);
      const r = await runSim({
        ...base,
        via,
        ...(via === "ros" ? { ros: server.url, merge: "blend" as const, seconds: 30 } : {}),
        runLog: path,
        argv: ["sim", "run", "--log", path],
      });
      expect(r.success).toBe(true);
      expect(r.runLog).toMatchObject({ file: path, dropped: 0 });
      expect(r.runLog?.error).toBeUndefined();
      expect(r.runLog?.bytes).toBe(readFileSync(path).length);
      const { byTopic, metadata, total } = await readLog(path);
      const cmds = (byTopic.get("/arm_controller/joint_trajectory") ?? []) as {
        joint_names: string[];
        points: { positions: Float64Array }[];
      }[];
      expect(cmds.length).toBe(r.sent);
      expect(cmds[0]?.joint_names).toEqual((await loadRobotProfile("examples/robots/sim-arm.json")).joints);
      expect(cmds.every((c) => c.points.every((p) => p.positions.length === 6))).toBe(true);
      const states = (byTopic.get("/joint_states") ?? []) as { position: Float64Array }[];
      expect(states.length).toBeGreaterThan(10);
      const env = (byTopic.get("/actionflow/environment_state") ?? []) as { data: Float32Array }[];
      expect(env.length).toBeGreaterThan(10);
      expect(env.every((e) => e.data.length === 6 && e.data.every(Number.isFinite))).toBe(true);
      expect(total + 3).toBe(r.runLog?.records);
      expect(metadata).toEqual(["profile", "policy", "command line"]);
    }, 90_000);
});
