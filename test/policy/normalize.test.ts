import { describe, expect, it } from "vitest";
import { affineFor, denormalize, normalize, padAffine } from "../../policy/normalize.ts";
import type { FeatureStats } from "../../policy/normalize.ts";

const stats: FeatureStats = {
  mean: [1, -2],
  std: [2, 0.5],
  min: [-3, -4],
  max: [5, 0],
  count: 10,
  q01: [-2, -3.5],
  q99: [4, -0.5],
};

describe("normalisation", () => {
  it("matches LeRobot's formulas for each mode", () => {
    const x = [3, -1];
    const ms = normalize(x, affineFor(stats, "mean_std"));
    expect(ms[0]).toBeCloseTo((3 - 1) / 2, 6);
    expect(ms[1]).toBeCloseTo((-1 + 2) / 0.5, 5);
    const mm = normalize(x, affineFor(stats, "min_max"));
    expect(mm[0]).toBeCloseTo((2 * (3 + 3)) / 8 - 1, 6);
    expect(mm[1]).toBeCloseTo((2 * (-1 + 4)) / 4 - 1, 6);
    const q = normalize(x, affineFor(stats, "quantiles"));
    expect(q[0]).toBeCloseTo((2 * (3 + 2)) / 6 - 1, 6);
    expect(Array.from(normalize(x, affineFor(stats, "identity")))).toEqual(x);
  });

  it("inverts, and pads with zero dims that come back as 0", () => {
    const norm = padAffine(affineFor(stats, "mean_std"), 4);
    const y = normalize([3, -1, 7, 7], norm);
    expect(y[2]).toBe(0);
    const back = denormalize(y, norm);
    expect(back[0]).toBeCloseTo(3, 5);
    expect(back[1]).toBeCloseTo(-1, 5);
    expect(back[3]).toBe(0);
  });

  it("names the feature and field when stats are missing", () => {
    const { q01: _q01, ...noQuantiles } = stats;
    expect(() => affineFor(noQuantiles, "quantiles", "observation.state")).toThrow(/observation.state.*q01/);
    expect(() => padAffine(affineFor(stats, "mean_std"), 1)).toThrow(/pad/);
  });
});
