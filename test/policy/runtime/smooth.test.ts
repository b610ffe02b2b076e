/**
 * Smoothing a new chunk onto the commands before it (`smooth.ts`), alone and in the chunk executor.
 */
import { describe, expect, it } from "vitest";
import { ChunkExecutor, chunkMergeFrom } from "../../../policy/runtime/executor.ts";
import { smoothOnto } from "../../../policy/runtime/smooth.ts";

const f32 = (xs: number[]): Float32Array => Float32Array.from(xs);

/** Mean squared third difference of a 1-D sequence. */
function jerk(xs: readonly number[]): number {
  let s = 0;
  for (let k = 3; k < xs.length; k++) s += (xs[k]! - 3 * xs[k - 1]! + 3 * xs[k - 2]! - xs[k - 3]!) ** 2;
  return s / Math.max(1, xs.length - 3);
}

describe("smoothOnto", () => {
  it("passes a motion of constant acceleration continuing the anchor unchanged", () => {
    const q = (i: number): number => 0.3 + 0.02 * i - 0.004 * i * i;
    const anchor = f32([q(0), q(1), q(2)]);
    const chunk = f32(Array.from({ length: 12 }, (_, i) => q(i + 3)));
    const out = smoothOnto(chunk, anchor, 1, 100);
    for (let i = 0; i < chunk.length; i++) expect(out[i]).toBeCloseTo(chunk[i]!, 5);
  });

  it("bends a chunk that jumps away from the anchor onto it, and then follows the chunk", () => {
    const anchor = f32([0, 0, 0]);
    const chunk = f32(Array.from({ length: 40 }, () => 1));
    const out = [...smoothOnto(chunk, anchor, 1, 100)];
    // The join is gradual: the first command moves a little, not the whole jump.
    expect(out[0]!).toBeGreaterThan(0);
    expect(out[0]!).toBeLessThan(0.2);
    // Far from the boundary the chunk is followed.
    expect(Math.abs(out[39]! - 1)).toBeLessThan(0.05);
    expect(jerk([0, 0, 0, ...out])).toBeLessThan(jerk([0, 0, 0, ...chunk]) / 50);
  });

  it("smooths each action dim on its own, and λ = 0 returns the chunk", () => {
    const anchor = f32([0, 5, 0, 5, 0, 5]);
    const chunk = f32(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? 1 : 5)));
    const out = smoothOnto(chunk, anchor, 2, 50);
    for (let i = 0; i < 10; i++) expect(out[2 * i + 1]).toBeCloseTo(5, 5);
    expect(out[0]).not.toBeCloseTo(1, 2);
    expect([...smoothOnto(chunk, anchor, 2, 0)]).toEqual([...chunk]);
  });

  it("refuses a negative or non-finite λ and an anchor of more than 3 steps, naming them", () => {
    expect(() => smoothOnto(f32([1, 2, 3, 4]), f32([]), 1, -1)).toThrow(/λ must be finite and >= 0, got -1/);
    expect(() => smoothOnto(f32([1, 2, 3, 4]), f32([]), 1, Number.NaN)).toThrow(/got NaN/);
    expect(() => smoothOnto(f32([1, 2, 3, 4]), f32([0, 0, 0, 0]), 1, 1)).toThrow(/at most 3 anchor steps/);
  });
});

describe("the chunk executor's smoothing", () => {
  /** Executes `steps` sync steps on chunks whose level alternates 0, 1, 0, … from chunk to chunk. */
  function drive(smoothing: number, steps = 40): number[] {
    const ex = new ChunkExecutor({ horizon: 16, actionDim: 1, mode: "sync", nActionSteps: 8, smoothing });
    const out: number[] = [];
    let k = 0;
    for (let t = 0; t < steps; t++) {
      if (ex.wantsChunk()) {
        const tk = ex.request();
        const level = k++ % 2;
        ex.merge(tk.s0, f32(Array.from({ length: 16 }, () => level)));
      }
      out.push(ex.next()![0]!);
    }
    return out;
  }

  it("sync with smoothing 0 executes the chunks as given", () => {
    expect(drive(0).slice(0, 17)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0]);
  });

  it("sync joins each chunk onto the commands that ran, cutting the boundary jerk", () => {
    const plain = drive(0);
    const smooth = drive(100);
    // The first chunk has no commands before it: a constant chunk stays as it is.
    expect(smooth.slice(0, 8)).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(smooth[8]!).toBeGreaterThan(0);
    expect(smooth[8]!).toBeLessThan(0.2);
    expect(jerk(smooth)).toBeLessThan(jerk(plain) / 20);
  });

  it("keeps a committed prefix as it is and smooths what follows it", () => {
    const ex = new ChunkExecutor({ horizon: 8, actionDim: 1, mode: "sync", nActionSteps: 4, prefixSteps: 2 });
    const first = ex.request();
    ex.merge(first.s0, f32([0, 0, 0, 0, 0, 0, 0, 0]));
    for (let i = 0; i < 4; i++) ex.next();
    const tk = ex.request();
    expect([...tk.prefix!]).toEqual([0, 0]);
    ex.merge(tk.s0, f32([0, 0, 1, 1, 1, 1, 1, 1]));
    const got = [ex.next()![0], ex.next()![0], ex.next()![0]];
    expect(got.slice(0, 2)).toEqual([0, 0]);
    expect(got[2]!).toBeGreaterThan(0);
    expect(got[2]!).toBeLessThan(0.5);
  });

  it("blend smooths the merged overlap onto what ran; ensemble takes no smoothing", () => {
    const ex = new ChunkExecutor({ horizon: 8, actionDim: 1, mode: "blend", aggregate: "latest_only" });
    ex.merge(ex.request().s0, f32([0, 0, 0, 0, 0, 0, 0, 0]));
    for (let i = 0; i < 4; i++) ex.next();
    const tk = ex.request();
    ex.merge(tk.s0, f32([1, 1, 1, 1, 1, 1, 1, 1]));
    const got = [0, 1, 2, 3].map(() => ex.next()![0]!);
    expect(got[0]!).toBeGreaterThan(0);
    expect(got[0]!).toBeLessThan(0.5);
    expect(got[3]!).toBeGreaterThan(got[0]!);
    expect(() => chunkMergeFrom({ merge: "ensemble", smoothing: 10 })).toThrow(
      "--smoothing applies to --merge sync, blend or rtc, not ensemble",
    );
  });

  it("refuses a negative smoothing weight, naming it", () => {
    expect(() => new ChunkExecutor({ horizon: 8, actionDim: 1, mode: "rtc", smoothing: -2 })).toThrow(
      /chunk executor \(rtc\): smoothing must be finite and >= 0, got -2/,
    );
  });
});
