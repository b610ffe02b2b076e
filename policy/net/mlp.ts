/**
 * The MLP action head: a residual MLP over the flattened chunk, conditioned by FiLM (adaptive
 * norm: shift, scale, gate) on the observation encoding plus the time embedding.
 */
import type { HeadConfig } from "./config.ts";
import type { Ops } from "./ops.ts";
import type { ActionHead, Conditioning, Context, VelocityOptions } from "./head.ts";
import { intervalConditioning, lazyConditioning, timeTokensOf } from "./head.ts";
import { featureTokens } from "./vision.ts";
import { chunks, dense, modulate, timeEmbedding } from "./layers.ts";

const LN_EPS = 1e-6;

/** Builds the residual-MLP action head for `config` (arch `mlp`). */
export function mlpHead(config: HeadConfig): ActionHead {
  const { horizon: H, actionDim: A } = config;
  const { width: W, depth, timeEmbedDim: Dt } = config.mlp;

  /** The time MLP on a flattened embedding `[batch, H * Dt]`, from its first layer's output on. */
  const timeMlp = <T>(ops: Ops<T>, hidden0: T): T => dense(ops, "time.1", ops.silu(hidden0), W, W);

  /**
   * One piece, `time` `[batch, W]` (or `[1, W]`): the time MLP of the flattened per-token time
   * embedding plus an average-velocity head's step-length conditioning.
   */
  function timeConditioning<T>(ops: Ops<T>, t: T, opts?: VelocityOptions<T>): Conditioning<T> {
    const tokens = timeTokensOf(opts, H);
    const mask = opts?.prefixMask;
    return lazyConditioning((name) => {
      if (name !== "time") throw new Error(`the mlp head has no time conditioning '${name}'`);
      if (mask === undefined) {
        // The flattened time embedding needs per-token time: a per-sample t is broadcast to H tokens.
        const tTokens = tokens === H ? t : ops.mul(t, ops.constant(new Float32Array(H).fill(1), [1, H]));
        const temb = ops.reshape(timeEmbedding(ops, tTokens, H, Dt), [-1, H * Dt]);
        const tc = timeMlp(ops, dense(ops, "time.0", temb, H * Dt, W));
        // Average-velocity heads: one step length per sample (its first token's).
        const ic = intervalConditioning(ops, config, t, { tokens, embed: Dt, width: W, per: "sample" }, opts);
        return ic === undefined ? tc : ops.add(tc, ic);
      }
      if (opts?.interval !== undefined) throw new Error("a clean prefix (prefixMask) takes no interval");
      if (tokens !== 1) throw new Error(`with a prefixMask, t has 1 time token, got ${tokens}`);
      // The first time layer is linear in the per-token embedding e_h = e(t) + mask_h (e(1) - e(t)):
      // its output at t on every token, plus mask @ the rows W0_h^T (e(1) - e(t)) [H, W] (constants
      // when t is), instead of the embedding of H tokens at every evaluation.
      const ones = ops.constant(new Float32Array(H).fill(1), [H, 1, 1]);
      const et = timeEmbedding(ops, t, 1, Dt);
      const diff = ops.mul(ops.sub(timeEmbedding(ops, ops.constant(Float32Array.of(1), [1, 1]), 1, Dt), et), ones);
      const w0 = ops.param({ name: "time.0.weight", shape: [H * Dt, W], init: { kind: "glorot" } });
      const rows = ops.reshape(ops.matMul(diff, ops.reshape(w0, [H, Dt, W])), [H, W]);
      const atT = dense(ops, "time.0", ops.reshape(ops.mul(et, ones), [1, H * Dt]), H * Dt, W);
      return timeMlp(ops, ops.add(atT, ops.matMul(mask, rows)));
    });
  }

  function velocityWith<T>(ops: Ops<T>, ctx: Context<T>, xt: T, cond: Conditioning<T>): T {
    let h = dense(ops, "action.in", ops.reshape(xt, [-1, H * A]), H * A, W);
    const c = ops.silu(ops.add(ctx["obs"]!, cond.get("time")));

    for (let l = 0; l < depth; l++) {
      const p = `blocks.${l}`;
      const [shift, scale, gate] = chunks(ops, dense(ops, `${p}.film`, c, W, 3 * W, { init: "zeros" }), 1, 3, W) as [
        T,
        T,
        T,
      ];
      const z = modulate(ops, ops.layerNorm(h, LN_EPS), shift, scale);
      const m = dense(ops, `${p}.fc2`, ops.silu(dense(ops, `${p}.fc1`, z, W, W)), W, W);
      h = ops.add(h, ops.mul(gate, m));
    }

    const [shift, scale] = chunks(ops, dense(ops, "final.film", c, W, 2 * W, { init: "zeros" }), 1, 2, W) as [T, T];
    const out = dense(ops, "action.out", modulate(ops, ops.layerNorm(h, LN_EPS), shift, scale), W, H * A, {
      init: "zeros",
    });
    return ops.reshape(out, [-1, H, A]);
  }

  return {
    config,
    encode<T>(ops: Ops<T>, obs: Record<string, T>): Context<T> {
      let sum: T | undefined;
      for (const f of config.obs) {
        const x = obs[f.name];
        if (x === undefined) throw new Error(`observation feature '${f.name}' is missing`);
        const t = featureTokens(ops, f, x, config.vision);
        const size = t.tokens * t.dim;
        const e = dense(ops, `obs.${f.name}.proj`, ops.reshape(t.x, [-1, size]), size, W);
        sum = sum === undefined ? e : ops.add(sum, e);
      }
      return { obs: dense(ops, "obs.mix", ops.silu(sum!), W, W) };
    },

    velocity<T>(ops: Ops<T>, ctx: Context<T>, xt: T, t: T, opts?: VelocityOptions<T>): T {
      return velocityWith(ops, ctx, xt, timeConditioning(ops, t, opts));
    },

    timeConditioning,
    velocityWith,
  };
}
