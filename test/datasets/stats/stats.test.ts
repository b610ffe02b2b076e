import { describe, expect, it } from "vitest";
import { Rng } from "../../../policy/random.ts";
import { RunningStats, computeStats } from "../../../datasets/stats/running.ts";
import { aggregateFeatureStats } from "../../../datasets/stats/aggregate.ts";

/** numpy's default (linear) quantile of sorted values. */
function exactQuantile(sorted: readonly number[], p: number): number {
  const pos = (sorted.length - 1) * p;
  const lo = Math.floor(pos);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

describe("RunningStats", () => {
  it("matches exact mean/std/min/max over many batches, quantiles within 4 * range / bins", () => {
    const rng = new Rng(1);
    const dim = 3;
    const bins = 1024;
    const s = new RunningStats(dim, { bins });
    const cols: number[][] = [[], [], []];
    // batches whose range keeps growing in both directions (forces grid doubling both ways)
    for (let b = 0; b < 40; b++) {
      const rows = 1 + rng.int(200);
      const batch = new Float64Array(rows * dim);
      for (let r = 0; r < rows; r++) {
        const v = [rng.normal() * (1 + b), Math.exp(rng.normal()) - b * 0.5, rng.uniform() < 0.5 ? -b : rng.uniform()];
        for (let d = 0; d < dim; d++) {
          batch[r * dim + d] = v[d]!;
          cols[d]!.push(v[d]!);
        }
      }
      s.update(batch);
    }
    const out = s.result();
    expect(out.count).toBe(cols[0]!.length);
    for (let d = 0; d < dim; d++) {
      const xs = cols[d]!;
      const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
      const std = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length);
      expect(out.mean[d]).toBeCloseTo(mean, 10);
      expect(out.std[d]).toBeCloseTo(std, 10);
      const sorted = [...xs].sort((a, b) => a - b);
      expect(out.min[d]).toBe(sorted[0]);
      expect(out.max[d]).toBe(sorted[sorted.length - 1]);
      const bound = (4 * (sorted[sorted.length - 1]! - sorted[0]!)) / bins;
      for (const [key, p] of [
        ["q01", 0.01],
        ["q10", 0.1],
        ["q50", 0.5],
        ["q90", 0.9],
        ["q99", 0.99],
      ] as const) {
        // the histogram rank p*n and numpy's (n-1)p differ by < 1 sample: compare to the neighbours too
        const lo = exactQuantile(sorted, Math.max(0, p - 1 / xs.length));
        const hi = exactQuantile(sorted, Math.min(1, p + 1 / xs.length));
        expect(out[key]![d]!).toBeGreaterThanOrEqual(lo - bound);
        expect(out[key]![d]!).toBeLessThanOrEqual(hi + bound);
      }
    }
  });

  it("handles a constant column and a single row", () => {
    const c = computeStats([5, 5, 5, 5], 1);
    expect(c).toMatchObject({ min: [5], max: [5], mean: [5], std: [0], count: 4, q01: [5], q99: [5] });
    const one = computeStats([1, 2], 2);
    expect(one).toMatchObject({ mean: [1, 2], std: [0, 0], q50: [1, 2], count: 1 });
  });

  it("rejects NaN naming row and dim, without changing the stats", () => {
    const s = new RunningStats(2, { what: "action" });
    s.update([1, 2]);
    expect(() => s.update([3, 4, 5, NaN])).toThrow(/action: non-finite value NaN at row 1 dim 1/);
    expect(s.count).toBe(1);
    expect(() => new RunningStats(2, { bins: 1000 })).toThrow(/power of two/);
  });
});

describe("aggregateFeatureStats", () => {
  it("equals the stats of the union for mean/std/min/max (LeRobot's pooled formula)", () => {
    const rng = new Rng(3);
    const parts = [40, 1, 77].map((n) => Float64Array.from({ length: n * 2 }, () => rng.normal() * 3 + 1));
    const whole = computeStats(Float64Array.from(parts.flatMap((p) => Array.from(p))), 2);
    const agg = aggregateFeatureStats(parts.map((p) => computeStats(p, 2)));
    expect(agg.count).toBe(whole.count);
    expect(agg.min).toEqual(whole.min);
    expect(agg.max).toEqual(whole.max);
    for (let d = 0; d < 2; d++) {
      expect(agg.mean[d]).toBeCloseTo(whole.mean[d]!, 12);
      expect(agg.std[d]).toBeCloseTo(whole.std[d]!, 12);
    }
    expect(agg.q50).toHaveLength(2); // count-weighted mean of the parts' quantiles
    expect(() => aggregateFeatureStats([])).toThrow(/no parts/);
  });
});

describe("datasetStats", () => {
  it("streams the columns of every (or the chosen) episode of any episode dataset", async () => {
    const { inMemoryDataset } = await import("../../../datasets/memory.ts");
    const { datasetStats } = await import("../../../datasets/stats/dataset.ts");
    const ds = inMemoryDataset({ a: [2] }, [
      { columns: { a: Float32Array.of(1, 10, 3, 30) } },
      { columns: { a: Float32Array.of(5, 50) } },
    ]);
    const all = await datasetStats(ds, ["a"]);
    expect(all.a).toMatchObject({ min: [1, 10], max: [5, 50], mean: [3, 30], count: 3 });
    const one = await datasetStats(ds, ["a"], { episodes: [1] });
    expect(one.a).toMatchObject({ mean: [5, 50], count: 1 });
    const bad = inMemoryDataset({ a: [1] }, [{ columns: { a: Float32Array.of(1, NaN) } }]);
    await expect(datasetStats(bad, ["a"])).rejects.toThrow(
      /episode 0: column 'a': non-finite value NaN at row 1 dim 0/,
    );
    await expect(datasetStats(ds, ["b"])).rejects.toThrow(/no column 'b'/);
  });
});
