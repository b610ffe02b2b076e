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
  velocity<T>(ops: Ops<T>, ctx: Context<T>, xt: T, t: T, opts?: VelocityOptions): T;
}

/** Options of `ActionHead.velocity`. */
export interface VelocityOptions {
  /** Time tokens in `t`: `horizon` (per-token, default) or 1 (one time per sample). */
  timeTokens?: number;
}

/** The number of time tokens of a `velocity` call, checked against the horizon. */
export function timeTokensOf(opts: VelocityOptions | undefined, horizon: number): number {
  const n = opts?.timeTokens ?? horizon;
  if (n !== 1 && n !== horizon) throw new Error(`t must have 1 or ${horizon} (horizon) time tokens, got ${n}`);
  return n;
}

/** Number of elements of one sample of a feature of `shape`. */
export function featureSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
