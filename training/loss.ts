/**
 * The masked loss of a head on one batch (or one shard of it): its inputs, its denominator, the
 * objective's loss target and its tfjs evaluation. The trainer and the gradient workers both use it.
 */
import * as tf from "@tensorflow/tfjs";
import type { ActionHead } from "../policy/net/head.ts";
import { featureSize } from "../policy/net/head.ts";
import type { TfjsOps } from "../policy/net/tfjs-ops.ts";
import type { NetworkJvp, TargetOps } from "../policy/flow/objective.ts";
import { objectiveOf } from "../policy/flow/objective.ts";
import { jvp } from "./meanflow/jvp.ts";

/**
 * The network inputs of a batch (or of one shard of it) for the loss; flat, row-major, float32.
 * Observation features `[size, ...shape]`; `xt`, `target` `[size, horizon, actionDim]`; `t`
 * `[size, 1]` (one time per sample) or `[size, horizon]` (per-token: prefix training); `interval`
 * (average-velocity heads) shaped like `t`; `isPad` `[size, horizon]`, 1 where a step is left out of
 * the loss (past the episode end, or a clean prefix step); `weight` (optional) `[size]`, each
 * sample's weight in the loss.
 */
export interface LossInputs {
  size: number;
  obs: Record<string, Float32Array>;
  xt: Float32Array;
  t: Float32Array;
  interval?: Float32Array;
  target: Float32Array;
  isPad: Uint8Array;
  weight?: Float32Array;
}

/** Time tokens per sample of `x.t`: 1 (one time per sample) or `horizon` (per-token, prefix training). */
export function timeTokensOfInputs(x: Pick<LossInputs, "size" | "t">, horizon: number): number {
  const T = x.size === 0 ? 1 : x.t.length / x.size;
  if (T !== 1 && T !== horizon)
    throw new Error(`loss inputs: t has ${x.t.length} values for ${x.size} samples, expected 1 or ${horizon} each`);
  return T;
}

/** The masked-mean denominator of a batch: max(unpadded steps, 1) x actionDim. */
export function lossDenominator(isPad: Uint8Array, actionDim: number): number {
  let live = 0;
  for (let i = 0; i < isPad.length; i++) if (isPad[i] === 0) live++;
  return Math.max(live, 1) * actionDim;
}

/**
 * Masked squared error of `head` on `x`, summed over unpadded steps (times each sample's `weight`,
 * when given) and divided by `denominator` (a scalar tensor). With the batch's own `lossDenominator`
 * this is the masked mean; shards of one batch share the whole batch's denominator, so their losses
 * (and gradients) add up to the batch's.
 */
export function maskedLoss(head: ActionHead, ops: TfjsOps, x: LossInputs, denominator: number): tf.Scalar {
  const { horizon: H, actionDim: A } = head.config;
  const ctx = head.encode(ops, obsTensors(head, x));
  const T = timeTokensOfInputs(x, H);
  const interval = x.interval && tf.tensor(x.interval, [x.size, T]);
  const v = head.velocity(ops, ctx, tf.tensor(x.xt, [x.size, H, A]), tf.tensor(x.t, [x.size, T]), {
    timeTokens: T,
    ...(interval ? { interval } : {}),
  });
  const mask = tf.sub(tf.scalar(1), tf.tensor(Float32Array.from(x.isPad), [x.size, H, 1]));
  const keep = x.weight ? tf.mul(mask, tf.tensor(x.weight, [x.size, 1, 1])) : mask;
  const sq = tf.mul(tf.square(tf.sub(v, tf.tensor(x.target, [x.size, H, A]))), keep);
  return tf.div(tf.sum(sq), tf.scalar(denominator)) as tf.Scalar;
}

/** tfjs tensors as the primitives of `Objective.lossTarget`. */
const tfjsTargetOps: TargetOps<tf.Tensor> = {
  add: (a, b) => tf.add(a, b),
  sub: (a, b) => tf.sub(a, b),
  mul: (a, b) => tf.mul(a, b),
  scale: (a, s) => tf.mul(a, tf.scalar(s)),
  reshape: (x, shape) => tf.reshape(x, shape),
  constant: (values, shape) => tf.tensor(values, shape, "float32"),
  sumAxes: (x, axes) => tf.sum(x, axes, true),
  div: (a, b) => tf.div(a, b),
};

/**
 * `x` with its objective's loss target (and per-sample weights) computed under `ops`' current
 * weights, outside any gradient pass (so no gradient flows through them): for `meanflow` the
 * MeanFlow target v - (t - r) du/dt, the JVP by double backward (`training/meanflow/jvp.ts`). For
 * objectives with a fixed target `x` itself.
 */
export function withLossTarget(head: ActionHead, ops: TfjsOps, x: LossInputs): LossInputs {
  const objective = objectiveOf(head.config);
  if (!objective.targetNeedsJvp) return x;
  const { horizon: H, actionDim: A } = head.config;
  const T = timeTokensOfInputs(x, H);
  const out = tf.tidy(() => {
    const ctx = head.encode(ops, obsTensors(head, x));
    const xt = tf.tensor(x.xt, [x.size, H, A]);
    const t = tf.tensor(x.t, [x.size, T]);
    const interval = tf.tensor(x.interval ?? new Float32Array(x.t.length), [x.size, T]);
    const target = tf.tensor(x.target, [x.size, H, A]);
    const keep = tf.sub(tf.scalar(1), tf.tensor(Float32Array.from(x.isPad), [x.size, H, 1]));
    const f = (z: tf.Tensor, tt: tf.Tensor, h: tf.Tensor): tf.Tensor =>
      head.velocity(ops, ctx, z, tt, { timeTokens: T, interval: h });
    const net: NetworkJvp<tf.Tensor> = (tan) => jvp(f, [xt, t, interval], [tan.xt, tan.t, tan.interval]);
    const r = objective.lossTarget(
      tfjsTargetOps,
      { xt, t, interval, target, keep, timeTokens: T, horizon: H, actionDim: A },
      net,
    );
    return [r.target, r.weight ?? tf.onesLike(keep)];
  });
  try {
    return {
      ...x,
      target: (out[0]!.dataSync() as Float32Array).slice(),
      weight: (out[1]!.dataSync() as Float32Array).slice(0, x.size),
    };
  } finally {
    tf.dispose(out);
  }
}

/** The observation features of `x` as tensors `[size, ...shape]`, checked against the head's config. */
function obsTensors(head: ActionHead, x: LossInputs): Record<string, tf.Tensor> {
  const obs: Record<string, tf.Tensor> = {};
  for (const f of head.config.obs) {
    const data = x.obs[f.name];
    if (!data) throw new Error(`batch has no observation feature '${f.name}'`);
    if (data.length !== x.size * featureSize(f.shape)) {
      throw new Error(
        `observation feature '${f.name}' has ${data.length} values, expected ${x.size} x [${f.shape.join(", ")}]`,
      );
    }
    obs[f.name] = tf.tensor(data, [x.size, ...f.shape]);
  }
  return obs;
}

/** Creates every parameter of `head` in `ops` (in the network's order) with one forward pass on a dummy batch. */
export function createParams(head: ActionHead, ops: TfjsOps): void {
  const cfg = head.config;
  tf.tidy(() => {
    const obs: Record<string, tf.Tensor> = {};
    for (const f of cfg.obs) obs[f.name] = tf.zeros([1, ...f.shape]);
    const ctx = head.encode(ops, obs);
    head.velocity(ops, ctx, tf.zeros([1, cfg.horizon, cfg.actionDim]), tf.zeros([1, cfg.horizon]));
  });
}
