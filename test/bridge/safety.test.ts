import { describe, expect, it } from "vitest";
import type { EffectiveJointLimits } from "../../bridge/profile.ts";
import type { SafetyDecision } from "../../bridge/safety.ts";
import { SafetyLayer } from "../../bridge/safety.ts";

// dt = 0.1 s throughout so the numbers are easy to check by hand.
const layer = (
  limits: Partial<EffectiveJointLimits>[],
  extra: { rampS?: number; watchdogTimeoutS?: number } = {},
): SafetyLayer =>
  new SafetyLayer({
    limits: limits.map((l, i) => ({ name: `j${i}`, ...l })),
    dt: 0.1,
    watchdogTimeoutS: extra.watchdogTimeoutS ?? 10,
    rampS: extra.rampS ?? 0,
  });

const cmd = (d: SafetyDecision): number[] => {
  if (d.kind !== "command") throw new Error(`expected a command, got hold ${d.reason}`);
  return [...d.positions];
};

describe("SafetyLayer", () => {
  it("holds until a joint state arrives", () => {
    const s = layer([{}]);
    const d = s.step([1], 0);
    expect(d).toEqual({ kind: "hold", reason: "no-state", entered: true });
    s.observe([0.5], 0);
    expect(cmd(s.step([1], 0.1))).toEqual([1]);
  });

  it("clamps position and counts it per joint", () => {
    const s = layer([{ minPosition: -1, maxPosition: 1 }, {}]);
    s.observe([0.95, 0], 0);
    expect(cmd(s.step([1.5, 3], 0))).toEqual([1, 3]);
    expect(cmd(s.step([-2, 3], 0))).toEqual([-1, 3]);
    expect(cmd(s.step([0.5, 3], 0))).toEqual([0.5, 3]);
    const st = s.stats();
    expect(st.clamps.position).toEqual({ j0: 2, j1: 0 });
    expect(st.clampTotal).toBe(2);
  });

  it("limits velocity to max_velocity * dt per step", () => {
    // 2 rad/s * 0.1 s = 0.2 rad per step
    const s = layer([{ maxVelocity: 2 }]);
    s.observe([0], 0);
    const q = [1, 2, 3].map(() => cmd(s.step([1], 0))[0] as number);
    expect(q[0]).toBeCloseTo(0.2, 12);
    expect(q[1]).toBeCloseTo(0.4, 12);
    expect(q[2]).toBeCloseTo(0.6, 12);
    expect(s.stats().clamps.velocity.j0).toBe(3);
  });

  it("limits acceleration, including when stopping", () => {
    // 10 rad/s^2 * 0.1 s = 1 rad/s change per step: velocities 1, 2, 3 -> positions 0.1, 0.3, 0.6
    const s = layer([{ maxAcceleration: 10 }]);
    s.observe([0], 0);
    const q: number[] = [];
    for (let k = 0; k < 3; k++) q.push(cmd(s.step([10], 0))[0] as number);
    expect(q[0]).toBeCloseTo(0.1, 12);
    expect(q[1]).toBeCloseTo(0.3, 12);
    expect(q[2]).toBeCloseTo(0.6, 12);
    // asking to stop dead at 0.6 (v 3 -> 0) is clamped to v = 2: 0.6 + 0.2 = 0.8
    expect(cmd(s.step([0.6], 0))[0]).toBeCloseTo(0.8, 12);
    // then v = 1 would still overshoot less than asked: target 0.6 wants v = -2, clamped to 1 -> 0.9
    expect(cmd(s.step([0.6], 0))[0]).toBeCloseTo(0.9, 12);
    expect(s.stats().clamps.acceleration.j0).toBe(5);
  });

  it("uses max_deceleration while slowing down", () => {
    // accelerate at 10 rad/s^2 to v = 3 (0.1, 0.3, 0.6), then stop with 20 rad/s^2: v 3 -> 1 -> 0
    const s = layer([{ maxAcceleration: 10, maxDeceleration: 20 }]);
    s.observe([0], 0);
    for (let k = 0; k < 3; k++) s.step([10], 0);
    expect(cmd(s.step([0.6], 0))[0]).toBeCloseTo(0.7, 12);
    expect(cmd(s.step([0.65], 0))[0]).toBeCloseTo(0.65, 12); // v 1 -> -0.5 opposes v: within 20 * 0.1
    // v -0.5 -> 2.5 opposes v again: clamped to -0.5 + 2 = 1.5 -> 0.8
    expect(cmd(s.step([0.9], 0))[0]).toBeCloseTo(0.8, 12);
    // v 1.5 -> 2.5 speeds up: the acceleration limit (1 rad/s per step) applies -> 1.05
    expect(cmd(s.step([5], 0))[0]).toBeCloseTo(1.05, 12);
    expect(s.stats().clamps.acceleration.j0).toBe(6);
  });

  it("lets the position limit win over the acceleration limit", () => {
    const s = layer([{ maxAcceleration: 10, minPosition: -1, maxPosition: 0.7 }]);
    s.observe([0], 0);
    for (let k = 0; k < 3; k++) s.step([10], 0); // 0.1, 0.3, 0.6
    expect(cmd(s.step([0.6], 0))[0]).toBeCloseTo(0.7, 12); // 0.8 by acceleration, clamped to 0.7
    const st = s.stats();
    expect(st.clamps.position.j0).toBe(1);
  });

  it("limits jerk: the acceleration changes by at most max_jerk * dt per step", () => {
    // max_jerk 10 rad/s^3 at dt 0.1: the acceleration moves by at most 1 rad/s^2 per step.
    const s = layer([{ maxJerk: 10 }, {}]);
    s.observe([0, 0], 0);
    const out = [0.1, 0.2, 0.3, 0.1].map((x) => cmd(s.step([x, x], 0)));
    // step 1: a = 10 -> 1, v = 0.1, q = 0.01; step 2: v wanted 1.9, a = 18 -> 2, v = 0.3, q = 0.04;
    // step 3: a = 23 -> 3, v = 0.6, q = 0.10; step 4 asks to stop at 0.10 (a = -6), but the
    // acceleration may only drop to 2: v = 0.8, q = 0.18 (a jerk limit cannot stop at once).
    expect(out.map((q) => q[0])).toEqual([0.01, 0.04, 0.1, 0.18].map((x) => expect.closeTo(x, 12)));
    expect(out.map((q) => q[1])).toEqual([0.1, 0.2, 0.3, 0.1]); // no limits on j1
    expect(s.stats().clamps.jerk).toEqual({ j0: 4, j1: 0 });
    expect(s.stats().clampTotal).toBe(4);
  });

  it("lets the velocity limit win over the jerk limit", () => {
    const s = layer([{ maxJerk: 10, maxVelocity: 0.5 }]);
    s.observe([0], 0);
    expect(cmd(s.step([0.1], 0))[0]).toBeCloseTo(0.01, 12); // as above: v 0.1, a 1
    expect(cmd(s.step([0.2], 0))[0]).toBeCloseTo(0.04, 12); // v 0.3, a 2
    // step 3: the velocity clamp first takes 0.3 to 0.04 + 0.05 = 0.09 (v 0.5, a 2: within the jerk limit)
    expect(cmd(s.step([0.3], 0))[0]).toBeCloseTo(0.09, 12);
    // step 4: stopping at 0.09 needs a = -5; the jerk limit allows a >= 1, v = 0.6, which the
    // velocity limit brings back to 0.5: q = 0.14
    expect(cmd(s.step([0.09], 0))[0]).toBeCloseTo(0.14, 12);
    const c = s.stats().clamps;
    // velocity clamps at steps 1 and 2 (targets 0.1 and 0.2 are faster than 0.5 too), 3 and 4; jerk at 1, 2 and 4
    expect([c.velocity.j0, c.jerk.j0]).toEqual([4, 3]);
  });

  it("clamps max_relative_target against the measured position", () => {
    const s = layer([{ maxRelativeTarget: 0.1 }]);
    s.observe([0], 0);
    expect(cmd(s.step([0.5], 0))[0]).toBeCloseTo(0.1, 12);
    s.observe([0.05], 0.05);
    expect(cmd(s.step([0.5], 0.1))[0]).toBeCloseTo(0.15, 12);
    expect(cmd(s.step([0.1], 0.1))[0]).toBeCloseTo(0.1, 12);
    expect(s.stats().clamps.relative.j0).toBe(2);
  });

  it("applies the clamps in order relative, velocity, position and counts each", () => {
    const s = layer([{ maxRelativeTarget: 0.1, maxVelocity: 0.5, minPosition: -2, maxPosition: 1.92 }]);
    s.observe([1.9], 0);
    // 5 -> relative 2.0 -> velocity 1.9 + 0.05 = 1.95 -> position 1.92
    expect(cmd(s.step([5], 0))[0]).toBeCloseTo(1.92, 12);
    const c = s.stats().clamps;
    expect([c.relative.j0, c.velocity.j0, c.acceleration.j0, c.position.j0]).toEqual([1, 1, 0, 1]);
  });

  it("ramps the first command from the measured position", () => {
    // rampS 0.4 at dt 0.1: N = 4 steps, q = 0.2 + k/4 * (1 - 0.2)
    const s = layer([{}], { rampS: 0.4 });
    s.observe([0.2], 0);
    const d = [0, 1, 2, 3, 4].map(() => s.step([1], 0));
    expect(d.map((x) => cmd(x)[0] as number).map((v) => +v.toFixed(12))).toEqual([0.4, 0.6, 0.8, 1, 1]);
    expect(d.map((x) => x.kind === "command" && x.ramping)).toEqual([true, true, true, false, false]);
  });

  it("never commands a non-finite target: holds at the last command and ramps again after", () => {
    const s = layer([{}, {}], { rampS: 0.2 });
    s.observe([0, 0], 0);
    s.step([1, 1], 0); // ramp 1/2: 0.5
    s.step([1, 1], 0); // 1
    const h = s.step([NaN, 1], 0);
    expect(h.kind).toBe("hold");
    if (h.kind === "hold") {
      expect(h.reason).toBe("non-finite");
      expect([...(h.positions ?? [])]).toEqual([1, 1]);
    }
    expect(s.step([Infinity, 0], 0).kind).toBe("hold");
    expect(s.stats().nonFiniteTargets).toBe(2);
    s.observe([0.8, 0.8], 0.1);
    expect(cmd(s.step([0, 0], 0.1))).toEqual([0.4, 0.4]); // ramp restarts from measured 0.8
    expect(s.checkChunk(new Float32Array([0, 1, NaN]))).toBe(false);
    expect(s.checkChunk(new Float32Array([0, 1, 2]))).toBe(true);
    expect(s.stats().nonFiniteChunks).toBe(1);
  });

  it("trips the watchdog without a fresh joint state, reports once per trip, resumes with a ramp", () => {
    const s = layer([{}], { rampS: 0.2, watchdogTimeoutS: 0.25 });
    s.observe([0], 0);
    expect(s.step([1], 0.2).kind).toBe("command");
    const a = s.step([1], 0.3);
    const b = s.step([1], 0.4);
    expect(a).toMatchObject({ kind: "hold", reason: "watchdog", entered: true });
    expect(b).toMatchObject({ kind: "hold", reason: "watchdog", entered: false });
    expect(s.stats().watchdogTrips).toBe(1);
    expect(s.stats().holding).toBe("watchdog");
    s.observe([0.6], 0.45);
    expect(cmd(s.step([1], 0.5))[0]).toBeCloseTo(0.8, 12); // 0.6 + 1/2 * 0.4
    expect(s.stats().holding).toBeUndefined();
    expect(s.step([1], 0.71)).toMatchObject({ kind: "hold", reason: "watchdog", entered: true });
    expect(s.stats().watchdogTrips).toBe(2);
  });

  it("latches the e-stop until reset", () => {
    const s = layer([{}]);
    s.observe([0], 0);
    expect(s.step([1], 0).kind).toBe("command");
    s.estop("topic /estop");
    s.estop("SIGINT");
    s.observe([0], 0.1);
    expect(s.step([1], 0.1)).toMatchObject({ kind: "hold", reason: "estop", entered: true });
    expect(s.step([1], 0.2)).toMatchObject({ kind: "hold", reason: "estop", entered: false });
    expect(s.stats()).toMatchObject({ estop: true, estopReason: "topic /estop" });
    s.resetEstop();
    expect(s.step([1], 0.2).kind).toBe("command");
  });

  it("treats an empty queue as a hold that zeroes the velocity", () => {
    const s = layer([{ maxAcceleration: 10 }]);
    s.observe([0], 0);
    s.step([10], 0); // v 1 -> 0.1
    s.step([10], 0); // v 2 -> 0.3
    expect(s.step(undefined, 0)).toMatchObject({ kind: "hold", reason: "empty" });
    expect(cmd(s.step([10], 0))[0]).toBeCloseTo(0.4, 12); // restarts from v = 0: v 1 -> 0.3 + 0.1
  });

  it("rejects a malformed joint state", () => {
    const s = layer([{}, {}]);
    expect(s.observe([0, NaN], 0)).toBe(false);
    expect(s.observe([0], 0)).toBe(false);
    expect(s.stats().rejectedStates).toBe(2);
    expect(s.step([0, 0], 0)).toMatchObject({ kind: "hold", reason: "no-state" });
  });

  it("previews a chunk without changing state or counters", () => {
    const s = layer([{ maxVelocity: 2 }], { rampS: 0 });
    s.observe([0], 0);
    const p = s.preview([[1], [1], [1], [NaN], [1]], 0);
    expect(p.map((x) => +(x[0] as number).toFixed(12))).toEqual([0.2, 0.4, 0.6]);
    expect(s.stats().clampTotal).toBe(0);
    expect(cmd(s.step([1], 0))[0]).toBeCloseTo(0.2, 12);
    expect(cmd(s.step([1], 0))[0]).toBeCloseTo(0.4, 12);
  });

  it("previews max_relative_target point to point, the first against the measured position", () => {
    const s = layer([{ maxRelativeTarget: 0.1 }]);
    s.observe([0], 0);
    const p = s.preview([[0.5], [0.5], [0.5], [0.15]], 0);
    expect(p.map((x) => +(x[0] as number).toFixed(12))).toEqual([0.1, 0.2, 0.3, 0.2]);
  });
});
