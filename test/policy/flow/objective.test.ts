/**
 * The objective strategies: MeanFlow's training draws and its loss target against closed forms, and
 * the samplers' step rules on a fake network.
 */
import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import {
  MEANFLOW_INTERVAL_SHARE,
  meanflowObjective,
  objectiveOf,
  type TargetOps,
} from "../../../policy/flow/objective.ts";
import { linearPath } from "../../../policy/flow/path.ts";
import { euler, float64Space } from "../../../policy/flow/solvers.ts";
import { uniformTime } from "../../../policy/flow/time.ts";
import { Rng } from "../../../policy/random.ts";
import { jvp } from "../../../training/meanflow/jvp.ts";

beforeAll(async () => {
  await tf.setBackend("cpu");
  await tf.ready();
});

const ops: TargetOps<tf.Tensor> = {
  add: (a, b) => tf.add(a, b),
  sub: (a, b) => tf.sub(a, b),
  mul: (a, b) => tf.mul(a, b),
  scale: (a, s) => tf.mul(a, s),
  reshape: (x, s) => tf.reshape(x, s),
  constant: (v, s) => tf.tensor(v, s),
  sumAxes: (x, axes) => tf.sum(x, axes, true),
  div: (a, b) => tf.div(a, b),
};

describe("meanflow objective", () => {
  it("prepare: about half the samples get r > t (half of those r = 1), with t + interval <= 1; the rest r = t", () => {
    const H = 2;
    const A = 3;
    const size = 2000;
    const batch = { size, actions: new Rng(1).normalArray(size * H * A), isPad: new Uint8Array(size * H) };
    const ctx = {
      config: { horizon: H, actionDim: A, rtcMaxDelay: 0 },
      path: linearPath(),
      timeSampler: uniformTime(),
    };
    const x = meanflowObjective.prepare(batch, ctx, new Rng(2));
    expect(x.t).toHaveLength(size);
    let stepped = 0;
    let toData = 0;
    for (let b = 0; b < size; b++) {
      const h = x.interval![b]!;
      expect(h).toBeGreaterThanOrEqual(0);
      expect(x.t[b]! + h).toBeLessThanOrEqual(1 + 1e-6);
      if (h > 0) stepped++;
      if (h > 0 && Math.abs(x.t[b]! + h - 1) < 1e-6) toData++;
    }
    expect(Math.abs(stepped / size - MEANFLOW_INTERVAL_SHARE)).toBeLessThan(0.05);
    expect(Math.abs(toData / stepped - 0.5)).toBeLessThan(0.06);
    // The target is the conditional velocity v = x1 - x0 of the linear path at x_t.
    const x0 = (b: number, i: number): number =>
      (x.xt[b * H * A + i]! - x.t[b]! * batch.actions[b * H * A + i]!) / (1 - x.t[b]!);
    expect(x.target[4]!).toBeCloseTo(batch.actions[4]! - x0(0, 4), 4);
  });

  it("lossTarget: v + (r - t) (v du/dz + du/dt) with the interval moving by -1, exactly, for u = z t + h^2", () => {
    const B = 3;
    const H = 2;
    const A = 1;
    const rng = new Rng(4);
    const z = tf.tensor(rng.normalArray(B * H * A), [B, H, A]);
    const v = tf.tensor(rng.normalArray(B * H * A), [B, H, A]);
    const t = tf.tensor(Float32Array.of(0.1, 0.5, 0.8), [B, 1]);
    const h = tf.tensor(Float32Array.of(0.6, 0, 0.2), [B, 1]);
    const keep = tf.ones([B, H, 1]);
    const u = (zz: tf.Tensor, tt: tf.Tensor, hh: tf.Tensor): tf.Tensor =>
      tf.add(tf.mul(zz, tf.reshape(tt, [B, 1, 1])), tf.reshape(tf.square(hh), [B, 1, 1]));
    const r = meanflowObjective.lossTarget(
      ops,
      { xt: z, t, interval: h, target: v, keep, timeTokens: 1, horizon: H, actionDim: A },
      (tan) => jvp(u, [z, t, h], [tan.xt, tan.t, tan.interval]),
    );
    // du/dt along (v, 1, -1) = v t + z - 2 h.
    const T = tf.reshape(t, [B, 1, 1]);
    const Hh = tf.reshape(h, [B, 1, 1]);
    const want = tf.add(v, tf.mul(Hh, tf.sub(tf.add(tf.mul(v, T), z), tf.mul(Hh, 2))));
    const got = r.target.dataSync();
    want.dataSync().forEach((w, i) => expect(got[i]!).toBeCloseTo(w, 5));
    // Weights: 1 / (mean (u - target)^2 + 1e-3) per sample.
    const d = tf.sub(u(z, t, h), r.target);
    const mean = tf.mean(tf.square(d), [1, 2]).dataSync();
    const w = r.weight!.dataSync();
    expect(r.weight!.shape).toEqual([B, 1, 1]);
    for (let b = 0; b < B; b++) expect(w[b]!).toBeCloseTo(1 / (mean[b]! + 1e-3), 1);
  });

  it("lossTarget: the true average velocity of a one-point data set is its own target (u = (x1 - z) / (1 - t))", () => {
    const B = 2;
    const H = 3;
    const A = 2;
    const rng = new Rng(5);
    const x1 = tf.tensor(rng.normalArray(B * H * A), [B, H, A]);
    const x0 = tf.tensor(rng.normalArray(B * H * A), [B, H, A]);
    const t = tf.tensor(Float32Array.of(0.2, 0.6), [B, 1]);
    const T = tf.reshape(t, [B, 1, 1]);
    const z = tf.add(tf.mul(x1, T), tf.mul(x0, tf.sub(1, T)));
    const v = tf.sub(x1, x0);
    const u = (zz: tf.Tensor, tt: tf.Tensor): tf.Tensor => tf.div(tf.sub(x1, zz), tf.sub(1, tf.reshape(tt, [B, 1, 1])));
    const r = meanflowObjective.lossTarget(
      ops,
      {
        xt: z,
        t,
        interval: tf.tensor(Float32Array.of(0.5, 0.3), [B, 1]),
        target: v,
        keep: tf.ones([B, H, 1]),
        timeTokens: 1,
        horizon: H,
        actionDim: A,
      },
      (tan) => jvp((zz, tt) => u(zz, tt), [z, t], [tan.xt, tan.t]),
    );
    const got = r.target.dataSync();
    v.dataSync().forEach((w, i) => expect(got[i]!).toBeCloseTo(w, 4));
  });
});

