/**
 * `Recorder` through the test rosbridge: a scripted teleoperator (`runTeleop`) drives the simulated
 * arm as a leader arm would, the recorder writes one durable LeRobot episode per start/stop; a topic
 * that falls silent mid-episode is reported as a gap and its frames are left out, never filled.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ros, Topic } from "roslib";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { loadRobotProfile } from "../../../bridge/profile.ts";
import { Recorder, type RecorderEvent } from "../../../bridge/record/recorder.ts";
import { openLeRobot } from "../../../datasets/lerobot/reader.ts";
import { runTeleop } from "../../../sim/teleop.ts";
import { TestRosbridge } from "../rosbridge-server.ts";

const ROBOT = "examples/robots/sim-arm-teleop.json";
const dir = mkdtempSync(join(tmpdir(), "actionflow-recorder-"));
const servers: TestRosbridge[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const key = (v: ArrayLike<number>): string => Array.from(Float32Array.from(v)).join(",");

describe("record over rosbridge", () => {
  it("records teleoperated episodes: one per start/stop, state from the follower, action from the leader", async () => {
    const server = await TestRosbridge.create({ dialect: 2 });
    servers.push(server);
    const profile = await loadRobotProfile(ROBOT);
    const out = join(dir, "teleop");
    const events: RecorderEvent[] = [];
    const rec = await Recorder.open({
      profile,
      profileSource: ROBOT,
      url: server.url,
      out,
      episodes: 3,
      onEvent: (e) => events.push(e),
    });
    const tele = await runTeleop({ task: "reach", profile, profilePath: ROBOT, url: server.url, episodes: 3, seed: 0 });
    const r = await rec.done;
    expect(tele.successes).toBe(3);
    expect(r).toMatchObject({ kept: 3, discarded: 0, episodes: 3, fps: 30, rejected: {} });
    expect(r.features).toEqual(["observation.state", "observation.environment_state", "action"]);

    const ds = await openLeRobot(out);
    expect(ds.episodes.map((e) => e.length).reduce((a, b) => a + b, 0)).toBe(r.frames);
    expect(ds.tasks).toEqual([profile.recording?.task]);
    const leader = new Set(server.received("/leader/joint_states").map((m) => key(m.msg.position as number[])));
    const follower = new Set(server.received("/joint_states").map((m) => key(m.msg.position as number[])));
    for (const [k, e] of ds.episodes.entries()) {
      const steps = tele.runs[k]!.steps;
      // start..stop spans the expert's steps: one frame per control period of wall time (more when
      // the simulated arm's real-time steps ran late on a busy machine, fewer when frames were late)
      expect(e.length).toBeLessThanOrEqual(2 * steps + 5);
      expect(e.length).toBeGreaterThanOrEqual(Math.floor(steps / 2));
      const c = await ds.readEpisode(e.index, ["observation.state", "action", "timestamp"]);
      const ts = Array.from(c.timestamp as Float32Array);
      expect(ts[0]).toBeCloseTo(0, 5);
      for (let i = 1; i < ts.length; i++) {
        const step = (ts[i]! - ts[i - 1]!) * 30;
        expect(Math.abs(step - Math.round(step))).toBeLessThan(1e-3); // on the 30 fps grid
        expect(Math.round(step)).toBeGreaterThanOrEqual(1);
      }
      for (let i = 0; i < e.length; i++) {
        expect(leader.has(key((c.action as Float32Array).subarray(i * 6, i * 6 + 6)))).toBe(true);
        expect(follower.has(key((c["observation.state"] as Float32Array).subarray(i * 6, i * 6 + 6)))).toBe(true);
      }
    }
    expect(events.filter((e) => e.kind === "kept")).toHaveLength(3);
  }, 60_000);

  it("reports a topic that falls silent as a gap and leaves its frames out", async () => {
    const server = await TestRosbridge.create({ dialect: 2 });
    servers.push(server);
    const profile = await loadRobotProfile(ROBOT);
    const out = join(dir, "gap");
    const rec = await Recorder.open({ profile, profileSource: ROBOT, url: server.url, out, episodes: 1 });
    const ros = new Ros({});
    await ros.connect(server.url);
    const topic = (name: string, type: string) => new Topic<Record<string, unknown>>({ ros, name, messageType: type });
    const js = topic("/joint_states", "sensor_msgs/JointState");
    const leader = topic("/leader/joint_states", "sensor_msgs/JointState");
    const env = topic("/actionflow/environment_state", "std_msgs/Float32MultiArray");
    const control = topic("/actionflow/record", "std_msgs/String");
    const state = (q: number) => ({
      header: { stamp: { sec: 0, nanosec: 0 }, frame_id: "" },
      name: [...profile.joints],
      position: profile.joints.map(() => q),
      velocity: [],
      effort: [],
    });
    let silent = false;
    let k = 0;
    const timer = setInterval(() => {
      k++;
      leader.publish(state(k / 1000));
      env.publish({ layout: { dim: [], data_offset: 0 }, data: [1, 2, 3, 4, 5, 6] });
      if (!silent) js.publish(state(k / 1000));
    }, 1000 / 60);
    const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));
    await sleep(400);
    control.publish({ data: "start" });
    await sleep(700);
    silent = true; // the robot's joint states stop for 0.6 s
    await sleep(600);
    silent = false;
    await sleep(700);
    control.publish({ data: "stop" });
    const r = await rec.done;
    clearInterval(timer);
    ros.close();
    expect(r.kept).toBe(1);
    const big = r.gaps.filter((g) => g.frames >= 10);
    expect(big.length).toBeGreaterThanOrEqual(1);
    expect(big[0]!.late).toContain("/joint_states");
    expect(big[0]!.late).not.toContain("/leader/joint_states");
    expect(r.lateFrames["/joint_states"]).toBeGreaterThanOrEqual(10);
    const ds = await openLeRobot(out);
    const ts = Array.from((await ds.readEpisode(0, ["timestamp"])).timestamp as Float32Array);
    const holes = ts.slice(1).map((t, i) => Math.round((t - ts[i]!) * 30) - 1);
    // the frames of the silence are missing from the episode, not invented
    expect(Math.max(...holes)).toBeGreaterThanOrEqual(10);
    expect(ts.length).toBeLessThan(Math.round(2.0 * 30));
  }, 30_000);
});
