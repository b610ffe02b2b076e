/**
 * The masked flow-matching loss of a head on one batch (or one shard of it): its inputs, its
 * denominator and its tfjs evaluation. The trainer and the gradient workers both use it.
 */
import * as tf from "@tensorflow/tfjs";
import type { ActionHead } from "../policy/net/head.ts";
import { featureSize } from "../policy/net/head.ts";
import type { TfjsOps } from "../policy/net/tfjs-ops.ts";

/**
 * The network inputs of a batch (or of one shard of it) for the loss; flat, row-major, float32.
 * Observation features `[size, ...shape]`; `xt`, `target` `[size, horizon, actionDim]`; `t`
 * `[size, 1]` (one time per sample) or `[size, horizon]` (per-token: prefix training); `isPad`
 * `[size, horizon]`, 1 where a step is left out of the loss (past the episode end, or a clean prefix step).
 */
export interface LossInputs {
  size: number;
  obs: Record<string, Float32Array>;
  xt: Float32Array;
  t: Float32Array;
  target: Float32Array;
  isPad: Uint8Array;
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
 * Masked squared error of `head` on `x`, summed over unpadded steps and divided by `denominator`
 * (a scalar tensor). With the batch's own `lossDenominator` this is the masked mean; shards of one
 * batch share the whole batch's denominator, so their losses (and gradients) add up to the batch's.
 */
export function maskedLoss(head: ActionHead, ops: TfjsOps, x: LossInputs, denominator: number): tf.Scalar {
  const { horizon: H, actionDim: A } = head.config;
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
  const ctx = head.encode(ops, obs);
  const T = timeTokensOfInputs(x, H);
  const v = head.velocity(ops, ctx, tf.tensor(x.xt, [x.size, H, A]), tf.tensor(x.t, [x.size, T]), { timeTokens: T });
  const mask = tf.sub(tf.scalar(1), tf.tensor(Float32Array.from(x.isPad), [x.size, H, 1]));
  const sq = tf.mul(tf.square(tf.sub(v, tf.tensor(x.target, [x.size, H, A]))), mask);
  return tf.div(tf.sum(sq), tf.scalar(denominator)) as tf.Scalar;
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
