/**
 * The chunk executor, mode by mode, against timelines worked out by hand (one action dim unless
 * said otherwise, so every queued value can be read off); `sync`, `blend` and `rtc` run with smoothing
 * off here (smooth.test.ts covers it).
 */
import { describe, expect, it } from "vitest";
import { ChunkExecutor, withPolicySteps } from "../../../policy/runtime/executor.ts";
import type { ChunkTicket } from "../../../policy/runtime/executor.ts";
import { Rng } from "../../../policy/random.ts";

const f32 = (xs: number[]): Float32Array => Float32Array.from(xs);
const one = (a: Float32Array | undefined): number | undefined => (a ? a[0] : undefined);

/**
 * Runs `steps` control steps at zero latency: each requested chunk is computed and merged at the
 * step it was requested. Returns the executed actions (dim 0) and the tickets.
 */
function driveZeroLatency(
  ex: ChunkExecutor,
  steps: number,
  chunkFor: (t: ChunkTicket, k: number) => Float32Array,
): { actions: (number | undefined)[]; tickets: ChunkTicket[] } {
  const actions: (number | undefined)[] = [];
  const tickets: ChunkTicket[] = [];
  for (let t = 0; t < steps; t++) {
    expect(ex.step).toBe(t);
    if (ex.wantsChunk()) {
      const tk = ex.request();
      tickets.push(tk);
      ex.merge(tk.s0, chunkFor(tk, tickets.length - 1));
    }
    actions.push(one(ex.next()));
  }
  return { actions, tickets };
}

/** Chunk from step s0 with values 10 * s0 + i (action i is for step s0 + i). */
const bySteps =
  (H: number) =>
  (t: ChunkTicket): Float32Array =>
    f32(Array.from({ length: H }, (_, i) => 10 * t.s0 + i));

describe("ChunkExecutor sync", () => {
  it("executes nActionSteps of each chunk, then requests the next (no overlap)", () => {
    const ex = new ChunkExecutor({ horizon: 4, actionDim: 1, mode: "sync", nActionSteps: 2, smoothing: 0 });
    const { actions, tickets } = driveZeroLatency(ex, 6, bySteps(4));
    expect(tickets.map((t) => t.s0)).toEqual([0, 2, 4]);
    expect(tickets.every((t) => t.prefixLen === 0 && t.prefix === undefined)).toBe(true);
    expect(actions).toEqual([0, 1, 20, 21, 40, 41]);
  });

  it("with prefixSteps sends the previous chunk's next planned actions (sim eval --prefix-steps)", () => {
    const ex = new ChunkExecutor({
      horizon: 5,
      actionDim: 2,
      mode: "sync",
      nActionSteps: 2,
      prefixSteps: 2,
      smoothing: 0,
    });
    // Two dims: dim 1 = dim 0 + 0.5.
    const chunk = (t: ChunkTicket): Float32Array =>
      f32(Array.from({ length: 5 }, (_, i) => [10 * t.s0 + i, 10 * t.s0 + i + 0.5]).flat());
    const { actions, tickets } = driveZeroLatency(ex, 6, chunk);
    expect(tickets.map((t) => t.s0)).toEqual([0, 2, 4]);
    expect(tickets[0]?.prefix).toBeUndefined();
    expect(Array.from(tickets[1]!.prefix!)).toEqual([2, 2.5, 3, 3.5]);
    expect(tickets[1]?.prefixLen).toBe(2);
    expect(Array.from(tickets[2]!.prefix!)).toEqual([22, 22.5, 23, 23.5]);
    expect(actions).toEqual([0, 1, 20, 21, 40, 41]);
  });

  it("holds (undefined) when no chunk is queued, and a late chunk loses the steps already gone", () => {
    const ex = new ChunkExecutor({ horizon: 4, actionDim: 1, mode: "sync", nActionSteps: 3, smoothing: 0 });
    const tk = ex.request();
    expect(ex.wantsChunk()).toBe(false);
    expect(ex.next()).toBeUndefined();
    ex.merge(tk.s0, f32([0, 1, 2, 3]));
    expect([one(ex.next()), one(ex.next())]).toEqual([1, 2]);
    expect(ex.wantsChunk()).toBe(true);
  });
});

