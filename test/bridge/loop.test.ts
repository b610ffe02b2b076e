import { describe, expect, it } from "vitest";
import { ControlLoop, LOOP_QUANTILE_RELATIVE_ACCURACY } from "../../bridge/loop.ts";
import { resampleChunk } from "../../bridge/merge.ts";
import type { RobotCommand } from "../../bridge/robot-link.ts";
import { realScheduler } from "../../bridge/scheduler.ts";
import { quantile } from "../../policy/stats/quantiles.ts";
import { FakeScheduler } from "./fake-scheduler.ts";
import { FakeLink, FakePolicy, testProfile } from "./fakes.ts";

/** Publishes a joint state every `periodS` (the robot side) until `stop` returns true. */
function feed(s: FakeScheduler, link: FakeLink, q: () => number[], periodS = 0.01, stop = (): boolean => false): void {
  const tick = (): void => {
    if (stop()) return;
    link.setState(q(), s.now());
    s.at(s.now() + periodS, tick);
  };
  tick();
}

const pos = (c: RobotCommand): number[] => [...(c.kind === "positions" ? c.positions : (c.points[0] as Float64Array))];

describe("resampleChunk", () => {
  it("interpolates linearly in time from the policy's rate to the control rate", () => {
    // 10 Hz -> 50 Hz: 3 actions span 0.2 s -> 11 samples every 0.02 s
    const out = resampleChunk(new Float32Array([0, 10, 1, 11, 2, 12]), 2, 10, 50);
    expect(out.length).toBe(22);
    expect([...out.filter((_, i) => i % 2 === 0)].map((x) => +x.toFixed(6))).toEqual([
      0, 0.2, 0.4, 0.6, 0.8, 1, 1.2, 1.4, 1.6, 1.8, 2,
    ]);
    // 50 Hz -> 25 Hz keeps every other action
    expect([...resampleChunk(new Float32Array([0, 1, 2, 3, 4]), 1, 50, 25)]).toEqual([0, 2, 4]);
  });
});

