/**
 * The default action head: one token per horizon step, self-attention among action tokens,
 * cross-attention to observation tokens, and per-token time driving adaLN-zero (pi0.5 style).
 *
 * Each observation feature is projected by its own layer: a vector `[d]` is one token, an
 * embedding `[n, d]` is n tokens, a camera the tokens of its own image encoder (`vision.ts`). Cross-attention keys and values are computed in `encode`, once
 * per chunk.
 */
import type { HeadConfig } from "./config.ts";
import type { Ops } from "./ops.ts";
import type { ActionHead, Context, VelocityOptions } from "./head.ts";
import { intervalConditioning, timeTokensOf } from "./head.ts";
import { featureTokenCount, featureTokens } from "./vision.ts";
import { attend, chunks, dense, headsKeys, headsValues, modulate, timeEmbedding } from "./layers.ts";

const LN_EPS = 1e-6;

/** Builds the transformer action head for `config` (arch `transformer`). */
export function transformerHead(config: HeadConfig): ActionHead {
  const { horizon: H, actionDim: A } = config;
  const { width: D, depth, heads, mlpRatio, timeEmbedDim } = config.transformer;
  const att = { width: D, heads };
  const obsTokens = config.obs.reduce((n, f) => n + featureTokenCount(f, config.vision), 0);

  return {
    config,
    encode<T>(ops: Ops<T>, obs: Record<string, T>): Context<T> {
      const tokens: T[] = [];
      for (const f of config.obs) {
        const x = obs[f.name];
        if (x === undefined) throw new Error(`observation feature '${f.name}' is missing`);
        const { x: input, tokens: n, dim: d } = featureTokens(ops, f, x, config.vision);
        let tok = ops.reshape(dense(ops, `obs.${f.name}.proj`, input, d, D), [-1, n, D]);
        const typeEmb = ops.param({ name: `obs.${f.name}.embed`, shape: [n, D], init: { kind: "normal", std: 0.02 } });
        tok = ops.add(tok, typeEmb);
        tokens.push(tok);
      }
      const seq = ops.layerNorm(tokens.length === 1 ? tokens[0]! : ops.concat(tokens, 1), LN_EPS);
      const ctx: Context<T> = {};
      for (let l = 0; l < depth; l++) {
        ctx[`k${l}`] = headsKeys(ops, dense(ops, `blocks.${l}.cross.k`, seq, D, D), obsTokens, att);
        ctx[`v${l}`] = headsValues(ops, dense(ops, `blocks.${l}.cross.v`, seq, D, D), obsTokens, att);
      }
      return ctx;
    },

    velocity<T>(ops: Ops<T>, ctx: Context<T>, xt: T, t: T, opts?: VelocityOptions<T>): T {
      const pos = ops.param({ name: "action.pos", shape: [H, D], init: { kind: "normal", std: 0.02 } });
      let x = ops.add(dense(ops, "action.in", xt, A, D), pos);

      // The time path runs on [batch, timeTokens, .] and broadcasts over the H action tokens.
      const tokens = timeTokensOf(opts, H);
      const temb = timeEmbedding(ops, t, tokens, timeEmbedDim);
      const tc = dense(ops, "time.1", ops.silu(dense(ops, "time.0", temb, timeEmbedDim, D)), D, D);
      const ic = intervalConditioning(ops, config, t, { tokens, embed: timeEmbedDim, width: D, per: "token" }, opts);
      const c = ops.silu(ic === undefined ? tc : ops.add(tc, ic));

      for (let l = 0; l < depth; l++) {
        const p = `blocks.${l}`;
        const mod = dense(ops, `${p}.ada`, c, D, 9 * D, { init: "zeros" });
        const [sh1, sc1, g1, sh2, sc2, g2, sh3, sc3, g3] = chunks(ops, mod, 2, 9, D) as [T, T, T, T, T, T, T, T, T];

        let h = modulate(ops, ops.layerNorm(x, LN_EPS), sh1, sc1);
        const q = dense(ops, `${p}.self.q`, h, D, D);
        const k = headsKeys(ops, dense(ops, `${p}.self.k`, h, D, D), H, att);
        const v = headsValues(ops, dense(ops, `${p}.self.v`, h, D, D), H, att);
        x = ops.add(x, ops.mul(g1, dense(ops, `${p}.self.o`, attend(ops, q, k, v, H, att), D, D)));

        h = modulate(ops, ops.layerNorm(x, LN_EPS), sh2, sc2);
        const cq = dense(ops, `${p}.cross.q`, h, D, D);
        const cross = attend(ops, cq, ctx[`k${l}`]!, ctx[`v${l}`]!, H, att);
        x = ops.add(x, ops.mul(g2, dense(ops, `${p}.cross.o`, cross, D, D)));

        h = modulate(ops, ops.layerNorm(x, LN_EPS), sh3, sc3);
        const m = dense(ops, `${p}.mlp.fc2`, ops.silu(dense(ops, `${p}.mlp.fc1`, h, D, mlpRatio * D)), mlpRatio * D, D);
        x = ops.add(x, ops.mul(g3, m));
      }

      const fmod = dense(ops, "final.ada", c, D, 2 * D, { init: "zeros" });
      const [shift, scale] = chunks(ops, fmod, 2, 2, D) as [T, T];
      return dense(ops, "action.out", modulate(ops, ops.layerNorm(x, LN_EPS), shift, scale), D, A, { init: "zeros" });
    },
  };
}
