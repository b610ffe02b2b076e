import { describe, expect, it } from "vitest";
import { LoopExecutor, RtcDelayError } from "../../bridge/merge.ts";

/** A chunk `[h * 1]` whose action i is `base + i`. */
const ramp = (h: number, base: number): Float32Array => Float32Array.from({ length: h }, (_, i) => base + i);
const shape = { horizon: 8, actionDim: 1 };

describe("LoopExecutor", () => {
  it("keeps the executor's step on the loop's step: missed steps pop their actions", () => {
    const ex = new LoopExecutor({ mode: "blend", aggregate: "latest_only", smoothing: 0 }, shape, 50);
    expect(ex.wantsChunk(0)).toBe(true);
    const t = ex.request(0, 0);
    expect(ex.merge(t, ramp(8, 100), 0)).toBe("merged");
    expect(ex.actionAt(0)?.[0]).toBe(100);
    expect(ex.actionAt(3)?.[0]).toBe(103); // steps 1 and 2 were missed deadlines
    expect(ex.upcoming(4, 10).map((a) => a[0])).toEqual([104, 105, 106, 107]);
    expect(() => ex.actionAt(2)).toThrow("LoopExecutor: step 2 is before the queue's step 4");
  });

  it("a chunk requested before a clear is stale and merges nothing", () => {
    const ex = new LoopExecutor({ mode: "rtc", smoothing: 0 }, shape, 50);
    const t = ex.request(5, 0);
    ex.clear(7);
    expect(ex.merge(t, ramp(8, 0), 7)).toBe("stale");
    expect(ex.actionAt(7)).toBeUndefined();
    expect(ex.wantsChunk(8)).toBe(true);
  });

  it("sync places the chunk at its arrival and publishes only the n actions it executes", () => {
    const ex = new LoopExecutor({ mode: "sync", nActionSteps: 3, smoothing: 0 }, shape, 50);
    const t = ex.request(0, 0);
    ex.actionAt(0);
    ex.actionAt(1);
    ex.merge(t, ramp(8, 10), 2); // arrived before step 2: the robot held meanwhile
    expect(ex.upcoming(2, 100).map((a) => a[0])).toEqual([10, 11, 12]);
    expect([2, 3, 4, 5].map((k) => ex.actionAt(k)?.[0])).toEqual([10, 11, 12, undefined]);
  });

  it("rtc: a new delay rebuilds the executor, carrying the queue (the committed prefix) over", () => {
    const ex = new LoopExecutor({ mode: "rtc", executionHorizon: 4, smoothing: 0 }, shape, 50);
    ex.merge(ex.request(0, 0), ramp(8, 0), 0);
    for (let k = 0; k < 4; k++) ex.actionAt(k);
    expect(ex.wantsChunk(4)).toBe(true);
    const t = ex.request(4, 2); // d = 2 now: steps 4, 5 committed
    expect(ex.delaySteps).toBe(2);
    expect([...(t.prefix ?? [])]).toEqual([4, 5]);
    // while the chunk is computed the carried actions run; past them nothing (the padding is never executed)
    expect([4, 5, 6, 7].map((k) => ex.actionAt(k)?.[0])).toEqual([4, 5, 6, 7]);
    expect(ex.actionAt(8)).toBeUndefined();
    ex.merge(t, ramp(8, 100), 9);
    // the new chunk (from step 4) continues at step 9 with its action 5
    expect(ex.actionAt(9)?.[0]).toBe(105);
  });

  it("rtc with smoothing: a rebuild carries the queue over unchanged, and the next chunk is joined onto what ran", () => {
    const ex = new LoopExecutor({ mode: "rtc", executionHorizon: 4, smoothing: 100 }, shape, 50);
    ex.merge(
      ex.request(0, 0),
      Float32Array.from({ length: 8 }, () => 1),
      0,
    );
    const ran = [0, 1, 2, 3].map((k) => ex.actionAt(k)![0]!);
    const t = ex.request(4, 2); // rebuilt for d = 2
    const carried = [4, 5].map((k) => ex.actionAt(k)![0]!);
    // the carried actions are the first chunk's, not smoothed a second time
    expect(carried).toEqual([1, 1]);
    expect(ran).toEqual([1, 1, 1, 1]);
    ex.merge(
      t,
      Float32Array.from({ length: 8 }, () => 2),
      6,
    );
    // the new chunk's actions after the prefix start near the last command (1), not at 2
    const next = ex.actionAt(6)![0]!;
    expect(next).toBeGreaterThan(1);
    expect(next).toBeLessThan(1.3);
  });

  it("sync with prefixSteps: each request carries the previous chunk's next planned actions, the chunk runs from its arrival", () => {
    const ex = new LoopExecutor({ mode: "sync", nActionSteps: 3, prefixSteps: 2, smoothing: 0 }, shape, 50);
    expect(ex.passesPrefix).toBe(true);
    const t0 = ex.request(0, 0);
    expect(t0.prefix).toBeUndefined(); // nothing planned yet
    ex.merge(t0, ramp(8, 0), 0);
    expect([0, 1, 2].map((k) => ex.actionAt(k)?.[0])).toEqual([0, 1, 2]);
    expect(ex.wantsChunk(3)).toBe(true);
    // the measured delay does not enter: the arm holds while the chunk is computed
    const t1 = ex.request(3, 5);
    expect([...(t1.prefix ?? [])]).toEqual([3, 4]);
    expect(ex.delaySteps).toBe(0);
    expect([3, 4].map((k) => ex.actionAt(k))).toEqual([undefined, undefined]);
    // a policy that keeps its prefix starts the chunk with it: 3, 4 run at the arrival (step 5)
    ex.merge(t1, Float32Array.from([3, 4, 50, 51, 52, 53, 54, 55]), 5);
    expect([5, 6, 7, 8].map((k) => ex.actionAt(k)?.[0])).toEqual([3, 4, 50, undefined]);
  });

  it("sync with prefixSteps: bounded by the horizon and rtcMaxDelay, and refused across rates", () => {
    expect(() => new LoopExecutor({ mode: "sync", nActionSteps: 7, prefixSteps: 2, smoothing: 0 }, shape, 50)).toThrow(
      "nActionSteps + prefixSteps <= horizon (7 + 2 > 8)",
    );
    // without nActionSteps a sync chunk executes all but its prefix
    const ex = new LoopExecutor({ mode: "sync", prefixSteps: 2, smoothing: 0 }, shape, 50);
    ex.merge(ex.request(0, 0), ramp(8, 0), 0);
    expect(ex.upcoming(0, 100).map((a) => a[0])).toEqual([0, 1, 2, 3, 4, 5]);
    expect(
      () => new LoopExecutor({ mode: "sync", prefixSteps: 3, smoothing: 0 }, { ...shape, rtcMaxDelay: 2 }, 50),
    ).toThrow("sync: prefixSteps must be an integer in [0, 2] (horizon 8, rtcMaxDelay 2), got 3");
    expect(
      new LoopExecutor({ mode: "sync", prefixSteps: 0, smoothing: 0 }, { ...shape, fps: 10 }, 50).passesPrefix,
    ).toBe(false);
    expect(() => new LoopExecutor({ mode: "sync", prefixSteps: 1, smoothing: 0 }, { ...shape, fps: 10 }, 50)).toThrow(
      "merge mode 'sync' with prefixSteps 1 passes a prefix, which needs the policy's fps (10) to equal the control rate (50 Hz)",
    );
  });

  it("rtc: fewer queued actions than d are not carried (no padding inside the committed steps)", () => {
    const ex = new LoopExecutor({ mode: "rtc", executionHorizon: 4, smoothing: 0 }, shape, 50);
    ex.merge(ex.request(0, 0), ramp(8, 0), 0);
    for (let k = 0; k < 7; k++) ex.actionAt(k); // one action (step 7) left
    const t = ex.request(7, 3);
    expect(t.prefix).toBeUndefined();
    ex.merge(t, ramp(8, 50), 7);
    expect(ex.actionAt(7)?.[0]).toBe(50);
  });

  it("rtc refuses d beyond rtcMaxDelay and 2d > H, naming the delay", () => {
    const ex = new LoopExecutor({ mode: "rtc", smoothing: 0 }, { ...shape, rtcMaxDelay: 2 }, 50);
    expect(() => ex.request(0, 3)).toThrow(RtcDelayError);
    expect(() => ex.request(0, 3)).toThrow("d = 3 control steps exceeds the policy's rtcMaxDelay 2");
    const ex2 = new LoopExecutor({ mode: "rtc", smoothing: 0 }, shape, 50);
    expect(() => ex2.request(0, 5)).toThrow("d = 5 control steps leaves no execution horizon s");
  });

  it("rtc: prefixSteps commits max(d, prefixSteps) actions per request, within rtcMaxDelay and half the horizon", () => {
    const ex = new LoopExecutor(
      { mode: "rtc", executionHorizon: 4, prefixSteps: 3, smoothing: 0 },
      { ...shape, rtcMaxDelay: 4 },
      50,
    );
    ex.merge(ex.request(0, 0), ramp(8, 0), 0); // from rest: nothing to commit yet
    expect(ex.actionAt(0)?.[0]).toBe(0);
    // at step 4 a measured delay of 1 still commits 3: the actions for steps 4, 5, 6
    for (let k = 1; k < 4; k++) ex.actionAt(k);
    const t = ex.request(4, 1);
    expect(ex.delaySteps).toBe(3);
    expect([...(t.prefix ?? [])]).toEqual([4, 5, 6]);
    // a prefixSteps beyond what the policy was trained to continue is refused
    expect(
      () => new LoopExecutor({ mode: "rtc", prefixSteps: 5, smoothing: 0 }, { ...shape, rtcMaxDelay: 4 }, 50),
    ).toThrow("rtc: prefixSteps must be an integer in [0, 4] (horizon 8, rtcMaxDelay 4), got 5");
  });

  it("rtc: the largest delay it can commit is min(rtcMaxDelay, floor(H / 2)); unbounded in other modes", () => {
    expect(new LoopExecutor({ mode: "rtc", smoothing: 0 }, { ...shape, rtcMaxDelay: 2 }, 50).maxDelaySteps).toBe(2);
    expect(new LoopExecutor({ mode: "rtc", smoothing: 0 }, { ...shape, rtcMaxDelay: 7 }, 50).maxDelaySteps).toBe(
      shape.horizon >> 1,
    );
    expect(new LoopExecutor({ mode: "rtc", smoothing: 0 }, shape, 50).maxDelaySteps).toBe(shape.horizon >> 1);
    expect(new LoopExecutor({ mode: "blend", smoothing: 0 }, { ...shape, rtcMaxDelay: 2 }, 50).maxDelaySteps).toBe(
      Infinity,
    );
  });

  it("resamples a 10 Hz chunk to the 50 Hz control rate (and refuses rtc across rates)", () => {
    const ex = new LoopExecutor(
      { mode: "blend", aggregate: "latest_only", smoothing: 0 },
      { horizon: 3, actionDim: 1, fps: 10 },
      50,
    );
    expect(ex.horizon).toBe(11);
    ex.merge(ex.request(0, 0), new Float32Array([0, 1, 2]), 0);
    expect(ex.upcoming(0, 100).map((a) => +a[0]!.toFixed(4))).toEqual([
      0, 0.2, 0.4, 0.6, 0.8, 1, 1.2, 1.4, 1.6, 1.8, 2,
    ]);
    expect(() => new LoopExecutor({ mode: "rtc", smoothing: 0 }, { horizon: 3, actionDim: 1, fps: 10 }, 50)).toThrow(
      "passes a prefix, which needs the policy's fps (10) to equal the control rate (50 Hz)",
    );
  });
});