describe("ControlLoop on a fake clock", () => {
  it("keeps deadlines at start + k*dt: lateness does not accumulate", async () => {
    const s = new FakeScheduler();
    const link = new FakeLink();
    feed(s, link, () => [0, 0]);
    const policy = new FakePolicy({ horizon: 10, actionDim: 2, scheduler: s, latencyS: 0.005 });
    const loop = new ControlLoop({ policy, link, profile: testProfile(), scheduler: s });
    loop.start();
    await s.advance(1 - 1e-9, { lateS: () => 0.003 }); // every tick fires 3 ms late
    const st = loop.stop();
    expect(st.ticks).toBe(50); // ticks at 0, 20, ..., 980 ms: a drifting loop (now + dt) would fit only 43
    expect(st.jitterP50Ms).toBeCloseTo(3, 6);
    expect(st.jitterMaxMs).toBeCloseTo(3, 6);
    expect(st.missedDeadlines).toBe(0);
  });

  it("whole-run jitter quantiles within the sketch's relative accuracy, recent ones exact", async () => {
    const s = new FakeScheduler();
    const loop = new ControlLoop({
      policy: new FakePolicy({ horizon: 10, actionDim: 2, scheduler: s, latencyS: 0.001 }),
      link: new FakeLink(),
      profile: testProfile(),
      scheduler: s,
    });
    // tick k runs ((k * 7919) mod 100) / 10 ms late (0 .. 9.9 ms, never past the next deadline)
    const lateMs = (k: number): number => ((k * 7919) % 100) / 10;
    loop.start();
    await s.advance(20 - 1e-9, { lateS: (t) => lateMs(Math.round(t / 0.02)) / 1000 });
    const st = loop.stop();
    const all = Array.from({ length: 1000 }, (_, k) => lateMs(k));
    expect(st.ticks).toBe(1000);
    expect(st.missedDeadlines).toBe(0);
    for (const [got, q] of [
      [st.jitterP50Ms, 0.5],
      [st.jitterP99Ms, 0.99],
    ] as const) {
      const exact = quantile(all, q);
      expect(Math.abs(got - exact)).toBeLessThanOrEqual(LOOP_QUANTILE_RELATIVE_ACCURACY * exact + 1e-6);
    }
    expect(st.jitterMaxMs).toBeCloseTo(Math.max(...all), 6);
    // the latest 10 s at 50 Hz: 500 ticks, exact nearest rank
    const recent = all.slice(-500);
    expect(st.recent.ticks).toBe(500);
    expect(st.recent.jitterP50Ms).toBeCloseTo(quantile(recent, 0.5), 6);
    expect(st.recent.jitterP99Ms).toBeCloseTo(quantile(recent, 0.99), 6);
    expect(st.recent.jitterMaxMs).toBeCloseTo(Math.max(...recent), 6);
    expect(st.inferCount).toBe(0);
    expect(st.inferP50Ms).toBe(0);
  });

  it("counts missed deadlines and skips their steps", async () => {
    const s = new FakeScheduler();
    const link = new FakeLink();
    feed(s, link, () => [0, 0]);
    const policy = new FakePolicy({ horizon: 10, actionDim: 2, scheduler: s, latencyS: 0.001 });
    const loop = new ControlLoop({ policy, link, profile: testProfile(), scheduler: s });
    loop.start();
    // the tick due at 100 ms runs 55 ms late: the ticks due at 120 and 140 ms are missed
    await s.advance(0.3 - 1e-9, { lateS: (t) => (Math.abs(t - 0.1) < 1e-9 ? 0.055 : 0) });
    const st = loop.stop();
    expect(st.missedDeadlines).toBe(2);
    expect(st.ticks).toBe(13); // 15 deadlines in 300 ms, 2 missed
    expect(st.jitterMaxMs).toBeCloseTo(55, 6);
  });

  it("sync: executes the chunk from its arrival, then infers again (queue runs dry by design)", async () => {
    const s = new FakeScheduler();
    const link = new FakeLink();
    feed(s, link, () => [1, 2]);
    const policy = new FakePolicy({ horizon: 5, actionDim: 2, scheduler: s, latencyS: 0.03 });
    const loop = new ControlLoop({
      policy,
      link,
      profile: testProfile(),
      scheduler: s,
      merge: { mode: "sync", smoothing: 0 },
    });
    loop.start();
    await s.advance(0.2 - 1e-9);
    const st = loop.stop();
    // call at t=0 lands at 30 ms -> executed at ticks 40..120 ms (5 steps); next call at 140 ms lands
    // at 170 ms, its first action runs at 180 ms
    expect(policy.calls.map((c) => +c.atS.toFixed(3))).toEqual([0, 0.14]);
    expect(link.sent.map((c) => pos(c)[0]).map((x) => +x!.toFixed(4))).toEqual([1.01, 1.02, 1.03, 1.04, 1.05, 1.01]);
    expect(st.queueEmptyEvents).toBe(1);
    expect(st.inferP50Ms).toBeCloseTo(30, 6);
  });

  it("blend latest_only: requests the next chunk before the queue runs dry, so it never empties", async () => {
    const s = new FakeScheduler();
    const link = new FakeLink();
    let q = [0, 0];
    feed(s, link, () => q);
    const policy = new FakePolicy({ horizon: 10, actionDim: 2, scheduler: s, latencyS: 0.05 }); // 2.5 steps
    const loop = new ControlLoop({
      policy,
      link,
      profile: testProfile(),
      scheduler: s,
      merge: { mode: "blend", aggregate: "latest_only" },
    });
    loop.start();
    link.sent.length = 0;
    await s.advance(2);
    const st = loop.stop();
    expect(st.queueEmptyEvents).toBe(0);
    expect(st.inferCount).toBeGreaterThan(10);
    // first chunk lands at 50 ms: commands from the 60 ms tick on, one per tick
    expect(link.sent.length).toBe(98);
    q = [0, 0];
  });

  it("interpolates a 10 Hz policy to the 50 Hz control rate", async () => {
    const s = new FakeScheduler();
    const link = new FakeLink();
    feed(s, link, () => [0, 0]);
    const policy = new FakePolicy({
      horizon: 3,
      actionDim: 2,
      fps: 10,
      scheduler: s,
      latencyS: 0.001,
      chunk: () => new Float32Array([0, 0, 1, 1, 2, 2]),
    });
    const loop = new ControlLoop({
      policy,
      link,
      profile: testProfile(),
      scheduler: s,
      merge: { mode: "sync", smoothing: 0 },
    });
    loop.start();
    await s.advance(0.2 - 1e-9);
    loop.stop();
    // chunk from the t=0 observation lands at 1 ms and is executed from the 20 ms tick
    expect(link.sent.slice(0, 9).map((c) => +pos(c)[0]!.toFixed(5))).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1, 1.2, 1.4, 1.6]);
  });

  it("drops a chunk with NaN, never sends it, holds, and recovers with the next chunk", async () => {
    const s = new FakeScheduler();
    const link = new FakeLink();
    feed(s, link, () => [0, 0]);
    const policy = new FakePolicy({
      horizon: 4,
      actionDim: 2,
      scheduler: s,
      latencyS: 0.001,
      chunk: (_o, call) => new Float32Array([0.1, 0.1, 0.2, call === 0 ? NaN : 0.2, 0.3, 0.3, 0.4, 0.4]),
    });
    const loop = new ControlLoop({
      policy,
      link,
      profile: testProfile(),
      scheduler: s,
      merge: { mode: "sync" },
    });
    loop.start();
    await s.advance(0.2);
    const st = loop.stop();
    expect(st.safety.nonFiniteChunks).toBe(1);
    expect(link.sent.length).toBeGreaterThan(0);
    expect(link.sent.every((c) => pos(c).every(Number.isFinite))).toBe(true);
    expect(link.sent.slice(0, 4).map((c) => +pos(c)[1]!.toFixed(5))).toEqual([0.1, 0.2, 0.3, 0.4]);
  });

  it("does not infer from a joint state with NaN", async () => {
    const s = new FakeScheduler();
    const link = new FakeLink();
    feed(s, link, () => [0, NaN]);
    const policy = new FakePolicy({ horizon: 4, actionDim: 2, scheduler: s, latencyS: 0.001 });
    const loop = new ControlLoop({ policy, link, profile: testProfile(), scheduler: s });
    loop.start();
    await s.advance(0.1);
    const st = loop.stop();
    expect(policy.calls.length).toBe(0);
    expect(link.sent.length).toBe(0);
    expect(st.safety.rejectedStates).toBeGreaterThan(0);
    expect(st.safety.holding).toBe("no-state");
  });

  it("watchdog: stops commanding when joint states stop, sends one stop at the last command, resumes with a ramp", async () => {
    const s = new FakeScheduler();
    const link = new FakeLink();
    let alive = true;
    feed(
      s,
      link,
      () => [0, 0],
      0.01,
      () => !alive,
    );
    const policy = new FakePolicy({ horizon: 100, actionDim: 2, scheduler: s, latencyS: 0.001 });
    const profile = testProfile({ ramp_s: 0.1 });
    const loop = new ControlLoop({
      policy,
      link,
      profile,
      scheduler: s,
      merge: { mode: "blend", aggregate: "latest_only" },
    });
    loop.start();
    await s.advance(0.3);
    alive = false; // last state at 0.3 s; the watchdog (0.1 s) trips at the first tick after 0.4 s
    const before = link.sent.length;
    await s.advance(0.3);
    const st = loop.stats();
    expect(st.safety.watchdogTrips).toBe(1);
    expect(st.safety.holding).toBe("watchdog");
    // commands until 0.4 s (5 ticks at 0.32..0.40), then exactly one stop message
    expect(link.sent.length - before).toBe(6);
    const stopMsg = link.sent[link.sent.length - 1] as RobotCommand;
    expect(pos(stopMsg)).toEqual(pos(link.sent[link.sent.length - 2] as RobotCommand));
    alive = true;
    feed(
      s,
      link,
      () => [0.5, 0.5],
      0.01,
      () => !alive,
    );
    const n = link.sent.length;
    await s.advance(0.1);
    loop.stop();
    // ramp over 5 steps from the measured 0.5 towards the targets (0.5 + 0.01 * i)
    const first = pos(link.sent[n] as RobotCommand)[0] as number;
    expect(first).toBeGreaterThan(0.5);
    expect(first).toBeLessThan(0.51);
  });

  it("after a reconnect discards chunks in flight and sends nothing until a new state and a new chunk", async () => {
    const s = new FakeScheduler();
    const link = new FakeLink();
    let q = [0, 0];
    feed(s, link, () => q);
    const policy = new FakePolicy({ horizon: 20, actionDim: 2, scheduler: s, latencyS: 0.05 });
    const loop = new ControlLoop({
      policy,
      link,
      profile: testProfile(),
      scheduler: s,
      merge: { mode: "blend", aggregate: "latest_only" },
    });
    loop.start();
    await s.advance(0.5);
    // disconnect: the robot side restarts at q = 5; the link gets a new epoch on reconnect
    link.connected = false;
    await s.advance(0.1);
    link.connected = true;
    link.epoch = 2;
    q = [5, 5];
    const n = link.sent.length;
    await s.advance(0.5);
    const st = loop.stop();
    expect(st.resyncs).toBe(1);
    expect(st.droppedStale).toBe(0);
    const after = link.sent.slice(n);
    expect(after.length).toBeGreaterThan(10);
    // every command after the reconnect was computed from a state of the new epoch (q = 5)
    expect(after.every((c) => c.epoch === 2 && (pos(c)[0] as number) > 4.9)).toBe(true);
    // and the first one came only after a new chunk: >= one inference latency (50 ms) after reconnect
    const firstCall = policy.calls.find((c) => c.atS >= 0.6 && (c.obs["observation.state"]![0] as number) === 5);
    expect(firstCall).toBeDefined();
  });

  it("publishes the whole remaining chunk as one trajectory in chunk mode", async () => {
    const s = new FakeScheduler();
    const link = new FakeLink();
    feed(s, link, () => [0, 0]);
    const policy = new FakePolicy({ horizon: 6, actionDim: 2, scheduler: s, latencyS: 0.001 });
    const loop = new ControlLoop({
      policy,
      link,
      profile: testProfile(),
      scheduler: s,
      merge: { mode: "sync" },
      publish: "chunk",
    });
    loop.start();
    await s.advance(0.1);
    loop.stop();
    const first = link.sent[0] as RobotCommand;
    expect(first.kind).toBe("trajectory");
    if (first.kind === "trajectory")
      expect(first.points.map((p) => +p[0]!.toFixed(4))).toEqual([0.01, 0.02, 0.03, 0.04, 0.05, 0.06]);
  });

  it("skips inference while a feature is stale and e-stop holds for good", async () => {
    const s = new FakeScheduler();
    const link = new FakeLink();
    feed(s, link, () => [0, 0]);
    const profile = testProfile({
      features: [{ topic: "/env", feature: "observation.environment_state", size: 1, stale_after_s: 0.05 }],
    });
    const policy = new FakePolicy({ horizon: 10, actionDim: 2, scheduler: s, latencyS: 0.001 });
    const loop = new ControlLoop({
      policy,
      link,
      profile,
      scheduler: s,
      merge: { mode: "blend", aggregate: "latest_only" },
      diagnosticsEveryS: 0.05,
    });
    loop.start();
    await s.advance(0.1);
    expect(policy.calls.length).toBe(0);
    expect(loop.stats().staleFeatureTicks).toBe(6);
    link.features.set("observation.environment_state", { values: new Float32Array([7]), atS: s.now(), epoch: 1 });
    await s.advance(0.02);
    expect(policy.calls.length).toBe(1);
    expect(policy.calls[0]?.obs["observation.environment_state"]).toEqual(new Float32Array([7]));
    link.estopRequest = "e-stop topic /estop";
    await s.advance(0.02);
    const n = link.sent.length;
    await s.advance(0.2);
    const st = loop.stop();
    expect(link.sent.length).toBe(n);
    expect(st.safety.estop).toBe(true);
    expect(link.diags.some((d) => d.level === 2 && d.message === "e-stop: e-stop topic /estop")).toBe(true);
  });
});

