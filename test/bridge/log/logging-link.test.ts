/**
 * The logging decorator on its own, over a stand-in link: a joint state is logged once per sample,
 * a dropped command becomes a warning event (not a command message), growing clamp and refused-input
 * counts in the diagnostics become warning events.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { McapStreamReader, type TypedMcapRecord } from "@mcap/core";
import { afterAll, expect, it } from "vitest";
import { LoggingLink } from "../../../bridge/log/logging-link.ts";
import { LOG_TOPICS, RunLog } from "../../../bridge/log/run-log.ts";
import { loadRobotProfile } from "../../../bridge/profile.ts";
import type { JointStateSample, RobotCommand, RobotLink, SendResult } from "../../../bridge/robot-link.ts";

const ROBOT = join(process.cwd(), "examples", "robots", "sim-arm.json");
const dir = mkdtempSync(join(tmpdir(), "actionflow-logginglink-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

class StubLink implements RobotLink {
  connected = true;
  epoch = 1;
  estopRequest: string | undefined = undefined;
  state?: JointStateSample;
  result: SendResult = "sent";
  jointState() {
    return this.state;
  }
  feature() {
    return undefined;
  }
  send(cmd: RobotCommand): SendResult {
    void cmd;
    return this.result;
  }
  diagnostics() {}
}

it("logs each joint state once, dropped commands and growing safety counters as events", async () => {
  const profile = await loadRobotProfile(ROBOT);
  const path = join(dir, "link.mcap");
  const log = await RunLog.open(path, { profile, now: () => 2 });
  const stub = new StubLink();
  const link = new LoggingLink(stub, log);
  stub.state = { positions: new Float64Array(6), atS: 1, epoch: 1 };
  link.jointState();
  link.jointState(); // same sample
  stub.state = { positions: new Float64Array(6), atS: 1.1, epoch: 1 };
  link.jointState();
  const cmd: RobotCommand = { kind: "positions", positions: new Float64Array(6), dtS: 0.1, epoch: 1, sourceAtS: 1 };
  expect(link.send(cmd)).toBe("sent");
  stub.result = "dropped-stale";
  expect(link.send(cmd)).toBe("dropped-stale");
  for (const clamps of [0, 3, 3, 5])
    link.diagnostics({
      level: 0,
      message: "running",
      values: { clamps, "rejected /joint_states size": clamps > 4 ? 1 : 0 },
    });
  stub.estopRequest = "e-stop topic /estop";
  expect(link.estopRequest).toBe("e-stop topic /estop");
  expect(link.estopRequest).toBe("e-stop topic /estop");
  await log.close();

  const reader = new McapStreamReader();
  reader.append(new Uint8Array(readFileSync(path)));
  const recs: TypedMcapRecord[] = [];
  for (let r = reader.nextRecord(); r; r = reader.nextRecord()) recs.push(r);
  const topic = new Map(recs.flatMap((r) => (r.type === "Channel" ? [[r.id, r.topic] as const] : [])));
  const msgs = recs.flatMap((r) => (r.type === "Message" ? [r] : []));
  const on = (t: string) => msgs.filter((m) => topic.get(m.channelId) === t);
  expect(on(profile.ros.joint_states).length).toBe(2);
  expect(on(profile.ros.command).length).toBe(1);
  expect(on(profile.ros.diagnostics).length).toBe(4);
  const events = on(LOG_TOPICS.events).map(
    (m) => JSON.parse(new TextDecoder().decode(m.data)) as { level: number; name: string; message: string },
  );
  expect(events.map((e) => `${e.level} ${e.name}`)).toEqual([
    "3 command dropped",
    "3 clamps",
    "3 clamps",
    "3 rejected /joint_states size",
    "4 e-stop",
  ]);
  expect(events[2]?.message).toBe("clamps: 2 since the last diagnostics (5 in all)");
});
