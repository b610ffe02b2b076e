/**
 * Refused inputs: counted by topic and reason, logged once when a run of them starts, as a count
 * while it lasts and when it ends; the plant link refuses what the ROS link refuses; a loop with no
 * action to execute for a second says why, once.
 */
import { describe, expect, it } from "vitest";
import { ControlLoop, type LoopEvent } from "../../bridge/loop.ts";
import { PlantLink } from "../../bridge/plant-link.ts";
import { InputRejections, rejectReason } from "../../bridge/robot-link.ts";
import { FakeScheduler } from "./fake-scheduler.ts";
import { FakeLink, FakePolicy, testProfile } from "./fakes.ts";

describe("InputRejections", () => {
  it("logs a run once when it starts, its count every reportEveryS and when it ends; counts every input", () => {
    let t = 0;
    const lines: string[] = [];
    const r = new InputRejections({ now: () => t, log: (l) => lines.push(l), reportEveryS: 5, quietS: 1 });
    // good and bad messages interleaved at 10 Hz for 6 s: one run
    for (let i = 0; i < 60; i++, t += 0.1) {
      r.reject("/env", "size", "/env.data: expected 6 values, got 8");
      r.accepted("/env");
    }
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe("rejecting input on /env (size): /env.data: expected 6 values, got 8");
    expect(lines[1]).toMatch(/^still rejecting input on \/env \(size\): 5\d so far; last: \/env.data: expected 6/);
    t += 1.5;
    r.accepted("/env");
    expect(lines.at(-1)).toBe("accepting input on /env again after 60 rejected (size)");
    r.reject("/joint_states", "missing-joint", "JointState: missing joint 'b'");
    r.finish();
    expect(lines.at(-1)).toBe("stopped with 1 input(s) rejected on /joint_states (missing-joint) in a row");
    expect(r.snapshot()).toEqual({ "/env": { size: 60 }, "/joint_states": { "missing-joint": 1 } });
    expect(r.diagnosticValues()).toEqual({ "rejected /env size": 60, "rejected /joint_states missing-joint": 1 });
    expect(r.last("/env")).toBe("/env.data: expected 6 values, got 8");
  });

  it("classifies the ROS parsers' errors", () => {
    expect(rejectReason("/env.data: expected 6 values, got 8")).toBe("size");
    expect(rejectReason("JointState.position: 1 values for 2 names")).toBe("size");
    expect(rejectReason("/env.data[2]: expected a finite number, got null")).toBe("non-finite");
    expect(rejectReason("JointState: missing joints 'b', 'c'")).toBe("missing-joint");
    expect(rejectReason("JointState: not an object")).toBe("malformed");
  });
});

describe("PlantLink refuses what a ROS link refuses", () => {
  it("a feature of the wrong size is counted and never handed to the loop", () => {
    const sched = new FakeScheduler();
    const profile = testProfile({
      features: [{ topic: "/env", feature: "observation.environment_state", size: 3, stale_after_s: 0.1 }],
    });
    const lines: string[] = [];
    const rejections = new InputRejections({ now: () => sched.now(), log: (l) => lines.push(l) });
    const link = new PlantLink({
      profile,
      scheduler: sched,
      rejections,
      plant: {
        dtS: 0.02,
        positions: () => [0, 0],
        features: () => ({ "observation.environment_state": [1, 2, 3, 4] }),
        step: () => {},
      },
    });
    link.start();
    expect(link.feature("observation.environment_state")).toBeUndefined();
    expect(rejections.snapshot()).toEqual({ "/env": { size: 1 } });
    expect(lines).toEqual([
      "rejecting input on /env (size): /env (observation.environment_state).data: expected 3 values, got 4",
    ]);
    link.stop();
  });
});

describe("a starved loop", () => {
  it("says once, after a second without an action, which feature it waits for", async () => {
    const sched = new FakeScheduler();
    const profile = testProfile({
      features: [{ topic: "/env", feature: "observation.environment_state", size: 3, stale_after_s: 0.1 }],
    });
    const link = new (class extends FakeLink {
      readonly rejections = new InputRejections({ now: () => sched.now() });
    })();
    const policy = new FakePolicy({ horizon: 4, actionDim: 2, scheduler: sched, latencyS: 0.01 });
    const events: LoopEvent[] = [];
    const loop = new ControlLoop({ policy, link, profile, scheduler: sched, onEvent: (e) => events.push(e) });
    loop.start();
    for (let i = 0; i < 150; i++) {
      link.setState([0, 0], sched.now());
      await sched.advance(0.02);
    }
    loop.stop();
    const starved = events.filter((e) => e.kind === "starved");
    expect(starved).toHaveLength(1);
    expect(starved[0]).toMatchObject({
      reason: "feature observation.environment_state on /env stale or rejected: no valid message yet",
    });
    expect(policy.calls).toHaveLength(0);
    expect(link.rejections.snapshot()["/env"]?.stale).toBeGreaterThan(0);
    expect(link.diags.at(-1)?.values["rejected /env stale"]).toBeGreaterThan(0);
  });
});