describe("ControlLoop failures", () => {
  it("a throwing transport latches the e-stop instead of crashing; a throwing policy is an inference error", async () => {
    const s = new FakeScheduler();
    const link = new FakeLink();
    feed(s, link, () => [0, 0]);
    let calls = 0;
    const policy = {
      horizon: 2,
      actionDim: 2,
      sampleChunk: (): Promise<Float32Array> => {
        calls++;
        if (calls === 1) throw new Error("bad input");
        return Promise.resolve(new Float32Array([1, 1, 1, 1]));
      },
      reset: (): void => {},
    };
    const events: string[] = [];
    const loop = new ControlLoop({
      policy,
      link,
      profile: testProfile(),
      scheduler: s,
      merge: { mode: "sync" },
      onEvent: (e) =>
        events.push(e.kind === "loop-error" || e.kind === "infer-error" ? `${e.kind}: ${e.error}` : e.kind),
    });
    link.send = () => {
      throw new Error("socket exploded");
    };
    loop.start();
    await s.advance(0.1);
    const st = loop.stop();
    expect(st.inferErrors).toBe(1);
    // the first command throws (e-stop latched), then the e-stop's stop message throws too; no more sends
    expect(st.loopErrors).toBe(2);
    expect(st.safety.estopReason).toBe("loop error: socket exploded");
    expect(events).toContain("infer-error: bad input");
    expect(events).toContain("loop-error: socket exploded");
    expect(st.ticks).toBe(6); // the loop kept its schedule
  });
});