describe("the policy's recommended actions per chunk (ChunkPolicy.nActionSteps)", () => {
  const policy = { horizon: 12, actionDim: 1, nActionSteps: 6 };
  it("fills sync's nActionSteps when the merge leaves it open, and only then", () => {
    expect(withPolicySteps(policy, { mode: "sync" })).toEqual({ mode: "sync", nActionSteps: 6 });
    expect(withPolicySteps(policy, { mode: "sync", nActionSteps: 3 })).toEqual({ mode: "sync", nActionSteps: 3 });
    // within the room the prefix leaves
    expect(withPolicySteps(policy, { mode: "sync", prefixSteps: 8 })).toEqual({
      mode: "sync",
      prefixSteps: 8,
      nActionSteps: 4,
    });
    expect(withPolicySteps(policy, { mode: "ensemble" })).toEqual({ mode: "ensemble" });
    expect(withPolicySteps({ horizon: 12 }, { mode: "sync" })).toEqual({ mode: "sync" });
  });

  it("makes the executor request every nActionSteps steps; without one, every whole chunk", () => {
    const requestsAt = (ex: ChunkExecutor): number[] => driveZeroLatency(ex, 24, bySteps(12)).tickets.map((t) => t.s0);
    expect(requestsAt(ChunkExecutor.forPolicy(policy, { mode: "sync" }))).toEqual([0, 6, 12, 18]);
    expect(requestsAt(ChunkExecutor.forPolicy({ horizon: 12, actionDim: 1 }, { mode: "sync" }))).toEqual([0, 12]);
  });
});

describe("ChunkExecutor sync reproduces sim eval's former loop", () => {
  /** The loop `sim/eval.ts` ran before the executor (runChunked), kept here as the reference. */
  function formerLoop(
    chunks: Float32Array[],
    steps: number,
    A: number,
    n: number,
    p: number,
  ): { actions: number[][]; prefixes: (number[] | undefined)[] } {
    let queue: Float32Array[] = [];
    let prefix: Float32Array | undefined;
    let k = 0;
    const actions: number[][] = [];
    const prefixes: (number[] | undefined)[] = [];
    for (let t = 0; t < steps; t++) {
      if (queue.length === 0) {
        prefixes.push(prefix ? Array.from(prefix) : undefined);
        const chunk = chunks[k++]!;
        if (p > 0) prefix = chunk.slice(n * A, (n + p) * A);
        queue = [];
        for (let i = 0; i < n; i++) queue.push(chunk.slice(i * A, (i + 1) * A));
      }
      actions.push(Array.from(queue.shift()!));
    }
    return { actions, prefixes };
  }

  it("gives the same actions and prefixes for every nActionSteps and prefixSteps", () => {
    const H = 6;
    const A = 2;
    const steps = 40;
    const rng = new Rng(3);
    const chunks = Array.from({ length: steps }, () => rng.normalArray(H * A));
    for (let n = 1; n <= H; n++) {
      for (let p = 0; n + p <= H; p++) {
        const want = formerLoop(chunks, steps, A, n, p);
        const ex = new ChunkExecutor({
          horizon: H,
          actionDim: A,
          mode: "sync",
          nActionSteps: n,
          prefixSteps: p,
          smoothing: 0,
        });
        const actions: number[][] = [];
        const prefixes: (number[] | undefined)[] = [];
        let k = 0;
        for (let t = 0; t < steps; t++) {
          if (ex.wantsChunk()) {
            const tk = ex.request();
            prefixes.push(tk.prefix ? Array.from(tk.prefix) : undefined);
            ex.merge(tk.s0, chunks[k++]!);
          }
          actions.push(Array.from(ex.next()!));
        }
        expect({ n, p, actions, prefixes }).toEqual({ n, p, ...want });
      }
    }
  });
});

