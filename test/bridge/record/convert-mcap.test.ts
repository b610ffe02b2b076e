/**
 * `dataset convert <run.mcap>`: a run log of `sim run` becomes a LeRobot v3.0 dataset (frames on the
 * grid, features mapped through the profile, the commands as actions); a missing topic is named with
 * the topics the file has; a log whose summary a crash cut off still converts from its data records.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { convertBags } from "../../../bridge/record/convert.ts";
import { loadRobotProfile, type RobotProfile } from "../../../bridge/profile.ts";
import { openLeRobot } from "../../../datasets/lerobot/reader.ts";
import { runSim } from "../../../sim/run.ts";

const dir = mkdtempSync(join(tmpdir(), "actionflow-convert-mcap-"));
const ROBOT = "examples/robots/sim-arm.json";
let profile: RobotProfile;
let sent = 0;
const log = join(dir, "run.mcap");
beforeAll(async () => {
  profile = await loadRobotProfile(ROBOT);
  const r = await runSim({
    task: "reach",
    policy: "expert",
    via: "direct",
    merge: "sync",
    publish: "step",
    seconds: 10,
    seed: 3,
    horizon: 16,
    provider: "cpu",
    runLog: log,
  });
  expect(r.success).toBe(true);
  sent = r.sent;
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("convertBags (MCAP)", () => {
  it("turns a run log into a dataset: state, environment state and the commands as actions", async () => {
    const out = join(dir, "D");
    const r = await convertBags(log, out, { profile, profileSource: ROBOT, splitGapS: 1 });
    expect(r.messages["/arm_controller/joint_trajectory"]).toBe(sent);
    expect(r.episodes).toBeGreaterThanOrEqual(1);
    // every frame is on the 30 Hz grid between the first and last joint state
    const states = r.messages["/joint_states"] as number;
    expect(r.frames).toBeGreaterThan(states * 0.8);
    // a frame takes a state at most max_age_s (1.5 periods) old, or holds a late one (counted)
    expect(r.frames - (r.lateFrames["/joint_states"] ?? 0)).toBeLessThanOrEqual(2 * states);
    const ds = await openLeRobot(out);
    try {
      expect(ds.fps).toBe(30);
      expect(ds.totalFrames).toBe(r.frames);
      expect(ds.features["observation.state"]?.shape).toEqual([6]);
      expect(ds.features["observation.environment_state"]?.shape).toEqual([6]);
      expect(ds.features["action"]?.names).toEqual(profile.joints);
    } finally {
      ds.close();
    }
  });

  it("puts several files into one dataset, one episode (or more) each", async () => {
    const one = await convertBags(log, join(dir, "one"), { profile, profileSource: ROBOT, splitGapS: 1 });
    const two = await convertBags([log, log], join(dir, "two"), { profile, profileSource: ROBOT, splitGapS: 1 });
    expect(two.files).toBe(2);
    expect(two.episodes).toBe(2 * one.episodes);
    expect(two.frames).toBe(2 * one.frames);
  });

  it("names a topic the profile maps but the file lacks, listing the file's topics", async () => {
    const p = { ...profile, features: [{ ...profile.features[0]!, topic: "/camera/missing" }] };
    await expect(convertBags(log, join(dir, "X"), { profile: p, profileSource: "p.json" })).rejects.toThrow(
      /no topic \/camera\/missing \(features\.0\.topic, from p\.json\); the file has .*\/joint_states/,
    );
  });

  it("converts a log whose summary and footer a crash cut off, from its data records", async () => {
    const bytes = readFileSync(log);
    const full = await convertBags(log, join(dir, "F"), { profile, profileSource: ROBOT, splitGapS: 1 });
    const cut = join(dir, "cut.mcap");
    writeFileSync(cut, bytes.subarray(0, bytes.length - 100));
    const r = await convertBags(cut, join(dir, "C"), { profile, profileSource: ROBOT, splitGapS: 1 });
    expect(r.messages).toEqual(full.messages);
    expect(r.frames).toBe(full.frames);
  });
});
