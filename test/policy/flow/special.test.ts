import { describe, expect, it } from "vitest";
import {
  lnGamma,
  normalCdf,
  regularizedBeta,
  regularizedGammaP,
  regularizedGammaQ,
} from "../../../policy/flow/special.ts";

/** Relative closeness for values that may be tiny (tail probabilities). */
function expectRel(actual: number, expected: number, rel = 1e-12): void {
  expect(Math.abs(actual - expected)).toBeLessThanOrEqual(rel * Math.abs(expected) + 1e-300);
}

// Reference values from scipy 1.17 (math.lgamma, scipy.special.betainc/gammainc/gammaincc, scipy.stats.norm.cdf).
describe("special functions", () => {
  it("lnGamma matches factorials, Gamma(1/2) = sqrt(pi) and scipy", () => {
    expect(lnGamma(1)).toBeCloseTo(0, 14);
    expectRel(lnGamma(10), Math.log(362880));
    expectRel(lnGamma(0.5), 0.5 * Math.log(Math.PI));
    expectRel(lnGamma(1.5), Math.log(Math.sqrt(Math.PI) / 2));
    expectRel(lnGamma(0.1), 2.2527126517342055);
    expectRel(lnGamma(3.7), 1.4280723266653883);
    expectRel(lnGamma(100.5), 361.4355404677776);
    expect(() => lnGamma(0)).toThrow(/x > 0/);
  });

  it("regularizedBeta matches closed forms and scipy.special.betainc", () => {
    expectRel(regularizedBeta(0.5, 2, 3), 11 / 16); // 6x^2 - 8x^3 + 3x^4
    expectRel(regularizedBeta(0.64, 1.5, 1), 0.512); // x^1.5
    expectRel(regularizedBeta(0.2, 0.5, 0.5), (2 / Math.PI) * Math.asin(Math.sqrt(0.2))); // arcsine law
    expectRel(regularizedBeta(0.3, 2.5, 0.7), 0.029814024845250465, 1e-11);
    expectRel(regularizedBeta(0.9, 30, 2), 0.1695646331008649, 1e-11);
    expect(regularizedBeta(0, 2, 3)).toBe(0);
    expect(regularizedBeta(1, 2, 3)).toBe(1);
    expect(regularizedBeta(-1, 2, 3)).toBe(0);
    // Symmetry I_x(a, b) = 1 - I_{1-x}(b, a), across the continued-fraction switch point.
    for (const x of [0.05, 0.3, 0.5, 0.7, 0.95]) {
      expect(regularizedBeta(x, 2.3, 4.1)).toBeCloseTo(1 - regularizedBeta(1 - x, 4.1, 2.3), 14);
    }
    expect(() => regularizedBeta(0.5, 0, 1)).toThrow(/a > 0/);
  });

  it("incomplete gamma and normal CDF match scipy, tails included", () => {
    expectRel(regularizedGammaP(3, 2.5), 0.45618688411667035);
    expectRel(regularizedGammaP(4.2, 1.1), 0.0191459568798521, 1e-11);
    expectRel(regularizedGammaQ(0.5, 30), 9.485737571073857e-15, 1e-10);
    expectRel(normalCdf(1.96), 0.9750021048517795);
    expectRel(normalCdf(1), 0.8413447460685429);
    expectRel(normalCdf(-0.3), 0.3820885778110474);
    expectRel(normalCdf(-5), 2.866515718791933e-7, 1e-11);
    expect(normalCdf(0)).toBe(0.5);
    expect(normalCdf(Infinity)).toBe(1);
    expect(normalCdf(-Infinity)).toBe(0);
  });
});