describe("ChunkExecutor ensemble", () => {
  it("averages every prediction for a step with exp(-0.01 i), i = 0 the oldest", () => {
    const ex = new ChunkExecutor({ horizon: 3, actionDim: 1, mode: "ensemble" });
    const { actions, tickets } = driveZeroLatency(ex, 4, bySteps(3));
    expect(tickets.map((t) => t.s0)).toEqual([0, 1, 2, 3]);
    // step 1: (1 * 1 + 10 * e^-0.01) / (1 + e^-0.01); the oldest prediction (1) weighs most.
    // step 2: (2 + 11 e^-0.01 + 20 e^-0.02) / (1 + e^-0.01 + e^-0.02); step 3: chunks 1..3 (12, 21, 30).
    expect(actions[0]).toBe(0);
    expect(actions[1]).toBeCloseTo(5.4775, 4);
    expect(actions[2]).toBeCloseTo(10.94, 4);
    expect(actions[3]).toBeCloseTo(20.94, 4);
  });

  it("coeff 0 is the plain mean", () => {
    const ex = new ChunkExecutor({ horizon: 3, actionDim: 1, mode: "ensemble", coeff: 0 });
    const { actions } = driveZeroLatency(ex, 3, bySteps(3));
    expect(actions).toEqual([0, 5.5, 11]);
  });
});

describe("ChunkExecutor blend (LeRobot async client)", () => {
  // Request k is a constant chunk of 10 * k; H = 4, threshold 0.5: requests at steps 0, 2, 4.
  const run = (aggregate?: "weighted_average" | "latest_only" | "average" | "conservative") => {
    const ex = new ChunkExecutor({
      horizon: 4,
      actionDim: 1,
      mode: "blend",
      smoothing: 0,
      ...(aggregate ? { aggregate } : {}),
    });
    return driveZeroLatency(ex, 6, (_t, k) => new Float32Array(4).fill(10 * k));
  };

  it("requests when queued / horizon <= 0.5 and merges the overlap 0.3 old + 0.7 new by default", () => {
    const { actions, tickets } = run();
    expect(tickets.map((t) => t.s0)).toEqual([0, 2, 4]);
    // steps 2, 3: 0.3 * 0 + 0.7 * 10 = 7; steps 4, 5: 0.3 * 10 + 0.7 * 20 = 17.
    expect(actions).toEqual([0, 0, 7, 7, 17, 17]);
  });

  it("latest_only, average and conservative", () => {
    expect(run("latest_only").actions).toEqual([0, 0, 10, 10, 20, 20]);
    expect(run("average").actions).toEqual([0, 0, 5, 5, 15, 15]);
    // 0.7 * 0 + 0.3 * 10 = 3; 0.7 * 10 + 0.3 * 20 = 13.
    expect(run("conservative").actions).toEqual([0, 0, 3, 3, 13, 13]);
  });

  it("drops predictions for steps already executed when a chunk arrives late", () => {
    const ex = new ChunkExecutor({ horizon: 4, actionDim: 1, mode: "blend", smoothing: 0 });
    ex.merge(ex.request().s0, new Float32Array(4).fill(0));
    expect([one(ex.next()), one(ex.next())]).toEqual([0, 0]);
    expect(ex.wantsChunk()).toBe(true);
    const tk = ex.request();
    expect(one(ex.next())).toBe(0); // step 2 runs from the old chunk while the new one is computed
    ex.merge(tk.s0, new Float32Array(4).fill(10)); // computed at step 2, arrives at step 3
    expect(ex.queued).toBe(3);
    expect([one(ex.next()), one(ex.next()), one(ex.next()), one(ex.next())]).toEqual([7, 10, 10, undefined]);
  });
});

