/**
 * The contract every action head meets: `encode` the observation once per chunk, then evaluate
 * `velocity` at every solver step, reusing the encoding (the "KV cache").
 *
 * Inputs are normalised. Shapes: observation feature `[batch, ...shape]` (shape `[d]` or `[n, d]`
 * from the config); `xt` `[batch, horizon, actionDim]`; `t` `[batch, horizon]` (per-token time, so
 * a clean action prefix can carry t = 1) or `[batch, 1]` (one time for the whole chunk, the usual
 * case: the time path then runs once per sample instead of once per token). A `regression` head is
 * the same network evaluated at `xt = 0, t = 1`; its output is the normalised action chunk itself.
 *
 * `velocity` is `velocityWith` of `timeConditioning`: everything that depends on time alone (the
 * time embedding and MLP, every adaptive-norm modulation) is computed apart from the action tokens,
 * so a sampler whose times are constants (an exported solver's uniform grid) gets it as constants
 * onnxruntime folds at load time, and a clean prefix (`prefixMask`) needs it at two times only.
 */
import type { HeadConfig } from "./config.ts";
import type { Ops } from "./ops.ts";
import { objectiveOf } from "../flow/objective.ts";
import { dense, timeEmbedding } from "./layers.ts";

/** The per-chunk observation encoding: named tensors the velocity step reads. */
export type Context<T> = Record<string, T>;

/**
 * What a velocity evaluation reads of its time (`ActionHead.timeConditioning`): named tensors that
 * broadcast against the head's hidden state, per token or per sample. Each is computed when first
 * read (and kept), so the network creates its parameters in the order it reads them.
 */
export interface Conditioning<T> {
  /** The tensor named `name`; throws naming it when the head has none. */
  get(name: string): T;
}

/** A `Conditioning` computing each name with `compute` on its first read. */
export function lazyConditioning<T>(compute: (name: string) => T): Conditioning<T> {
  const done = new Map<string, T>();
  return {
    get(name: string): T {
      let x = done.get(name);
      if (x === undefined) {
        x = compute(name);
        done.set(name, x);
      }
      return x;
    },
  };
}

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
  /**
   * The time conditioning of a velocity evaluation at time `t` (`[batch, timeTokens]`, or with
   * `opts.prefixMask` `[1, 1]`): depends on `t`, `opts` and the parameters only, never on the
   * observation or `xt`.
   */
  timeConditioning<T>(ops: Ops<T>, t: T, opts?: VelocityOptions<T>): Conditioning<T>;
  /** Velocity `[batch, horizon, actionDim]` at `xt` under a `timeConditioning` (`velocity` = the two composed). */
  velocityWith<T>(ops: Ops<T>, ctx: Context<T>, xt: T, cond: Conditioning<T>): T;
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
  /**
   * Training-time RTC's clean prefix: `[batch, horizon]`, 1 on the tokens of the prefix (at time 1,
   * the data end) and 0 on the others, which are at time `t` `[1, 1]` (one time for the batch, a
   * sampler's step; `timeTokens` 1). The same as the per-token time `mask + (1 - mask) t`, but the
   * time path runs at t = 1 and at `t` only (constants when `t` is) and each token picks its own.
   * Flow heads only: no `interval`.
   */
  prefixMask?: T;
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

/**
 * Per-token choice between two conditionings of one time each (`[1, 1, width]` pieces, as at one
 * time token of batch 1): `at1` on the tokens where `mask` `[batch, horizon]` is 1, `at0`
 * elsewhere; pieces `[batch, horizon, width]`. Exact (a product with a one-hot `[batch, horizon, 2]`).
 */
export function selectByMask<T>(
  ops: Ops<T>,
  mask: T,
  at1: Conditioning<T>,
  at0: Conditioning<T>,
  dims: { horizon: number; width: (name: string) => number },
): Conditioning<T> {
  const H = dims.horizon;
  let oneHot: T | undefined;
  return lazyConditioning((name) => {
    if (oneHot === undefined) {
      const m = ops.reshape(mask, [-1, H, 1]);
      oneHot = ops.concat([m, ops.sub(ops.constant(Float32Array.of(1), [1, 1, 1]), m)], 2);
    }
    const width = dims.width(name);
    const rows = ops.concat([ops.reshape(at1.get(name), [1, width]), ops.reshape(at0.get(name), [1, width])], 0);
    return ops.matMul(oneHot, rows);
  });
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
