/**
 * The contract every action head meets: `encode` the observation once per chunk, then evaluate
 * `velocity` at every solver step, reusing the encoding (the "KV cache").
 *
 * Inputs are normalised. Shapes: observation feature `[batch, ...shape]` (shape `[d]` or `[n, d]`
 * from the config); `xt` `[batch, horizon, actionDim]`; `t` `[batch, horizon]` (per-token time, so
 * a clean action prefix can carry t = 1) or `[batch, 1]` (one time for the whole chunk, the usual
 * case: the time path then runs once per sample instead of once per token). A `regression` head is
 * the same network evaluated at `xt = 0, t = 1`; its output is the normalised action chunk itself.
 */
import type { HeadConfig } from "./config.ts";
import type { Ops } from "./ops.ts";
import { objectiveOf } from "../flow/objective.ts";
import { dense, timeEmbedding } from "./layers.ts";

/** The per-chunk observation encoding: named tensors the velocity step reads. */
export type Context<T> = Record<string, T>;

/** A network description, runnable on any `Ops` implementation. */
export interface ActionHead {
  readonly config: HeadConfig;
  /** Encodes normalised observation features (`[batch, ...shape]` by feature name) once per chunk. */
  encode<T>(ops: Ops<T>, obs: Record<string, T>): Context<T>;
  /**
   * Velocity `[batch, horizon, actionDim]` at `xt` `[batch, horizon, actionDim]` and time `t`
   * `[batch, timeTokens]`, where `timeTokens` is `horizon` (default, per-token time) or 1.
   */
  velocity<T>(ops: Ops<T>, ctx: Context<T>, xt: T, t: T, opts?: VelocityOptions<T>): T;
}

/** Options of `ActionHead.velocity`. */
export interface VelocityOptions<T = unknown> {
  /** Time tokens in `t`: `horizon` (per-token, default) or 1 (one time per sample). */
  timeTokens?: number;
  /**
   * Average-velocity heads (`meanflow`) only: the step length r - t `[batch, timeTokens]` the
   * average is taken over (default 0: the instantaneous velocity). Other heads refuse it.
   */
  interval?: T;
}

/**
 * The conditioning of the step length of an average-velocity head (sinusoidal embedding, then a
 * two-layer MLP whose output layer starts at zero, so an untrained head is the plain velocity head),
 * to add to the head's time conditioning: `[batch, tokens, width]` from `interval`
 * `[batch, tokens]`, or with `per: "sample"` `[batch, width]` from the first token's interval.
 * Returns undefined for heads without the input (and refuses an interval given to them); a missing
 * interval is 0 (`t` supplies its shape).
 */
export function intervalConditioning<T>(
  ops: Ops<T>,
  config: HeadConfig,
  t: T,
  dims: { tokens: number; embed: number; width: number; per: "token" | "sample" },
  opts: VelocityOptions<T> | undefined,
): T | undefined {
  if (!objectiveOf(config).intervalInput) {
    if (opts?.interval !== undefined)
      throw new Error(`a ${config.objective} head takes no interval (only average-velocity heads do)`);
    return undefined;
  }
  let h = opts?.interval ?? ops.scale(t, 0);
  let tokens = dims.tokens;
  if (dims.per === "sample" && tokens !== 1) {
    h = ops.slice(h, 1, 0, 1);
    tokens = 1;
  }
  const hidden = ops.silu(dense(ops, "interval.0", timeEmbedding(ops, h, tokens, dims.embed), dims.embed, dims.width));
  const out = dense(ops, "interval.1", hidden, dims.width, dims.width, { init: "zeros" });
  return dims.per === "sample" ? ops.reshape(out, [-1, dims.width]) : out;
}

/** The number of time tokens of a `velocity` call, checked against the horizon. */
export function timeTokensOf(opts: VelocityOptions<unknown> | undefined, horizon: number): number {
  const n = opts?.timeTokens ?? horizon;
  if (n !== 1 && n !== horizon) throw new Error(`t must have 1 or ${horizon} (horizon) time tokens, got ${n}`);
  return n;
}

/** Number of elements of one sample of a feature of `shape`. */
export function featureSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
