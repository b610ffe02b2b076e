import { describe, expect, it } from "vitest";
import type { Vec3 } from "../../sim/env.ts";
import { meanSmoothness, smoothness } from "../../sim/smoothness.ts";

describe("smoothness", () => {
  it("a straight path at constant speed: its length, no jerk, no reversal", () => {
    const trace: Vec3[] = Array.from({ length: 11 }, (_, i) => [0.01 * i, 0, 0.2]);
    const actions = Float32Array.from({ length: 10 * 2 }, (_, i) => (i % 2 === 0 ? 0.1 * (i >> 1) : -0.05 * (i >> 1)));
    const s = smoothness(trace, actions, 2, 1 / 30);
    expect(s.path_length_m).toBeCloseTo(0.1, 9);
    expect(s.mean_sq_jerk).toBeLessThan(1e-3); // float32 rounding only
    expect(s.reversals).toBe(0);
  });

  it("a zig-zag counts each turn back; jitter below the minimum move is not a reversal", () => {
    const zig: Vec3[] = [0, 1, 0, 1, 0].map((y) => [0, 0.01 * y, 0]);
    expect(smoothness(zig, new Float32Array(0), 1, 0.1).reversals).toBe(3);
    const jitter: Vec3[] = Array.from({ length: 20 }, (_, i) => [0.005 * i, (i % 2) * 0.0005, 0]);
    expect(smoothness(jitter, new Float32Array(0), 1, 0.1).reversals).toBe(0);
  });

  it("a step in the commands has jerk (dt^-3 scaled), the mean averages episodes", () => {
    const steps = Float32Array.from([0, 0, 0, 0, 1, 1, 1, 1]);
    const s = smoothness([[0, 0, 0]], steps, 1, 0.1);
    // third differences at k = 3..7: 0, 1, -2, 1, 0 (x 1000): squares 0, 1, 4, 1, 0 (x 1e6), mean 1.2e6
    expect(s.mean_sq_jerk).toBeCloseTo(1.2e6, 3);
    const m = meanSmoothness([s, { path_length_m: 2, mean_sq_jerk: 0, reversals: 4 }]);
    expect(m.path_length_m).toBe(1);
    expect(m.mean_sq_jerk).toBeCloseTo(6e5, 3);
    expect(m.reversals).toBe(2);
  });

  it("says which share of the jerk spans a chunk boundary", () => {
    const steps = Float32Array.from([0, 0, 0, 0, 1, 1, 1, 1]);
    // the step at 4 is where a new chunk began: every difference with jerk spans that boundary
    expect(smoothness([[0, 0, 0]], steps, 1, 0.1, 0.002, [0, 4]).boundary_jerk_share).toBeCloseTo(1, 9);
    // chunks that began at 0 and 7: the jump is inside the first one
    expect(smoothness([[0, 0, 0]], steps, 1, 0.1, 0.002, [0, 7]).boundary_jerk_share).toBe(0);
    expect(smoothness([[0, 0, 0]], steps, 1, 0.1).boundary_jerk_share).toBeUndefined();
    // over episodes: the share of their summed jerk
    const a = { path_length_m: 0, mean_sq_jerk: 3, reversals: 0, boundary_jerk_share: 1 };
    const b = { path_length_m: 0, mean_sq_jerk: 1, reversals: 0, boundary_jerk_share: 0 };
    expect(meanSmoothness([a, b]).boundary_jerk_share).toBeCloseTo(0.75, 9);
  });
});
