/**
 * The run log over a real loop: the control loop drives the simulated reach task through a PlantLink
 * with the log attached; the file is read back with @mcap/core's readers and the command channel
 * decoded with the ROS 2 CDR reader (as Foxglove would). Then the file as it stood on disk mid-run
 * (cut where the writer had got to) still reads, and a tiny queue drops and counts instead of blocking.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { McapStreamReader, type TypedMcapRecord } from "@mcap/core";
import { MessageReader } from "@foxglove/rosmsg2-serialization";
import { afterAll, describe, expect, it } from "vitest";
import { openMcapBytes } from "../../../bridge/record/convert-mcap.ts";
import { attachRunLog } from "../../../bridge/log/logging-link.ts";
import { LOG_TOPICS, RunLog, ros2Definitions } from "../../../bridge/log/run-log.ts";
import { ControlLoop, type ChunkReport } from "../../../bridge/loop.ts";
import { PlantLink } from "../../../bridge/plant-link.ts";
import { loadRobotProfile } from "../../../bridge/profile.ts";
import type { RobotCommand, RobotLink, SendResult } from "../../../bridge/robot-link.ts";
import { realScheduler } from "../../../bridge/scheduler.ts";
import { ExpertChunkPolicy } from "../../../sim/policy.ts";
import { simTask, taskPlant } from "../../../sim/run.ts";

const ROBOT = join(process.cwd(), "examples", "robots", "sim-arm.json");
const dir = mkdtempSync(join(tmpdir(), "actionflow-runlog-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Keeps a copy of every command the inner link sent. */
class CountingLink implements RobotLink {
  readonly sent: number[][][] = [];
  constructor(private readonly inner: PlantLink) {}
  get connected() {
    return this.inner.connected;
  }
  get epoch() {
    return this.inner.epoch;
  }
  get estopRequest() {
    return this.inner.estopRequest;
  }
  get rejections() {
    return this.inner.rejections;
  }
  jointState() {
    return this.inner.jointState();
  }
  feature(name: string) {
    return this.inner.feature(name);
  }
  diagnostics(d: Parameters<RobotLink["diagnostics"]>[0]) {
    this.inner.diagnostics(d);
  }
  send(cmd: RobotCommand): SendResult {
    const r = this.inner.send(cmd);
    if (r === "sent")
      this.sent.push(cmd.kind === "positions" ? [Array.from(cmd.positions)] : cmd.points.map((p) => Array.from(p)));
    return r;
  }
}

