/**
 * The loss settings as strategies build them: `pathFromConfig` beside `timeSamplerFromConfig`, and
 * each objective's evaluation inputs (what offline evaluation measures on a velocity graph), checked
 * against the path's closed form and the order of the random draws.
 */
import { describe, expect, it } from "vitest";
import {
  DEFAULT_LOSS_SETTINGS,
  LossSettingsSchema,
  objectiveOf,
  prepareContext,
} from "../../../policy/flow/objective.ts";
import { pathFromConfig } from "../../../policy/flow/path.ts";
import { timeSamplerFromConfig } from "../../../policy/flow/time.ts";
import { Rng } from "../../../policy/random.ts";

const H = 3;
const A = 2;
const config = { horizon: H, actionDim: A, rtcMaxDelay: 2 };
const actions = Float32Array.from({ length: 2 * H * A }, (_, i) => 0.1 * i - 0.4);
const batch = { size: 2, actions, isPad: new Uint8Array(2 * H) };
const loss = {
  timeSampler: { kind: "logit_normal", m: 0.3, s: 0.8 },
  path: { kind: "sigma_min", sigmaMin: 0.1 },
} as const;

describe("pathFromConfig", () => {
  it("builds the path a config names, and refuses an unknown kind", () => {
    expect(pathFromConfig({ kind: "linear" }).name).toBe("linear");
    const sm = pathFromConfig({ kind: "sigma_min", sigmaMin: 0.25 });
    expect([sm.name, sm.alpha(0.5), sm.sigma(0.5), sm.dSigma(0.5)]).toEqual(["sigma_min(0.25)", 0.5, 0.625, -0.75]);
    expect(() => pathFromConfig({ kind: "curved" } as never)).toThrow(
      'path config: unknown kind "curved"; valid kinds: linear, sigma_min',
    );
    expect(() => pathFromConfig({ kind: "sigma_min", sigmaMin: 1 })).toThrow("sigmaMin must be in [0, 1), got 1");
  });

  it("the loss settings' schema names a bad field; the defaults are the trainer's", () => {
    expect(DEFAULT_LOSS_SETTINGS).toEqual({ timeSampler: { kind: "pi0" }, path: { kind: "linear" } });
    expect(LossSettingsSchema.safeParse(loss).success).toBe(true);
    const bad = LossSettingsSchema.safeParse({ ...loss, path: { kind: "sigma_min", sigmaMin: -1 } });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.path).toEqual(["path", "sigmaMin"]);
  });
});

describe("Objective.evaluationInputs", () => {
  it("flow: per sample t from the sampler, then the noise; x_t and u_t on the path; t per token; no prefix", () => {
    const ctx = prepareContext(config, loss);
    const x = objectiveOf({ objective: "flow" }).evaluationInputs(batch, ctx, new Rng(4));
    // the same draws by hand: the batch's times, then its noise
    const rng = new Rng(4);
    const sampler = timeSamplerFromConfig(loss.timeSampler);
    const t = [sampler.sample(rng), sampler.sample(rng)].map(Math.fround);
    const x0 = rng.normalArray(2 * H * A);
    expect(Array.from(x.t)).toEqual([t[0], t[0], t[0], t[1], t[1], t[1]]);
    for (let i = 0; i < x0.length; i++) {
      const ti = t[Math.floor(i / (H * A))]!;
      expect(x.xt[i]).toBeCloseTo(ti * actions[i]! + (1 - 0.9 * ti) * x0[i]!, 6);
      expect(x.target[i]).toBeCloseTo(actions[i]! - 0.9 * x0[i]!, 6);
    }
    expect(x.isPad.every((v) => v === 0)).toBe(true); // rtcMaxDelay 2 is not read: nothing is a prefix
    expect(x.interval).toBeUndefined();
  });

  it("meanflow: the flow-matching inputs of its instantaneous velocity (the same draws as flow, no interval)", () => {
    const ctx = prepareContext({ ...config, rtcMaxDelay: 0 }, loss);
    const flow = objectiveOf({ objective: "flow" }).evaluationInputs(batch, ctx, new Rng(9));
    const mean = objectiveOf({ objective: "meanflow" }).evaluationInputs(batch, ctx, new Rng(9));
    expect(mean).toEqual(flow);
    // unlike its training inputs, which draw an interval per sample
    const train = objectiveOf({ objective: "meanflow" }).prepare(batch, ctx, new Rng(9));
    expect(train.interval).toBeDefined();
    expect(Array.from(train.xt)).not.toEqual(Array.from(flow.xt));
  });

  it("regression: the head at x = 0, t = 1 regressed onto the chunk, whatever the rng", () => {
    const ctx = prepareContext(config);
    const x = objectiveOf({ objective: "regression" }).evaluationInputs(batch, ctx, new Rng(1));
    expect(Array.from(x.t)).toEqual(new Array<number>(2 * H).fill(1));
    expect(x.xt.every((v) => v === 0)).toBe(true);
    expect(Array.from(x.target)).toEqual(Array.from(actions));
    expect(objectiveOf({ objective: "regression" }).evaluationInputs(batch, ctx, new Rng(2))).toEqual(x);
  });

  it("refuses a batch whose actions do not fill size x horizon x actionDim", () => {
    const ctx = prepareContext(config);
    expect(() =>
      objectiveOf({ objective: "flow" }).evaluationInputs({ ...batch, actions: actions.subarray(1) }, ctx, new Rng(1)),
    ).toThrow("batch.actions has 11 values, expected 2 x 3 x 2 = 12");
  });
});
