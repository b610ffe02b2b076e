import { describe, expect, it } from "vitest";
import { Rng } from "../../policy/random.ts";

describe("Rng", () => {
  it("repeats for the same seed and differs across seeds", () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const xa = Array.from({ length: 100 }, () => a.uniform());
    const xb = Array.from({ length: 100 }, () => b.uniform());
    const xc = Array.from({ length: 100 }, () => c.uniform());
    expect(xa).toEqual(xb);
    expect(xa).not.toEqual(xc);
  });

  it("draws uniform, normal, gamma and beta with the right moments", () => {
    const r = new Rng(7);
    const n = 50_000;
    const mean = (f: () => number): [number, number] => {
      let s = 0;
      let s2 = 0;
      for (let i = 0; i < n; i++) {
        const x = f();
        s += x;
        s2 += x * x;
      }
      return [s / n, s2 / n - (s / n) ** 2];
    };
    const [mu, vu] = mean(() => r.uniform());
    expect(mu).toBeCloseTo(0.5, 2);
    expect(vu).toBeCloseTo(1 / 12, 2);
    const [mn, vn] = mean(() => r.normal());
    expect(Math.abs(mn)).toBeLessThan(0.02);
    expect(vn).toBeCloseTo(1, 1);
    const [mg, vg] = mean(() => r.gamma(2.5));
    expect(mg).toBeCloseTo(2.5, 1);
    expect(vg).toBeCloseTo(2.5, 0);
    const [mb] = mean(() => r.beta(1.5, 1));
    expect(mb).toBeCloseTo(0.6, 2);
  });

  it("shuffles to a permutation and rejects bad arguments", () => {
    const r = new Rng(1);
    const xs = r.shuffle([...Array(20).keys()]);
    expect([...xs].sort((p, q) => p - q)).toEqual([...Array(20).keys()]);
    expect(() => r.int(0)).toThrow(/positive integer/);
    expect(() => new Rng(Number.NaN)).toThrow(/finite/);
    expect(() => r.gamma(-1)).toThrow(/shape > 0/);
  });
});