describe("ChunkExecutor rtc", () => {
  it("commits the next d actions as the prefix, requests every s steps, and swaps in the new chunk after them", () => {
    const ex = new ChunkExecutor({
      horizon: 6,
      actionDim: 1,
      mode: "rtc",
      delaySteps: 2,
      executionHorizon: 3,
      smoothing: 0,
    });
    // A fake policy honouring the prefix: request k returns the prefix, then 100 k + i.
    let k = 0;
    const policy = (t: ChunkTicket): Float32Array => {
      const out = f32(Array.from({ length: 6 }, (_, i) => 100 * k + i));
      if (t.prefix) out.set(t.prefix);
      k++;
      return out;
    };
    const t0 = ex.request();
    expect(t0).toEqual({ s0: 0, prefixLen: 0, holdsAfterPrefix: true });
    ex.merge(0, policy(t0)); // the first chunk: the loop waits for it
    expect([one(ex.next()), one(ex.next()), one(ex.next())]).toEqual([0, 1, 2]);
    // Step 3 = 0 + s: request; steps 3, 4 are committed and run while the chunk is computed (d = 2).
    expect(ex.wantsChunk()).toBe(true);
    const t1 = ex.request();
    expect(t1.s0).toBe(3);
    expect(Array.from(t1.prefix!)).toEqual([3, 4]);
    const c1 = policy(t1); // [3, 4, 102, 103, 104, 105]
    expect([one(ex.next()), one(ex.next())]).toEqual([3, 4]);
    ex.merge(t1.s0, c1); // arrives at step 5 = s0 + d
    expect(one(ex.next())).toBe(102);
    // Step 6 = 3 + s: the next request commits [103, 104]. A chunk that arrives at once and does not
    // reproduce its prefix exactly still runs the committed actions first.
    expect(ex.wantsChunk()).toBe(true);
    const t2 = ex.request();
    expect(t2.s0).toBe(6);
    expect(Array.from(t2.prefix!)).toEqual([103, 104]);
    ex.merge(6, f32([103.5, 104.5, 202, 203, 204, 205]));
    expect([one(ex.next()), one(ex.next()), one(ex.next()), one(ex.next())]).toEqual([103, 104, 202, 203]);
  });

  it("with a delay d, executes the prefix then continues the new chunk at s0 + d, step for step", () => {
    // H = 8, d = 3, s = 4; chunk k's action i is 100 k + i unless the prefix fixes it.
    const ex = new ChunkExecutor({
      horizon: 8,
      actionDim: 1,
      mode: "rtc",
      delaySteps: 3,
      executionHorizon: 4,
      smoothing: 0,
    });
    let k = 0;
    const policy = (t: ChunkTicket): Float32Array => {
      const out = f32(Array.from({ length: 8 }, (_, i) => 100 * k + i));
      if (t.prefix) out.set(t.prefix);
      k++;
      return out;
    };
    const executed: (number | undefined)[] = [];
    let pending: { ticket: ChunkTicket; chunk: Float32Array; arrive: number } | undefined;
    for (let step = 0; step < 12; step++) {
      if (pending && step >= pending.arrive) {
        ex.merge(pending.ticket.s0, pending.chunk);
        pending = undefined;
      }
      if (!pending && ex.wantsChunk()) {
        const ticket = ex.request();
        pending = { ticket, chunk: policy(ticket), arrive: step + 3 };
      }
      executed.push(one(ex.next()));
    }
    // Steps 0-2 hold while the first chunk (no prefix) is computed; it then starts from its action 0
    // at step 3. The second request is at step 4 = 0 + s, committing steps 4-6 (chunk 0's actions
    // 1-3), and chunk 1 (computed at step 4) takes over at step 7 = 4 + d with its action 3. The third
    // request, at step 8, commits 104-106 (steps 8-10) and chunk 2 takes over at step 11 with 203.
    expect(executed).toEqual([undefined, undefined, undefined, 0, 1, 2, 3, 103, 104, 105, 106, 203]);
  });

  it("after the queue ran dry, resumes the new chunk right after its prefix instead of skipping the held steps", () => {
    const ex = new ChunkExecutor({
      horizon: 6,
      actionDim: 1,
      mode: "rtc",
      delaySteps: 2,
      executionHorizon: 2,
      smoothing: 0,
    });
    const t0 = ex.request();
    expect(t0.holdsAfterPrefix).toBe(true);
    ex.merge(0, f32([0, 1, 2, 3, 4, 5]));
    // Run to step 5: only action 5 is left, so the request at step 5 commits [5] and holds after it.
    for (let i = 0; i < 5; i++) ex.next();
    const t1 = ex.request();
    expect(t1).toEqual({ s0: 5, prefixLen: 1, prefix: f32([5]), holdsAfterPrefix: true });
    // The chunk takes 4 steps: step 5 runs the prefix, steps 6-8 hold, and at step 9 the chunk's action 1
    // (the first after the prefix) runs, not action 4 (planned for step 9 had the robot kept moving).
    expect([one(ex.next()), one(ex.next()), one(ex.next()), one(ex.next())]).toEqual([
      5,
      undefined,
      undefined,
      undefined,
    ]);
    ex.merge(5, f32([5, 11, 12, 13, 14, 15]));
    expect([one(ex.next()), one(ex.next()), one(ex.next())]).toEqual([11, 12, 13]);
  });

  it("refuses a delay and execution horizon outside d <= s <= H - d", () => {
    expect(
      () =>
        new ChunkExecutor({ horizon: 6, actionDim: 1, mode: "rtc", delaySteps: 2, executionHorizon: 5, smoothing: 0 }),
    ).toThrow(/executionHorizon s \(d=2 <= s <= H-d, H=6\) must be an integer in \[2, 4\], got 5/);
    expect(
      () =>
        new ChunkExecutor({ horizon: 6, actionDim: 1, mode: "rtc", delaySteps: 2, executionHorizon: 1, smoothing: 0 }),
    ).toThrow(/got 1/);
    expect(
      () =>
        new ChunkExecutor({ horizon: 6, actionDim: 1, mode: "rtc", delaySteps: 4, executionHorizon: 3, smoothing: 0 }),
    ).toThrow(/0 <= d <= horizon\/2 \(d=4, H=6\)/);
  });
});