describe("ControlLoop merge modes through the chunk executor", () => {
  it("rtc: commits the next d = ceil(latency / dt) actions as the prefix, every s steps", async () => {
    const s = new FakeScheduler();
    const link = new FakeLink();
    feed(s, link, () => [0, 0]);
    // 50 ms at 20 ms per step -> d = 3
    const policy = new FakePolicy({ horizon: 10, actionDim: 2, scheduler: s, latencyS: 0.05 });
    const loop = new ControlLoop({
      policy,
      link,
      profile: testProfile(),
      scheduler: s,
      merge: { mode: "rtc", smoothing: 0 },
    });
    loop.start();
    await s.advance(0.5);
    const st = loop.stop();
    // first request at step 0 (no latency measured: d = 0, s = 5); then d = 3, s = 5: steps 5, 10, ...
    const steps = policy.calls.map((c) => Math.round(c.atS / 0.02));
    expect(steps.slice(0, 5)).toEqual([0, 5, 10, 15, 20]);
    expect(policy.calls[0]?.req?.prefix).toBeUndefined();
    expect(policy.calls.slice(1).every((c) => c.req?.prefix?.length === 6)).toBe(true);
    // the first chunk (state 0, the robot held while it was computed) starts at its arrival (step 3) from
    // its action 0, so 0.01 * (i + 1) runs at step 3 + i; the request at step 5 commits steps 5, 6, 7
    expect([...(policy.calls[1]?.req?.prefix ?? [])].filter((_, i) => i % 2 === 0).map((x) => +x.toFixed(5))).toEqual([
      0.03, 0.04, 0.05,
    ]);
    // the queue never ran dry after the first chunk: one command per tick from its arrival (step 3)
    expect(st.queueEmptyEvents).toBe(0);
    expect(link.sent.length).toBe(26 - 3);
    // what ran at steps 5..7 is the committed prefix, then the new chunk (from step 5: 0.01 * (t - 5 + 1))
    expect(link.sent.slice(0, 7).map((c) => +pos(c)[0]!.toFixed(5))).toEqual([
      0.01, 0.02, 0.03, 0.04, 0.05, 0.04, 0.05,
    ]);
  });

  it("rtc: follows the measured delay as it grows, carrying the queue over without a gap", async () => {
    const s = new FakeScheduler();
    const link = new FakeLink();
    feed(s, link, () => [0, 0]);
    const o = { horizon: 12, actionDim: 2, scheduler: s, latencyS: 0.01 };
    const policy = new FakePolicy(o);
    const loop = new ControlLoop({ policy, link, profile: testProfile(), scheduler: s, merge: { mode: "rtc" } });
    loop.start();
    await s.advance(0.3);
    o.latencyS = 0.07; // d = ceil(70 / 20) = 4 from the first slow call on (max of the last 5)
    await s.advance(0.7);
    const st = loop.stop();
    const lens = policy.calls.map((c) => (c.req?.prefix?.length ?? 0) / 2);
    // 10 ms -> d = 1 for the calls after the first; the first 70 ms call still asked for d = 1
    expect(lens.slice(0, 4)).toEqual([0, 1, 1, 1]);
    expect(lens.slice(-3)).toEqual([4, 4, 4]);
    expect(st.queueEmptyEvents).toBe(0);
    expect(st.safety.estop).toBe(false);
    // one command per tick from the first chunk's arrival (step 1) to the end (step 50)
    expect(link.sent.length).toBe(50);
  });

  /** A loop in rtc over a FakePolicy with rtcMaxDelay 2 (D = 2 steps of 20 ms); events as short strings. */
  const overrunRig = (
    latencyS: number,
    profile: Record<string, unknown> = {},
  ): {
    s: FakeScheduler;
    link: FakeLink;
    o: { latencyS: number };
    policy: FakePolicy;
    loop: ControlLoop;
    events: string[];
  } => {
    const s = new FakeScheduler();
    const link = new FakeLink();
    feed(s, link, () => [0, 0]);
    const o = { horizon: 10, actionDim: 2, scheduler: s, latencyS };
    const policy = Object.assign(new FakePolicy(o), { rtcMaxDelay: 2 });
    const events: string[] = [];
    const loop = new ControlLoop({
      policy,
      link,
      profile: testProfile(profile),
      scheduler: s,
      merge: { mode: "rtc" },
      diagnosticsEveryS: 0.1,
      onEvent: (e) => {
        if (e.kind === "rtc-overrun")
          events.push(`overrun d=${e.delaySteps}>${e.maxDelaySteps} #${e.consecutive} @${e.step}`);
        else if (e.kind === "rtc-recovered") events.push(`recovered @${e.step}`);
        else if (e.kind === "chunk-dropped") events.push(`dropped ${e.reason} @${e.step}`);
        else if (e.kind === "loop-error") events.push(`error: ${e.error}`);
      },
    });
    return { s, link, o, policy, loop, events };
  };

  it("rtc: one latency spike is counted, its chunk dropped, the queue run out, and rtc resumes", async () => {
    // 10 ms -> d = 1; requests every s = 5 steps (at 0, 5, 10, ...)
    const r = overrunRig(0.01);
    r.loop.start();
    await r.s.advance(0.19);
    r.o.latencyS = 0.09; // the request at step 10 takes 90 ms: 5 steps > D = 2
    await r.s.advance(0.02);
    r.o.latencyS = 0.01;
    await r.s.advance(0.39); // to 0.60 s
    const st = r.loop.stop();
    // seen in flight at step 13 (60 ms = 3 steps > 2); on arrival (step 15) its chunk is dropped: the
    // robot ran the old chunk's steps 11-14 past the committed step 10. The old queue ends at step 14;
    // at step 15 the loop requests from rest (no prefix), and that chunk, back within bounds, ends the overrun.
    expect(r.events).toEqual(["overrun d=3>2 #1 @13", "dropped overrun @15", "recovered @16"]);
    const steps = r.policy.calls.map((c) => Math.round(c.atS / 0.02));
    expect(steps.slice(0, 6)).toEqual([0, 5, 10, 15, 20, 25]);
    const prefixLens = r.policy.calls.map((c) => (c.req?.prefix?.length ?? 0) / 2);
    expect(prefixLens.slice(0, 6)).toEqual([0, 1, 1, 0, 1, 1]);
    expect([st.rtcOverruns, st.rtcConsecutiveOverruns, st.safety.estop, st.queueEmptyEvents]).toEqual([1, 0, false, 1]);
    // a command every tick but step 0 (before the first chunk) and step 15 (held, waiting from rest)
    expect(r.link.sent.length).toBe(st.ticks - 2);
    expect(r.link.diags.at(-1)?.values["rtc_overruns"]).toBe(1);
  });

  it("rtc: persistent overruns stop the loop after rtc_max_consecutive_overruns, with a clear error", async () => {
    // 50 ms = 3 steps > D = 2 every time: each chunk is requested from rest once the queue is empty
    const { s, policy, loop, events } = overrunRig(0.05);
    loop.start();
    await s.advance(0.7);
    const st = loop.stop();
    expect(policy.calls.map((c) => Math.round(c.atS / 0.02))).toEqual([0, 13, 26]);
    expect(policy.calls.every((c) => c.req?.prefix === undefined)).toBe(true);
    const stop =
      "rtc: the inference delay exceeded 2 control steps (40 ms, the largest prefix this policy can be given) 3 times in a row (rtc_max_consecutive_overruns 3), the last by d = 3; stopping";
    expect(events).toEqual(["overrun d=3>2 #1 @3", "overrun d=3>2 #2 @16", "overrun d=3>2 #3 @29", `error: ${stop}`]);
    expect([st.rtcOverruns, st.rtcConsecutiveOverruns]).toEqual([3, 3]);
    expect(st.safety.estopReason).toBe(stop);

    // the limit comes from the profile
    const r = overrunRig(0.05, { rtc_max_consecutive_overruns: 5 });
    r.loop.start();
    await r.s.advance(0.7);
    const st5 = r.loop.stop();
    expect([st5.rtcOverruns, st5.safety.estop]).toEqual([3, false]);
  });

  it("rtc: an inference hung past rtc_overrun_timeout_s stops the loop", async () => {
    const { s, loop, events } = overrunRig(100, { rtc_overrun_timeout_s: 0.2 });
    loop.start();
    await s.advance(0.4);
    const st = loop.stop();
    expect(events[0]).toBe("overrun d=3>2 #1 @3");
    expect(events[1]).toMatch(
      /^error: rtc: an inference has been running for 0\.2\d+ s, over rtc_overrun_timeout_s 0\.2 s \(the policy can be given at most 2 control steps, 40 ms\); stopping$/,
    );
    expect(events.length).toBe(2);
    expect([st.rtcOverruns, st.safety.estop]).toEqual([1, true]);
  });

  it("rtc: without rtcMaxDelay, a delay with no s in [d, H - d] is an overrun (D = floor(H / 2))", async () => {
    const s = new FakeScheduler();
    const link = new FakeLink();
    feed(s, link, () => [0, 0]);
    const policy = new FakePolicy({ horizon: 4, actionDim: 2, scheduler: s, latencyS: 0.05 });
    const events: string[] = [];
    const loop = new ControlLoop({
      policy,
      link,
      profile: testProfile(),
      scheduler: s,
      merge: { mode: "rtc", executionHorizon: 1 },
      onEvent: (e) => e.kind === "rtc-overrun" && events.push(`d=${e.delaySteps}>${e.maxDelaySteps}`),
    });
    loop.start();
    await s.advance(0.1);
    const st = loop.stop();
    expect(events).toEqual(["d=3>2"]);
    expect(st.rtcOverruns).toBe(1);
  });

  it("ensemble: requests whenever none is in flight and averages overlapping predictions, oldest weighted most", async () => {
    const s = new FakeScheduler();
    const link = new FakeLink();
    feed(s, link, () => [0, 0]);
    // chunk of call c: every action is c (so an ensembled action is a weighted mean of call indices)
    const policy = new FakePolicy({
      horizon: 10,
      actionDim: 2,
      scheduler: s,
      latencyS: 0.001,
      chunk: (_o, call) => new Float32Array(20).fill(call),
    });
    const loop = new ControlLoop({
      policy,
      link,
      profile: testProfile(),
      scheduler: s,
      merge: { mode: "ensemble", coeff: 0.5 },
    });
    loop.start();
    await s.advance(0.1 - 1e-9);
    loop.stop();
    // a request at every tick (0..80 ms); calls 0..k all predict step k (k < 10)
    expect(policy.calls.length).toBe(5);
    const w = (n: number): number => {
      let num = 0;
      let den = 0;
      for (let i = 0; i < n; i++) ((num += Math.exp(-0.5 * i) * i), (den += Math.exp(-0.5 * i)));
      return num / den;
    };
    // each chunk lands after its tick: step 1 executes call 0 alone, step 2 calls 0 and 1, ...
    expect(link.sent.map((c) => +pos(c)[0]!.toFixed(5))).toEqual([1, 2, 3, 4].map((n) => +w(n).toFixed(5)));
    expect(link.sent.map((c) => +pos(c)[0]!.toFixed(5))).toEqual([0, 0.37754, 0.67984, 0.91542]);
  });

  it("blend: requests at the threshold and merges the overlap with the aggregate function", async () => {
    const s = new FakeScheduler();
    const link = new FakeLink();
    feed(s, link, () => [0, 0]);
    const policy = new FakePolicy({
      horizon: 4,
      actionDim: 2,
      scheduler: s,
      latencyS: 0.001,
      chunk: (_o, call) => new Float32Array(8).fill(call === 0 ? 0 : 1),
    });
    const loop = new ControlLoop({
      policy,
      link,
      profile: testProfile(),
      scheduler: s,
      merge: { mode: "blend", threshold: 0.5, aggregate: "average", smoothing: 0 },
    });
    loop.start();
    await s.advance(0.1 - 1e-9);
    loop.stop();
    // call 0 at step 0 queues steps 1..3 (it lands after tick 0); at step 2, 2 of 4 are queued: call 1
    // predicts steps 2..5 and lands after tick 2: step 3 averages 0 and 1, step 4 is call 1's alone
    expect(policy.calls.map((c) => Math.round(c.atS / 0.02))).toEqual([0, 2, 4]);
    expect(link.sent.slice(0, 4).map((c) => +pos(c)[0]!.toFixed(5))).toEqual([0, 0, 0.5, 1]);
  });

  it("refuses a prefix mode when the policy's fps differs from the control rate", () => {
    const s = new FakeScheduler();
    const policy = new FakePolicy({ horizon: 10, actionDim: 2, fps: 10, scheduler: s, latencyS: 0.05 });
    expect(
      () =>
        new ControlLoop({
          policy,
          link: new FakeLink(),
          profile: testProfile(),
          scheduler: s,
          merge: { mode: "rtc" },
        }),
    ).toThrow("merge mode 'rtc' passes a prefix, which needs the policy's fps (10) to equal the control rate (50 Hz)");
  });
});