describe("samplers on a fake network", () => {
  const spec = (steps: number, calls: [number, number | undefined][]) => ({
    ops: undefined as never,
    space: float64Space,
    net: (x: Float64Array, t: number, h?: number): Float64Array => {
      calls.push([t, h]);
      return x.map(() => 1 + t + (h ?? 0));
    },
    noise: () => Float64Array.of(0.5),
    zeros: () => Float64Array.of(0),
    grid: Array.from({ length: steps + 1 }, (_, i) => i / steps),
    solver: euler,
  });

  it("meanflow: one jump z1 = z0 + u(z0, 0, 1); two jumps of 1/2 with (t, interval) = (0, 1/2), (1/2, 1/2)", () => {
    const calls: [number, number | undefined][] = [];
    expect(meanflowObjective.sample(spec(1, calls))).toEqual({ x: Float64Array.of(0.5 + 2), nfe: 1 });
    expect(calls).toEqual([[0, 1]]);
    calls.length = 0;
    const two = meanflowObjective.sample(spec(2, calls));
    expect(two.nfe).toBe(2);
    expect(two.x[0]).toBeCloseTo(0.5 + 0.5 * 1.5 + 0.5 * 2, 12);
    expect(calls).toEqual([
      [0, 0.5],
      [0.5, 0.5],
    ]);
  });

  it("flow integrates the velocity without an interval; regression evaluates once at x = 0, t = 1", () => {
    const calls: [number, number | undefined][] = [];
    const flow = objectiveOf({ objective: "flow" }).sample(spec(2, calls));
    expect(flow.x[0]).toBeCloseTo(0.5 + 0.5 * 1 + 0.5 * 1.5, 12);
    expect(calls.every(([, h]) => h === undefined)).toBe(true);
    calls.length = 0;
    const reg = objectiveOf({ objective: "regression" }).sample(spec(10, calls));
    expect(reg).toEqual({ x: Float64Array.of(2), nfe: 1 });
    expect(calls).toEqual([[1, undefined]]);
  });
});
