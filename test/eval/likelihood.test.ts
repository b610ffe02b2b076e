import { describe, expect, it } from "vitest";
import { flowLogLikelihood } from "../../eval/likelihood.ts";
import type { VelocityField } from "../../eval/likelihood.ts";
import { Rng } from "../../policy/random.ts";

/** One component of an isotropic Gaussian mixture: weight, mean `[D]`, standard deviation. */
interface Component {
  weight: number;
  mean: Float64Array;
  std: number;
}

const LOG_2PI = Math.log(2 * Math.PI);

/** Exact log-density of the mixture at x (log-sum-exp over the components). */
function mixtureLogDensity(components: readonly Component[], x: Float64Array): number {
  const logs = components.map((k) => {
    let sq = 0;
    for (let j = 0; j < x.length; j++) sq += (x[j]! - k.mean[j]!) ** 2;
    return Math.log(k.weight) - (0.5 * sq) / (k.std * k.std) - x.length * (Math.log(k.std) + 0.5 * LOG_2PI);
  });
  const m = Math.max(...logs);
  return m + Math.log(logs.reduce((a, l) => a + Math.exp(l - m), 0));
}

/**
 * The exact marginal velocity of the linear path x_t = t x1 + (1 - t) x0 (x0 ~ N(0, I)) towards the
 * mixture. Given component k, x_t ~ N(t mu_k, s_k^2 I) with s_k^2 = t^2 sigma_k^2 + (1 - t)^2 and
 * E[x1 - x0 | x_t, k] = mu_k + (t sigma_k^2 - (1 - t)) (x_t - t mu_k) / s_k^2; the marginal velocity
 * averages these with the components' posterior weights at x_t.
 */
function mixtureVelocity(components: readonly Component[]): VelocityField {
  return (xs, t) =>
    xs.map((x) => {
      const D = x.length;
      const logw: number[] = [];
      const u: Float64Array[] = [];
      for (const k of components) {
        const s2 = t * t * k.std * k.std + (1 - t) * (1 - t);
        const gain = (t * k.std * k.std - (1 - t)) / s2;
        const uk = new Float64Array(D);
        let sq = 0;
        for (let j = 0; j < D; j++) {
          const r = x[j]! - t * k.mean[j]!;
          sq += r * r;
          uk[j] = k.mean[j]! + gain * r;
        }
        logw.push(Math.log(k.weight) - (0.5 * sq) / s2 - 0.5 * D * Math.log(s2));
        u.push(uk);
      }
      const m = Math.max(...logw);
      const w = logw.map((l) => Math.exp(l - m));
      const total = w.reduce((a, b) => a + b, 0);
      const v = new Float64Array(D);
      for (let k = 0; k < u.length; k++) for (let j = 0; j < D; j++) v[j] = v[j]! + (w[k]! / total) * u[k]![j]!;
      return v;
    });
}

/** A bimodal mixture in D dims (modes at +-1.5 along every axis, std 0.5) and a third, wider one. */
function mixture(D: number): Component[] {
  return [
    { weight: 0.45, mean: new Float64Array(D).fill(1.5), std: 0.5 },
    { weight: 0.35, mean: new Float64Array(D).fill(-1.5), std: 0.5 },
    { weight: 0.2, mean: Float64Array.from({ length: D }, (_, j) => (j % 2 ? 1 : -1)), std: 0.8 },
  ];
}

/** Draws n points from the mixture. */
function draw(components: readonly Component[], n: number, rng: Rng): Float64Array[] {
  return Array.from({ length: n }, () => {
    let u = rng.uniform();
    let k = components[components.length - 1]!;
    for (const c of components) {
      if (u < c.weight) {
        k = c;
        break;
      }
      u -= c.weight;
    }
    return Float64Array.from(k.mean, (m) => m + k.std * rng.normal());
  });
}

describe("flowLogLikelihood (CNF change of variables)", () => {
  it("recovers the exact log-density of a Gaussian mixture with the exact trace (D = 3)", async () => {
    const comps = mixture(3);
    const v = mixtureVelocity(comps);
    for (const x of draw(comps, 6, new Rng(1))) {
      const r = await flowLogLikelihood(v, x, { trace: "auto" });
      expect(r.method).toBe("exact");
      expect(r.stdErr).toBe(0);
      const truth = mixtureLogDensity(comps, x);
      expect(Math.abs(r.perDim - truth / 3), `x=${Array.from(x)}: ${r.perDim} vs ${truth / 3}`).toBeLessThan(0.05);
    }
  });

  it("Hutchinson's estimator is within 0.05 nats/dim and within its standard error of the truth (D = 12)", async () => {
    const D = 12;
    const comps = mixture(D);
    const v = mixtureVelocity(comps);
    let totalErr = 0;
    for (const [i, x] of draw(comps, 4, new Rng(2)).entries()) {
      const r = await flowLogLikelihood(v, x, { trace: "auto", exactMaxDim: 8, probes: 24, seed: 10 + i });
      expect(r.method).toBe("hutchinson");
      const truth = mixtureLogDensity(comps, x);
      expect(Math.abs(r.perDim - truth / D), `point ${i}`).toBeLessThan(0.05);
      expect(r.stdErr).toBeGreaterThan(0);
      expect(Math.abs(r.logLikelihood - truth), `point ${i}: se ${r.stdErr}`).toBeLessThan(4 * r.stdErr + 0.05 * D);
      totalErr += Math.abs(r.perDim - truth / D);
    }
    expect(totalErr / 4).toBeLessThan(0.03);
  });

  it("the exact and the Hutchinson divergence agree on the same point, and a wrong field is caught", async () => {
    const comps = mixture(4);
    const x = draw(comps, 1, new Rng(3))[0]!;
    const exact = await flowLogLikelihood(mixtureVelocity(comps), x, { trace: "exact" });
    const hutch = await flowLogLikelihood(mixtureVelocity(comps), x, { trace: "hutchinson", probes: 64 });
    expect(Math.abs(exact.logLikelihood - hutch.logLikelihood)).toBeLessThan(4 * hutch.stdErr + 1e-3);
    // The field of another mixture gives that mixture's density: the estimator is not blind to the field.
    const other = mixture(4).map((k) => ({ ...k, std: k.std * 2 }));
    const wrong = await flowLogLikelihood(mixtureVelocity(other), x, { trace: "exact" });
    expect(Math.abs(wrong.perDim - mixtureLogDensity(other, x) / 4)).toBeLessThan(0.05);
    expect(Math.abs(wrong.perDim - exact.perDim)).toBeGreaterThan(0.1);
    await expect(flowLogLikelihood((xs) => xs.map(() => new Float64Array(4).fill(NaN)), x)).rejects.toThrow(
      /velocity field is not finite \(NaN\) at t=1, dim 0/,
    );
  });
});
