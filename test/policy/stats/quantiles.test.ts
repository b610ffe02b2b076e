import { describe, expect, it } from "vitest";
import { Rng } from "../../../policy/random.ts";
import {
  median,
  nearestRankIndex,
  percentiles,
  quantile,
  quantiles,
  RecentSamples,
  StreamingQuantiles,
} from "../../../policy/stats/quantiles.ts";

describe("nearest-rank quantiles", () => {
  it("picks the smallest sample with at least q·n samples at or below it", () => {
    const xs = [5, 1, 4, 2, 3];
    expect(quantile(xs, 0)).toBe(1);
    expect(quantile(xs, 0.2)).toBe(1);
    expect(quantile(xs, 0.21)).toBe(2);
    expect(median(xs)).toBe(3);
    expect(quantile(xs, 1)).toBe(5);
    // an even count: the lower middle sample, never an interpolated value
    expect(median([4, 1, 3, 2])).toBe(2);
    // fewer than 100 samples: p99 is the largest
    expect(percentiles([3, 1, 2])).toEqual({ p50Ms: 2, p99Ms: 3 });
    const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(quantiles(hundred, [0.5, 0.99, 1])).toEqual([50, 99, 100]);
  });

  it("gives NaN for no samples and refuses a q outside [0, 1]", () => {
    expect(median([])).toBeNaN();
    expect(() => quantile([1], 1.5)).toThrow(/q must be in \[0, 1\], got 1.5/);
    expect(() => quantile([], -0.1)).toThrow(/got -0.1/);
    expect(nearestRankIndex(7, 0.5)).toBe(3);
  });
});

describe("RecentSamples", () => {
  it("keeps the latest samples in order and is exact over them", () => {
    const r = new RecentSamples(4);
    expect(r.quantiles([0.5])).toEqual([NaN]);
    for (const x of [10, 20, 30]) r.push(x);
    expect(Array.from(r.values())).toEqual([10, 20, 30]);
    for (const x of [1, 2, 3]) r.push(x);
    expect(r.length).toBe(4);
    expect(Array.from(r.values())).toEqual([30, 1, 2, 3]);
    expect(r.quantiles([0, 0.5, 1])).toEqual([1, 2, 30]);
    expect(r.max()).toBe(30);
    r.clear();
    expect(r.length).toBe(0);
    expect(() => new RecentSamples(0)).toThrow(/positive integer, got 0/);
  });
});

describe("StreamingQuantiles", () => {
  it("matches the exact nearest-rank quantile within its relative accuracy", () => {
    const rng = new Rng(3);
    const xs: number[] = [];
    const s = new StreamingQuantiles({ relativeAccuracy: 0.005 });
    for (let i = 0; i < 20_000; i++) {
      // a latency-like spread: a log-normal body and a few zeros
      const x = i % 97 === 0 ? 0 : Math.exp(rng.normal() * 0.8);
      xs.push(x);
      s.add(x);
    }
    for (const q of [0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1]) {
      const exact = quantile(xs, q);
      const est = s.quantile(q);
      expect(Math.abs(est - exact)).toBeLessThanOrEqual(0.005 * Math.abs(exact) + 1e-12);
    }
    expect(s.count).toBe(20_000);
    expect(s.min).toBe(0);
    expect(s.max).toBe(Math.max(...xs));
    expect(s.mean).toBeCloseTo(xs.reduce((a, b) => a + b, 0) / xs.length, 9);
  });

  it("reads the right sample at small counts and when empty", () => {
    const s = new StreamingQuantiles();
    expect(s.quantile(0.5)).toBeNaN();
    for (const x of [1, 2, 3, 4]) s.add(x);
    // nearest rank: the median of 4 samples is the second
    expect(s.quantile(0.5)).toBeCloseTo(2, 1);
    expect(s.quantile(0.99)).toBe(4);
    expect(() => s.add(Number.NaN)).toThrow(/NaN is not a finite number/);
  });
});