describe("ChunkExecutor errors", () => {
  it("names both sizes for a chunk of the wrong length", () => {
    const ex = new ChunkExecutor({ horizon: 4, actionDim: 2, mode: "sync", nActionSteps: 2, smoothing: 0 });
    const tk = ex.request();
    expect(() => ex.merge(tk.s0, new Float32Array(5))).toThrow(
      /the chunk has 5 values, expected horizon\*actionDim = 4\*2 = 8/,
    );
    expect(ex.inFlight).toBe(false);
  });

  it("refuses a non-finite action before it enters the queue; the queue keeps the old chunk", () => {
    const ex = new ChunkExecutor({ horizon: 3, actionDim: 2, mode: "blend", threshold: 1, smoothing: 0 });
    ex.merge(ex.request().s0, f32([1, 1, 2, 2, 3, 3]));
    const tk = ex.request();
    expect(() => ex.merge(tk.s0, f32([9, 9, Number.NaN, 9, 9, 9]))).toThrow(
      /chunk from step 0 has a non-finite action NaN at chunk step 1, dim 0; refused/,
    );
    expect(ex.inFlight).toBe(false);
    expect([ex.next(), ex.next(), ex.next()].map((a) => Array.from(a!))).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
    expect(ex.next()).toBeUndefined();
  });

  it("allows one request in flight and checks its options", () => {
    const ex = new ChunkExecutor({ horizon: 4, actionDim: 1, mode: "ensemble" });
    ex.request();
    expect(() => ex.request()).toThrow(/a request from step 0 is still in flight/);
    ex.cancel();
    expect(ex.wantsChunk()).toBe(false); // step 0 was already asked for
    ex.next();
    expect(ex.wantsChunk()).toBe(true);
    expect(
      () =>
        new ChunkExecutor({ horizon: 6, actionDim: 1, mode: "sync", nActionSteps: 3, prefixSteps: 4, smoothing: 0 }),
    ).toThrow(/nActionSteps \+ prefixSteps <= horizon \(3 \+ 4 > 6\)/);
    expect(() => new ChunkExecutor({ horizon: 4, actionDim: 1, mode: "blend", threshold: 1.5, smoothing: 0 })).toThrow(
      /threshold must be in \[0, 1\], got 1.5/,
    );
  });
});
