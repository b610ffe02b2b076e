/**
 * The default action head: one token per horizon step, self-attention among action tokens,
 * cross-attention to observation tokens, and per-token time driving adaLN-zero (pi0.5 style).
 *
 * Each observation feature is projected by its own layer: a vector `[d]` is one token, an
 * embedding `[n, d]` is n tokens, a camera the tokens of its own image encoder (`vision.ts`).
 * Cross-attention keys and values are computed in `encode`, once per chunk; the time path
 * (`timeConditioning`) apart from the tokens, so a sampler's constant times fold away.
 */
import type { HeadConfig } from "./config.ts";
import type { Ops } from "./ops.ts";
import type { ActionHead, Conditioning, Context, VelocityOptions } from "./head.ts";
import { intervalConditioning, lazyConditioning, selectByMask, timeTokensOf } from "./head.ts";
import { featureTokenCount, featureTokens } from "./vision.ts";
import { attend, chunks, dense, headsKeys, headsValues, modulate, timeEmbedding } from "./layers.ts";

const LN_EPS = 1e-6;
/** A block's adaLN-zero modulation: shift, scale and gate of its self-attention, cross-attention and MLP. */
const BLOCK_PIECES = ["shift1", "scale1", "gate1", "shift2", "scale2", "gate2", "shift3", "scale3", "gate3"] as const;
/** The final layer's modulation. */
const FINAL_PIECES = ["shift", "scale"] as const;

/** Builds the transformer action head for `config` (arch `transformer`). */
export function transformerHead(config: HeadConfig): ActionHead {
  const { horizon: H, actionDim: A } = config;
  const { width: D, depth, heads, mlpRatio, timeEmbedDim } = config.transformer;
  const att = { width: D, heads };
  const obsTokens = config.obs.reduce((n, f) => n + featureTokenCount(f, config.vision), 0);
  /** Where each conditioning piece comes from: its layer's modulation and its index there. */
  const pieces = new Map<string, { layer: string; index: number }>();
  for (let l = 0; l < depth; l++)
    BLOCK_PIECES.forEach((n, index) => pieces.set(`blocks.${l}.${n}`, { layer: `blocks.${l}`, index }));
  FINAL_PIECES.forEach((n, index) => pieces.set(`final.${n}`, { layer: "final", index }));

  /**
   * The time path on `[batch, tokens]`: sinusoid, time MLP (plus the step length's conditioning of
   * an average-velocity head), then each block's adaLN modulation (`blocks.<l>.<piece>`, 9 pieces
   * of `[batch, tokens, D]`) and the final layer's `final.shift` and `final.scale`.
   */
  const conditioning = <T>(
    ops: Ops<T>,
    t: T,
    tokens: number,
    opts: VelocityOptions<T> | undefined,
  ): Conditioning<T> => {
    let c: T | undefined;
    const time = (): T => {
      if (c === undefined) {
        const temb = timeEmbedding(ops, t, tokens, timeEmbedDim);
        const tc = dense(ops, "time.1", ops.silu(dense(ops, "time.0", temb, timeEmbedDim, D)), D, D);
        const ic = intervalConditioning(ops, config, t, { tokens, embed: timeEmbedDim, width: D, per: "token" }, opts);
        c = ops.silu(ic === undefined ? tc : ops.add(tc, ic));
      }
      return c;
    };
    // A layer's modulation is one dense layer, split into its pieces.
    const layers = new Map<string, T[]>();
    return lazyConditioning((name) => {
      const at = pieces.get(name);
      if (!at) throw new Error(`the transformer head has no time conditioning '${name}'`);
      let mod = layers.get(at.layer);
      if (mod === undefined) {
        const n = at.layer === "final" ? FINAL_PIECES.length : BLOCK_PIECES.length;
        mod = chunks(ops, dense(ops, `${at.layer}.ada`, time(), D, n * D, { init: "zeros" }), 2, n, D);
        layers.set(at.layer, mod);
      }
      return mod[at.index]!;
    });
  };

  function timeConditioning<T>(ops: Ops<T>, t: T, opts?: VelocityOptions<T>): Conditioning<T> {
    const tokens = timeTokensOf(opts, H);
    const mask = opts?.prefixMask;
    if (mask === undefined) return conditioning(ops, t, tokens, opts);
    if (opts?.interval !== undefined) throw new Error("a clean prefix (prefixMask) takes no interval");
    if (tokens !== 1) throw new Error(`with a prefixMask, t has 1 time token, got ${tokens}`);
    const one = ops.constant(Float32Array.of(1), [1, 1]);
    return selectByMask(ops, mask, conditioning(ops, one, 1, undefined), conditioning(ops, t, 1, undefined), {
      horizon: H,
      width: () => D,
    });
  }

  function velocityWith<T>(ops: Ops<T>, ctx: Context<T>, xt: T, cond: Conditioning<T>): T {
    const piece = (name: string): T => cond.get(name);
    const pos = ops.param({ name: "action.pos", shape: [H, D], init: { kind: "normal", std: 0.02 } });
    let x = ops.add(dense(ops, "action.in", xt, A, D), pos);

    for (let l = 0; l < depth; l++) {
      const p = `blocks.${l}`;
      const [sh1, sc1, g1, sh2, sc2, g2, sh3, sc3, g3] = BLOCK_PIECES.map((n) => piece(`${p}.${n}`)) as [
        T,
        T,
        T,
        T,
        T,
        T,
        T,
        T,
        T,
      ];

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

    const shift = piece("final.shift");
    const scale = piece("final.scale");
    return dense(ops, "action.out", modulate(ops, ops.layerNorm(x, LN_EPS), shift, scale), D, A, { init: "zeros" });
  }

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
      return velocityWith(ops, ctx, xt, timeConditioning(ops, t, opts));
    },

    timeConditioning,
    velocityWith,
  };
}
