/**
 * The masked squared error of a velocity (or action chunk) against its target, written over
 * `DiffOps` so a tape can differentiate it: the same formula as the tfjs trainer's `maskedLoss`
 * (`training/loss.ts`), summed over unpadded steps and divided by a given denominator.
 */
import type { DiffOps } from "./ops.ts";

/**
 * `sum((v - target)^2 * (1 - isPad) * weight) / denominator` as a scalar `[]`.
 * Shapes: `v`, `target` `[batch, horizon, actionDim]`; `isPad` `[batch, horizon]`, 1 where a step is
 * left out of the loss; `denominator` `[]` (the whole batch's `lossDenominator`, so shards add up);
 * `weight` (optional, default 1) `[batch, 1, 1]`, each sample's weight.
 */
export function maskedSquaredError<T>(
  ops: DiffOps<T>,
  v: T,
  target: T,
  isPad: T,
  denominator: T,
  dims: { horizon: number; weight?: T },
): T {
  const mask = ops.sub(ops.constant(new Float32Array([1]), []), ops.reshape(isPad, [-1, dims.horizon, 1]));
  const keep = dims.weight === undefined ? mask : ops.mul(mask, dims.weight);
  const d = ops.sub(v, target);
  const sq = ops.mul(ops.mul(d, d), keep);
  return ops.div(ops.reshape(ops.sumAxes(sq, [0, 1, 2]), []), denominator);
}
