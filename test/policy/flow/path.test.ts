import { describe, expect, it } from "vitest";
import { linearPath, samplePath, sigmaMinPath } from "../../../policy/flow/path.ts";
import type { ProbPath } from "../../../policy/flow/path.ts";
import { Rng } from "../../../policy/random.ts";

function randomRows(rng: Rng, n: number, dim: number): { x0: Float64Array; x1: Float64Array; t: Float64Array } {
  const x0 = new Float64Array(n * dim);
  const x1 = new Float64Array(n * dim);
  const t = new Float64Array(n);
  for (let i = 0; i < n * dim; i++) {
    x0[i] = rng.normal();
    x1[i] = 3 * rng.uniform() - 1;
  }
  for (let i = 0; i < n; i++) t[i] = rng.uniform();
  return { x0, x1, t };
}

describe("probability paths", () => {
  it("linear path: x_t = t x1 + (1 - t) x0 and u = x1 - x0, one time per row", () => {
    const dim = 3;
    const { x0, x1, t } = randomRows(new Rng(1), 7, dim);
    const { xt, ut } = samplePath(linearPath(), x0, x1, t, { dim });
    expect(xt).toBeInstanceOf(Float64Array);
    for (let j = 0; j < x0.length; j++) {
      const ti = t[Math.floor(j / dim)]!;
      expect(xt[j]).toBeCloseTo(ti * x1[j]! + (1 - ti) * x0[j]!, 14);
      expect(ut[j]).toBeCloseTo(x1[j]! - x0[j]!, 14);
    }
  });

  it("sigma_min path: x_t = t x1 + (1 - (1 - s) t) x0, u = x1 - (1 - s) x0; s = 0 is linear", () => {
    const s = 0.01;
    const dim = 2;
    const { x0, x1, t } = randomRows(new Rng(2), 5, dim);
    const { xt, ut } = samplePath(sigmaMinPath(s), x0, x1, t, { dim });
    for (let j = 0; j < x0.length; j++) {
      const ti = t[Math.floor(j / dim)]!;
      expect(xt[j]).toBeCloseTo(ti * x1[j]! + (1 - (1 - s) * ti) * x0[j]!, 14);
      expect(ut[j]).toBeCloseTo(x1[j]! - (1 - s) * x0[j]!, 14);
    }
    // Endpoints: pure noise at t = 0, data plus s * noise at t = 1.
    const ends = samplePath(sigmaMinPath(s), x0.subarray(0, 4), x1.subarray(0, 4), [0, 1], { dim });
    expect(Array.from(ends.xt.subarray(0, 2))).toEqual(Array.from(x0.subarray(0, 2)));
    expect(ends.xt[2]).toBeCloseTo(x1[2]! + s * x0[2]!, 14);
    const zero = sigmaMinPath(0);
    const lin = linearPath();
    for (const tt of [0, 0.3, 1]) expect([zero.alpha(tt), zero.sigma(tt)]).toEqual([lin.alpha(tt), lin.sigma(tt)]);
    expect(() => sigmaMinPath(1)).toThrow(/\[0, 1\)/);
  });

  it("u_t is the time derivative of x_t (central finite differences)", () => {
    const paths: ProbPath[] = [linearPath(), sigmaMinPath(0.05)];
    const { x0, x1 } = randomRows(new Rng(3), 1, 4);
    const h = 1e-5;
    for (const path of paths) {
      for (const tt of [0.1, 0.5, 0.9]) {
        const plus = samplePath(path, x0, x1, [tt + h], { dim: 4 }).xt;
        const minus = samplePath(path, x0, x1, [tt - h], { dim: 4 }).xt;
        const { ut } = samplePath(path, x0, x1, [tt], { dim: 4 });
        for (let j = 0; j < 4; j++) expect((plus[j]! - minus[j]!) / (2 * h)).toBeCloseTo(ut[j]!, 8);
      }
    }
  });

  it("keeps the float32 type and names bad inputs", () => {
    const x0 = new Float32Array([1, 2, 3, 4]);
    const x1 = new Float32Array([5, 6, 7, 8]);
    const { xt, ut } = samplePath(linearPath(), x0, x1, new Float32Array([0.25, 0.5]), { dim: 2 });
    expect(xt).toBeInstanceOf(Float32Array);
    expect(Array.from(xt)).toEqual([2, 3, 5, 6]);
    expect(Array.from(ut)).toEqual([4, 4, 4, 4]);
    expect(() => samplePath(linearPath(), x0, x1, [0.5], { dim: 2 })).toThrow(/x0 has length 4, expected/);
    expect(() => samplePath(linearPath(), x0, x1.subarray(0, 2), [0.5, 0.5], { dim: 2 })).toThrow(/x1 has length 2/);
    expect(() => samplePath(linearPath(), x0, x1, [0.5, NaN], { dim: 2 })).toThrow(/t\[1\]/);
    expect(() => samplePath(linearPath(), x0, x1, [0.5, 0.5], { dim: 0 })).toThrow(/dim/);
  });
});