describe("ControlLoop in real time", () => {
  it("ticks on the real clock: its counts are consistent under any load", async () => {
    const sched = realScheduler();
    const link = new FakeLink();
    const timer = setInterval(() => link.setState([0, 0], sched.now()), 5);
    const policy = new FakePolicy({ horizon: 10, actionDim: 2, scheduler: sched, latencyS: 0.02 });
    const loop = new ControlLoop({
      policy,
      link,
      profile: testProfile(),
      scheduler: sched,
      merge: { mode: "blend", aggregate: "latest_only" },
    });
    loop.start();
    await new Promise((r) => setTimeout(r, 1000));
    const st = loop.stop();
    clearInterval(timer);
    // Facts that hold however loaded the machine is (rates and lateness do not): tick 0 runs before
    // the stop timer; a deadline is either ticked or counted as missed, and none is counted before it
    // is due (deadlines passed during a stall at the very end may not be counted yet).
    expect(st.ticks).toBeGreaterThanOrEqual(1);
    expect(st.ticks + st.missedDeadlines).toBeLessThanOrEqual(Math.floor(st.seconds * 50 + 1e-6) + 1);
    expect(st.loopHz).toBeCloseTo(st.ticks / st.seconds, 9);
    // every inference but one still in flight has been counted, none failed
    expect(st.inferErrors).toBe(0);
    expect(policy.calls.length - st.inferCount).toBeGreaterThanOrEqual(0);
    expect(policy.calls.length - st.inferCount).toBeLessThanOrEqual(1);
    expect(st.inferCount).toBeGreaterThanOrEqual(1);
    // one command at most per tick; the figures are ordered
    expect(st.sent).toBeLessThanOrEqual(st.ticks);
    expect(link.sent.length).toBe(st.sent);
    expect(0 <= st.jitterP50Ms && st.jitterP50Ms <= st.jitterP99Ms && st.jitterP99Ms <= st.jitterMaxMs).toBe(true);
    expect(st.recent.ticks).toBe(Math.min(st.ticks, 500));
    expect(st.recent.jitterMaxMs).toBeLessThanOrEqual(st.jitterMaxMs);
  });
});