function streamRecords(bytes: Uint8Array): TypedMcapRecord[] {
  const reader = new McapStreamReader({ includeChunks: true });
  reader.append(bytes);
  const out: TypedMcapRecord[] = [];
  for (let r = reader.nextRecord(); r; r = reader.nextRecord()) out.push(r);
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("RunLog", () => {
  it("logs a loop driving reach: every command as the CDR message sent, joint states, chunks, metadata; a cut file still reads", async () => {
    const profile = await loadRobotProfile(ROBOT);
    const task = await simTask("reach", profile, ROBOT, 5);
    const policy = new ExpertChunkPolicy(task, { horizon: 16 });
    policy.reset(5);
    const sched = realScheduler();
    const plant = new PlantLink({ plant: taskPlant(task, profile), profile, scheduler: sched });
    const counting = new CountingLink(plant);
    const path = join(dir, "reach.mcap");
    const log = await RunLog.open(path, {
      profile,
      policyMeta: { kind: "expert", horizon: 16 },
      argv: ["sim", "run", "--task", "reach", "--log", path],
      now: () => sched.now(),
      flushEveryS: 0.05,
      chunkSize: 4096,
    });
    const chunks: ChunkReport[] = [];
    const att = attachRunLog(log, counting, { actionDim: policy.actionDim, onChunk: (c) => chunks.push(c) });
    plant.start();
    const loop = new ControlLoop({
      policy,
      profile,
      scheduler: sched,
      merge: { mode: "sync" },
      link: att.link,
      onEvent: att.onEvent,
      onChunk: att.onChunk,
    });
    loop.start();
    let cut: Uint8Array;
    try {
      await sleep(1500);
      // the file as it stands on disk now, up to where the writer has got
      const at = log.stats().bytes;
      cut = readFileSync(path).subarray(0, at);
      await sleep(1500);
    } finally {
      loop.stop();
      plant.stop();
      task.dispose();
    }
    const result = await log.close();
    expect(result.error).toBeUndefined();
    expect(result.dropped).toBe(0);
    expect(counting.sent.length).toBeGreaterThan(30);
    expect(chunks.length).toBeGreaterThan(3);

    const bytes = new Uint8Array(readFileSync(path));
    expect(result.bytes).toBe(bytes.length);
    const reader = await openMcapBytes(bytes);
    const topics = new Map([...reader.channelsById.values()].map((c) => [c.id, c.topic]));
    const byTopic = new Map<string, Uint8Array[]>();
    for await (const m of reader.readMessages()) {
      const t = topics.get(m.channelId) as string;
      byTopic.set(t, [...(byTopic.get(t) ?? []), m.data]);
    }
    const schemas = [...reader.schemasById.values()].map((s) => `${s.name} ${s.encoding}`).sort();
    expect(schemas).toEqual([
      "actionflow.Chunk jsonschema",
      "diagnostic_msgs/msg/DiagnosticArray ros2msg",
      "foxglove.Log jsonschema",
      "sensor_msgs/msg/JointState ros2msg",
      "std_msgs/msg/Float32MultiArray ros2msg",
      "trajectory_msgs/msg/JointTrajectory ros2msg",
    ]);

    // the command channel: as many messages as the link sent, the values sent, the profile's joint names
    const cmdReader = new MessageReader(ros2Definitions("trajectory_msgs/JointTrajectory"));
    const cmds = (byTopic.get(profile.ros.command) ?? []).map(
      (d) => cmdReader.readMessage(d) as { joint_names: string[]; points: { positions: Float64Array }[] },
    );
    expect(cmds.length).toBe(counting.sent.length);
    for (const [i, c] of cmds.entries()) {
      expect(c.joint_names).toEqual(profile.joints);
      expect(c.points.map((p) => Array.from(p.positions))).toEqual(counting.sent[i]);
    }

    const jsReader = new MessageReader(ros2Definitions("sensor_msgs/JointState"));
    const states = (byTopic.get(profile.ros.joint_states) ?? []).map(
      (d) => jsReader.readMessage(d) as { name: string[]; position: Float64Array },
    );
    expect(states.length).toBeGreaterThan(30);
    expect(states[0]?.name).toEqual(profile.joints);
    expect(states.every((s) => s.position.length === profile.joints.length)).toBe(true);

    const chunkMsgs = (byTopic.get(LOG_TOPICS.chunks) ?? []).map(
      (d) => JSON.parse(new TextDecoder().decode(d)) as { decision: string; latency_s: number; actions: number[][] },
    );
    expect(chunkMsgs.length).toBe(chunks.length);
    expect(chunkMsgs.some((c) => c.decision === "merged")).toBe(true);
    expect(chunkMsgs[0]?.actions.length).toBe(16);
    expect(chunkMsgs[0]?.latency_s).toBeCloseTo(chunks[0]?.latencyS ?? NaN, 9);
    expect((byTopic.get(profile.ros.diagnostics) ?? []).length).toBeGreaterThan(0);

    const meta = [...reader.metadataIndexes].map((m) => m.name);
    expect(meta).toEqual(["profile", "policy", "command line"]);

    // the mid-run cut: a valid prefix, with the messages of the chunks written by then
    const cutRecords = streamRecords(cut);
    expect(cutRecords[0]?.type).toBe("Header");
    const cutChunks = cutRecords.filter((r) => r.type === "Chunk").length;
    const cutMessages = cutRecords.filter((r) => r.type === "Message").length;
    expect(cutChunks).toBeGreaterThan(0);
    expect(cutMessages).toBeGreaterThan(30);
    expect(cutMessages).toBeLessThan(result.records);
  }, 60_000);

  it("a full queue drops and counts records instead of blocking", async () => {
    const profile = await loadRobotProfile(ROBOT);
    const path = join(dir, "tiny.mcap");
    let t = 0;
    const log = await RunLog.open(path, { profile, now: () => t, queueSize: 4, flushEveryS: 60 });
    for (let i = 0; i < 1000; i++) {
      t = i * 0.001;
      log.event("info", "test", `event ${i}`);
    }
    expect(log.stats().dropped).toBe(996);
    const r = await log.close();
    expect(r).toMatchObject({ dropped: 996, records: 3 + 4 });
    const msgs = streamRecords(new Uint8Array(readFileSync(path))).filter((x) => x.type === "Message");
    expect(msgs.map((m) => (JSON.parse(new TextDecoder().decode(m.data)) as { message: string }).message)).toEqual([
      "event 0",
      "event 1",
      "event 2",
      "event 3",
    ]);
  });
  it("a forward-interface profile logs its commands as std_msgs/Float64MultiArray", async () => {
    const profile = { ...(await loadRobotProfile(ROBOT)), command_interface: "forward" as const };
    const path = join(dir, "forward.mcap");
    const log = await RunLog.open(path, { profile, now: () => 1.5 });
    const positions = Float64Array.from([0.1, -0.2, 0.3, -0.4, 0.5, 0.6]);
    log.command({ kind: "positions", positions, dtS: 1 / 30, epoch: 1, sourceAtS: 1.4 });
    positions.fill(9); // the log copied the values when it was called
    expect(await log.close()).toMatchObject({ records: 4, dropped: 0 });
    const records = streamRecords(new Uint8Array(readFileSync(path)));
    const schema = records.find((r) => r.type === "Channel" && r.topic === profile.ros.command);
    expect(schema).toBeDefined();
    const msg = records.find((r) => r.type === "Message" && r.channelId === (schema as { id: number }).id);
    const reader = new MessageReader(ros2Definitions("std_msgs/Float64MultiArray"));
    const decoded = reader.readMessage((msg as { data: Uint8Array }).data) as { data: Float64Array };
    expect(Array.from(decoded.data)).toEqual([0.1, -0.2, 0.3, -0.4, 0.5, 0.6]);
  });
});
