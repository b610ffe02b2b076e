/**
 * Time samplers for flow-matching training: the distribution of t in the loss E_t ||v(x_t, t) - u_t||^2.
 *
 * Our convention: t = 0 is noise, t = 1 is data. Every sampler carries its exact CDF so that tests
 * (and users comparing samplers) can check it; Beta CDFs use the regularized incomplete beta.
 */
import { z } from "zod";
import type { Rng } from "../random.ts";
import { normalCdf, regularizedBeta } from "./special.ts";

/**
 * The serialisable description of a time sampler (stored in training configs and checkpoints):
 * `uniform`; `logit_normal` t = sigmoid(m + s * N(0, 1)) (SD3's logit-normal; lognorm(0, 1) is their
 * best), s > 0; `beta` t ~ Beta(a, b), a, b > 0; `pi0`, openpi's pi0 sampler converted to our
 * convention: t = 1 - (0.999 * Beta(1.5, 1) + 0.001). Unknown keys are refused.
 */
export const TimeSamplerSchema = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("uniform") }),
  z.strictObject({ kind: z.literal("logit_normal"), m: z.number(), s: z.number().positive() }),
  z.strictObject({ kind: z.literal("beta"), a: z.number().positive(), b: z.number().positive() }),
  z.strictObject({ kind: z.literal("pi0") }),
]);
/** A time sampler's description (see {@link TimeSamplerSchema}). */
export type TimeSamplerConfig = z.infer<typeof TimeSamplerSchema>;

/** A distribution over t in [0, 1]. */
export interface TimeSampler {
  /** Short name for logs, e.g. `logit_normal(0,1)`. */
  readonly name: string;
  /** The config that recreates this sampler with `timeSamplerFromConfig`. */
  readonly config: TimeSamplerConfig;
  /** One draw of t; the only randomness used is `rng`. */
  sample(rng: Rng): number;
  /** P(T <= t), exact up to float64 rounding; 0 below the support, 1 above it. */
  cdf(t: number): number;
}

/** t ~ U(0, 1). */
export function uniformTime(): TimeSampler {
  return {
    name: "uniform",
    config: { kind: "uniform" },
    sample: (rng) => rng.uniform(),
    cdf: (t) => clamp01(t),
  };
}

/** t = sigmoid(m + s z), z ~ N(0, 1); CDF Phi((logit(t) - m) / s). Needs s > 0. */
export function logitNormalTime(m: number, s: number): TimeSampler {
  if (!Number.isFinite(m)) throw new RangeError(`logitNormalTime: m must be finite, got ${m}`);
  if (!(s > 0 && Number.isFinite(s)))
    throw new RangeError(`logitNormalTime: s must be a positive finite number, got ${s}`);
  return {
    name: `logit_normal(${m},${s})`,
    config: { kind: "logit_normal", m, s },
    sample: (rng) => 1 / (1 + Math.exp(-(m + s * rng.normal()))),
    cdf: (t) => {
      if (Number.isNaN(t)) return NaN;
      if (t <= 0) return 0;
      if (t >= 1) return 1;
      return normalCdf((Math.log(t) - Math.log1p(-t) - m) / s);
    },
  };
}

/** t ~ Beta(a, b); CDF I_t(a, b). Needs a > 0, b > 0. */
export function betaTime(a: number, b: number): TimeSampler {
  checkBetaParams("betaTime", a, b);
  return {
    name: `beta(${a},${b})`,
    config: { kind: "beta", a, b },
    sample: (rng) => rng.beta(a, b),
    cdf: (t) => regularizedBeta(t, a, b),
  };
}

const PI0_A = 1.5;
const PI0_B = 1;
const PI0_SCALE = 0.999;
const PI0_OFFSET = 0.001;

/**
 * openpi's pi0 time sampler in our convention. openpi draws tau = 0.999 * Beta(1.5, 1) + 0.001 with
 * tau = 1 noise; here t = 1 - tau, so t lies in [0, 0.999] with more weight near t = 0 (noisy end),
 * E[t] = 0.3996. CDF: P(t_ours <= t) = 1 - I_{(0.999 - t) / 0.999}(1.5, 1).
 */
export function pi0Time(): TimeSampler {
  return {
    name: "pi0",
    config: { kind: "pi0" },
    sample: (rng) => 1 - (PI0_SCALE * rng.beta(PI0_A, PI0_B) + PI0_OFFSET),
    cdf: (t) => {
      if (Number.isNaN(t)) return NaN;
      // t_ours <= t  <=>  Beta >= (1 - offset - t) / scale.
      return 1 - regularizedBeta((1 - PI0_OFFSET - t) / PI0_SCALE, PI0_A, PI0_B);
    },
  };
}

/** Builds the sampler a config describes; throws naming the bad field for invalid parameters. */
export function timeSamplerFromConfig(config: TimeSamplerConfig): TimeSampler {
  switch (config.kind) {
    case "uniform":
      return uniformTime();
    case "logit_normal":
      return logitNormalTime(config.m, config.s);
    case "beta":
      return betaTime(config.a, config.b);
    case "pi0":
      return pi0Time();
    default: {
      const kind: unknown = (config as { kind?: unknown }).kind;
      throw new Error(
        `time sampler config: unknown kind ${JSON.stringify(kind)}; valid kinds: uniform, logit_normal, beta, pi0`,
      );
    }
  }
}

function checkBetaParams(where: string, a: number, b: number): void {
  if (!(a > 0 && Number.isFinite(a))) throw new RangeError(`${where}: a must be a positive finite number, got ${a}`);
  if (!(b > 0 && Number.isFinite(b))) throw new RangeError(`${where}: b must be a positive finite number, got ${b}`);
}

function clamp01(t: number): number {
  return t <= 0 ? 0 : t >= 1 ? 1 : t;
}
