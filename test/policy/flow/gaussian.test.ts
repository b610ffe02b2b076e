/**
 * The closed-form marginal velocity field of the linear path between N(0, 1) noise and N(mu, sigma^2) data.
 *
 * x_t = t x1 + (1 - t) x0 is Gaussian with mean t mu and variance s(t)^2 = t^2 sigma^2 + (1 - t)^2;
 * (u, x_t) with u = x1 - x0 are jointly Gaussian, so
 *   v(x, t) = E[u | x_t = x] = mu + Cov(u, x_t) / Var(x_t) (x - t mu),  Cov(u, x_t) = t sigma^2 - (1 - t).
 * Its flow is x(t) = t mu + s(t) x0 (since s'(t) = Cov / s), which maps x0 to mu + sigma x0 at t = 1.
 */
import { describe, expect, it } from "vitest";
import { linearPath, samplePath } from "../../../policy/flow/path.ts";
import { float64Space, integrate, solverByName, uniformGrid } from "../../../policy/flow/solvers.ts";
import { Rng } from "../../../policy/random.ts";

const MU = 2;
const SIGMA = 0.5;

function variance(t: number): number {
  return t * t * SIGMA * SIGMA + (1 - t) * (1 - t);
}

function velocity(x: number, t: number): number {
  return MU + ((t * SIGMA * SIGMA - (1 - t)) / variance(t)) * (x - t * MU);
}

const field = (x: Float64Array, t: number): Float64Array => x.map((v) => velocity(v, t));

function meanStd(xs: ArrayLike<number>): { mean: number; std: number } {
  let mean = 0;
  for (let i = 0; i < xs.length; i++) mean += xs[i]!;
  mean /= xs.length;
  let sq = 0;
  for (let i = 0; i < xs.length; i++) sq += (xs[i]! - mean) ** 2;
  return { mean, std: Math.sqrt(sq / (xs.length - 1)) };
}

describe("Gaussian-to-Gaussian flow in closed form", () => {
  it("the closed-form field is E[u | x_t = x] (Monte Carlo over samplePath pairs)", () => {
    const rng = new Rng(11);
    const n = 200_000;
    const x0 = rng.normalArray(n);
    const x1 = new Float32Array(n);
    for (let i = 0; i < n; i++) x1[i] = MU + SIGMA * rng.normal();
    for (const t of [0.3, 0.7]) {
      const { xt, ut } = samplePath(
        linearPath(),
        Float64Array.from(x0),
        Float64Array.from(x1),
        new Float64Array(n).fill(t),
        { dim: 1 },
      );
      for (const x of [t * MU - 0.5, t * MU, t * MU + 0.8]) {
        // Average u over pairs whose x_t falls in a small window; the field is affine in x, so
        // comparing at the window's mean x_t removes the window bias.
        let sumX = 0;
        let sumU = 0;
        let count = 0;
        for (let i = 0; i < n; i++) {
          if (Math.abs(xt[i]! - x) < 0.05) {
            sumX += xt[i]!;
            sumU += ut[i]!;
            count++;
          }
        }
        expect(count).toBeGreaterThan(2000);
        // Conditional sd of u is < 1, so the standard error is < 0.02.
        expect(Math.abs(sumU / count - velocity(sumX / count, t))).toBeLessThan(0.06);
      }
    }
  });

  it("integrating the field with RK4 is exact: x0 -> t mu + s(t) x0", () => {
    const x0 = new Float64Array([-2.5, -0.4, 0, 0.9, 3.1]);
    const rk4 = solverByName("rk4");
    const at1 = integrate(rk4, float64Space, field, x0, uniformGrid(20)).x;
    for (let i = 0; i < x0.length; i++) expect(Math.abs(at1[i]! - (MU + SIGMA * x0[i]!))).toBeLessThan(1e-6);
    const mid = integrate(rk4, float64Space, field, x0, uniformGrid(20, 0, 0.6)).x;
    for (let i = 0; i < x0.length; i++)
      expect(Math.abs(mid[i]! - (0.6 * MU + Math.sqrt(variance(0.6)) * x0[i]!))).toBeLessThan(1e-6);
  });

  it("transports N(0, 1) samples to N(mu, sigma^2)", () => {
    const n = 20_000;
    const x0 = Float64Array.from(new Rng(12).normalArray(n));
    const pushed = integrate(solverByName("rk4"), float64Space, field, x0, uniformGrid(10)).x;
    const { mean, std } = meanStd(pushed);
    const start = meanStd(x0);
    // Sampling error of the noise itself (sd/sqrt(n) ~ 0.007 for the mean), carried through the exact map.
    expect(Math.abs(mean - MU)).toBeLessThan((4 * SIGMA) / Math.sqrt(n) + 1e-4);
    expect(Math.abs(mean - (MU + SIGMA * start.mean))).toBeLessThan(1e-4);
    expect(Math.abs(std - SIGMA)).toBeLessThan(0.01);
    expect(Math.abs(std - SIGMA * start.std)).toBeLessThan(1e-4);
  });
});
