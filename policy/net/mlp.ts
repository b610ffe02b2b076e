/**
 * The MLP action head: a residual MLP over the flattened chunk, conditioned by FiLM (adaptive
 * norm: shift, scale, gate) on the observation encoding plus the time embedding.
 */
import type { HeadConfig } from "./config.ts";
import type { Ops } from "./ops.ts";
import type { ActionHead, Context, VelocityOptions } from "./head.ts";
import { intervalConditioning, timeTokensOf } from "./head.ts";
import { featureTokens } from "./vision.ts";
import { chunks, dense, modulate, timeEmbedding } from "./layers.ts";

const LN_EPS = 1e-6;

/** Builds the residual-MLP action head for `config` (arch `mlp`). */
export function mlpHead(config: HeadConfig): ActionHead {
  const { horizon: H, actionDim: A } = config;
  const { width: W, depth, timeEmbedDim: Dt } = config.mlp;

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
      let h = dense(ops, "action.in", ops.reshape(xt, [-1, H * A]), H * A, W);
      // The flattened time embedding needs per-token time: a per-sample t is broadcast to H tokens.
      const tokens = timeTokensOf(opts, H);
      const tTokens = tokens === H ? t : ops.mul(t, ops.constant(new Float32Array(H).fill(1), [1, H]));
      const temb = ops.reshape(timeEmbedding(ops, tTokens, H, Dt), [-1, H * Dt]);
      const tc0 = dense(ops, "time.1", ops.silu(dense(ops, "time.0", temb, H * Dt, W)), W, W);
      // Average-velocity heads: one step length per sample (its first token's).
      const ic = intervalConditioning(ops, config, t, { tokens, embed: Dt, width: W, per: "sample" }, opts);
      const tc = ic === undefined ? tc0 : ops.add(tc0, ic);
      const c = ops.silu(ops.add(ctx["obs"]!, tc));

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
    },
  };
}
