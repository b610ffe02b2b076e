/**
 * The merge settings as the executor resolves them: defaults, what a request commits in each mode,
 * and the flags that reproduce a setting.
 */
import { describe, expect, it } from "vitest";
import {
  ChunkExecutor,
  DEFAULT_SMOOTHING,
  chunkMergeFrom,
  mergeFlagsOf,
  type ChunkMerge,
} from "../../../policy/runtime/executor.ts";

const f32 = (xs: number[]): Float32Array => Float32Array.from(xs);

describe("ChunkMerge in the executor", () => {
  it("fills the defaults: sync runs all but its prefix, rtc requests every H/2 steps", () => {
    const sync = new ChunkExecutor({ horizon: 6, actionDim: 1, mode: "sync", prefixSteps: 2 });
    expect(sync.settings).toEqual({ mode: "sync", nActionSteps: 4, prefixSteps: 2, smoothing: DEFAULT_SMOOTHING });
    expect(sync.committedSteps).toBe(2);
    const rtc = new ChunkExecutor({ horizon: 7, actionDim: 1, mode: "rtc" });
    expect(rtc.settings).toEqual({ mode: "rtc", executionHorizon: 3, prefixSteps: 0, smoothing: DEFAULT_SMOOTHING });
    expect(rtc.committedSteps).toBe(0);
    expect(new ChunkExecutor({ horizon: 4, actionDim: 1, mode: "blend" }).committedSteps).toBe(0);
  });

  it("rtc commits max(delaySteps, prefixSteps): a longer prefix than the delay is kept from the queue", () => {
    const ex = new ChunkExecutor({
      horizon: 8,
      actionDim: 1,
      mode: "rtc",
      executionHorizon: 3,
      prefixSteps: 3,
      delaySteps: 1,
      smoothing: 0,
    });
    expect(ex.committedSteps).toBe(3);
    ex.merge(ex.request().s0, f32([0, 1, 2, 3, 4, 5, 6, 7]));
    for (let i = 0; i < 3; i++) ex.next();
    expect(ex.wantsChunk()).toBe(true);
    const t = ex.request();
    expect(t.prefixLen).toBe(3);
    expect(Array.from(t.prefix!)).toEqual([3, 4, 5]);
    // the chunk's first 3 steps are committed: the queued 3, 4, 5 stay, its later steps replace the queue
    ex.merge(t.s0, f32([90, 91, 92, 93, 94, 95, 96, 97]));
    expect([0, 1, 2, 3].map(() => ex.next()?.[0])).toEqual([3, 4, 5, 93]);
    // the larger of the two is bounded by half the horizon, naming the setting
    expect(() => new ChunkExecutor({ horizon: 6, actionDim: 1, mode: "rtc", prefixSteps: 4 })).toThrow(
      "chunk executor (rtc): prefixSteps must be an integer with 0 <= p <= horizon/2 (p=4, H=6)",
    );
    expect(
      () => new ChunkExecutor({ horizon: 8, actionDim: 1, mode: "rtc", prefixSteps: 3, executionHorizon: 2 }),
    ).toThrow("executionHorizon s (d=3 <= s <= H-d, H=8) must be an integer in [3, 5], got 2");
  });

  it("sync ignores the inference delay: the arm holds, so only prefixSteps are committed", () => {
    const ex = new ChunkExecutor({ horizon: 6, actionDim: 1, mode: "sync", nActionSteps: 2, delaySteps: 3 });
    expect(ex.committedSteps).toBe(0);
    ex.merge(ex.request().s0, f32([0, 1, 2, 3, 4, 5]));
    ex.next();
    ex.next();
    expect(ex.request().prefix).toBeUndefined();
  });

  it("mergeFlagsOf gives the flags chunkMergeFrom maps back to the same settings", () => {
    const settings: ChunkMerge[] = [
      { mode: "sync" },
      { mode: "sync", nActionSteps: 8, prefixSteps: 2 },
      { mode: "rtc", executionHorizon: 6, prefixSteps: 8 },
      { mode: "rtc" },
      { mode: "blend", aggregate: "conservative" },
      { mode: "ensemble" },
    ];
    for (const m of settings) {
      const flags = mergeFlagsOf(m);
      const o: Record<string, string> = {};
      for (let i = 0; i < flags.length; i += 2) o[flags[i]!] = flags[i + 1]!;
      const num = (k: string): number | undefined => (o[k] === undefined ? undefined : Number(o[k]));
      const back = chunkMergeFrom({
        merge: o["--merge"] as ChunkMerge["mode"],
        ...(num("--n-action-steps") !== undefined ? { nActionSteps: num("--n-action-steps")! } : {}),
        ...(num("--prefix-steps") !== undefined ? { prefixSteps: num("--prefix-steps")! } : {}),
        ...(o["--aggregate"] !== undefined ? { aggregate: o["--aggregate"] as "conservative" } : {}),
      });
      expect(back).toEqual(m);
    }
    expect(mergeFlagsOf({ mode: "sync", nActionSteps: 8, prefixSteps: 2 }).join(" ")).toBe(
      "--merge sync --n-action-steps 8 --prefix-steps 2",
    );
  });
});
