import { describe, expect, it } from "vitest";
import { betaTime, logitNormalTime, pi0Time, timeSamplerFromConfig, uniformTime } from "../../../policy/flow/time.ts";
import type { TimeSampler, TimeSamplerConfig } from "../../../policy/flow/time.ts";
import { Rng } from "../../../policy/random.ts";

const N = 20_000;

/** Kolmogorov-Smirnov statistic sup |F_n - F| of `samples` against `cdf`. */
function ksStatistic(samples: number[], cdf: (t: number) => number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const n = sorted.length;
  let d = 0;
  for (let i = 0; i < n; i++) {
    const f = cdf(sorted[i]!);
    d = Math.max(d, (i + 1) / n - f, f - i / n);
  }
  return d;
}

function draw(sampler: TimeSampler, seed: number, n = N): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => sampler.sample(rng));
}

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

describe("time samplers", () => {
  const configs: TimeSamplerConfig[] = [
    { kind: "uniform" },
    { kind: "logit_normal", m: 0, s: 1 },
    { kind: "logit_normal", m: 0.5, s: 1.2 },
    { kind: "beta", a: 2, b: 5 },
    { kind: "beta", a: 0.7, b: 0.9 },
    { kind: "pi0" },
  ];

  for (const [i, config] of configs.entries()) {
    it(`${JSON.stringify(config)}: 20000 seeded samples agree with the CDF (KS < 0.015)`, () => {
      const sampler = timeSamplerFromConfig(config);
      expect(sampler.config).toEqual(config);
      const samples = draw(sampler, 100 + i);
      for (const t of samples) expect(t >= 0 && t <= 1).toBe(true);
      expect(ksStatistic(samples, (t) => sampler.cdf(t))).toBeLessThan(0.015);
      // Same seed, same draws.
      expect(draw(sampler, 100 + i, 5)).toEqual(samples.slice(0, 5));
    });
  }

  it("CDFs at known points", () => {
    expect(uniformTime().cdf(0.3)).toBe(0.3);
    expect(uniformTime().cdf(-1)).toBe(0);
    expect(uniformTime().cdf(2)).toBe(1);

    const ln = logitNormalTime(0, 1);
    expect(ln.cdf(0.5)).toBeCloseTo(0.5, 15);
    expect(ln.cdf(sigmoid(1))).toBeCloseTo(0.8413447460685429, 14);
    expect(ln.cdf(sigmoid(-1.96))).toBeCloseTo(1 - 0.9750021048517795, 14);
    expect(logitNormalTime(0.5, 1.2).cdf(0.3)).toBeCloseTo(0.13077222178326242, 14); // scipy
    expect(ln.cdf(0)).toBe(0);
    expect(ln.cdf(1)).toBe(1);

    expect(betaTime(2, 3).cdf(0.5)).toBeCloseTo(11 / 16, 14);
    expect(betaTime(1, 1).cdf(0.42)).toBeCloseTo(0.42, 14);

    // pi0: t = 1 - (0.999 B + 0.001), B ~ Beta(1.5, 1) with CDF x^1.5.
    const pi0 = pi0Time();
    expect(pi0.cdf(0)).toBe(0);
    expect(pi0.cdf(-0.1)).toBe(0);
    expect(pi0.cdf(0.999)).toBe(1);
    expect(pi0.cdf(1)).toBe(1);
    for (const t of [0.1, 0.4, 0.8]) expect(pi0.cdf(t)).toBeCloseTo(1 - ((0.999 - t) / 0.999) ** 1.5, 14);
  });

  it("pi0 puts more weight on noisy times: mean 0.3996, support [0, 0.999]", () => {
    const samples = draw(pi0Time(), 7);
    const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
    // sd of t is 0.999 * sqrt(Var Beta(1.5, 1)) ~ 0.255, so the mean's standard error is ~0.0018.
    expect(Math.abs(mean - (1 - (0.999 * 0.6 + 0.001)))).toBeLessThan(0.008);
    expect(Math.max(...samples)).toBeLessThanOrEqual(0.999);
    // The unconverted openpi time (tau = 1 noise) is a different distribution: KS sees it at once.
    expect(ksStatistic(samples, (t) => betaTime(1.5, 1).cdf(t))).toBeGreaterThan(0.2);
  });

  it("rejects bad parameters and unknown kinds, naming them", () => {
    expect(() => logitNormalTime(0, 0)).toThrow(/s must be/);
    expect(() => betaTime(-1, 1)).toThrow(/a must be/);
    expect(() => timeSamplerFromConfig({ kind: "beta", a: 1, b: 0 })).toThrow(/b must be/);
    expect(() => timeSamplerFromConfig({ kind: "cosine" } as unknown as TimeSamplerConfig)).toThrow(
      /unknown kind "cosine"; valid kinds: uniform, logit_normal, beta, pi0/,
    );
  });
});
