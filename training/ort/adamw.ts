/**
 * AdamW over Float32Arrays: global-norm clipping, bias-corrected moments, decoupled weight decay
 * on matrices, warmup + cosine learning rate and EMA weights, step for step the update the tfjs
 * `Trainer` applies (`training/trainer.ts`, `applyGradients`), for trainers whose gradients arrive
 * as plain arrays (the onnxruntime trainer).
 */
import type { NamedArray } from "../../policy/net/ops.ts";
import type { OptimConfig } from "../optim.ts";
import { learningRate } from "../trainer.ts";

/** One parameter's state: value, AdamW moments and EMA value, all of the parameter's shape. */
export interface ParamState {
  shape: number[];
  value: Float32Array;
  m: Float32Array;
  v: Float32Array;
  ema: Float32Array;
}

/** What one update reports: the gradient norm before clipping and the learning rate used. */
export interface UpdateResult {
  gradNorm: number;
  lr: number;
}

/** AdamW + EMA over named Float32Array parameters; updates `params` in place. */
export class AdamW {
  readonly params: Map<string, ParamState>;

  /** Takes parameter values (copied) and, to resume, their moments and EMA (zeros and a copy otherwise). */
  constructor(
    readonly optim: OptimConfig,
    values: ReadonlyMap<string, NamedArray>,
    resume?: {
      m: ReadonlyMap<string, NamedArray>;
      v: ReadonlyMap<string, NamedArray>;
      ema: ReadonlyMap<string, NamedArray>;
    },
  ) {
    this.params = new Map();
    for (const [name, p] of values) {
      const n = p.data.length;
      const from = (m: ReadonlyMap<string, NamedArray> | undefined, fallback: Float32Array): Float32Array => {
        const got = m?.get(name);
        if (got && got.data.length !== n)
          throw new Error(`AdamW: resume state of '${name}' has ${got.data.length} values, the parameter ${n}`);
        return got ? got.data.slice() : fallback;
      };
      this.params.set(name, {
        shape: p.shape.slice(),
        value: p.data.slice(),
        m: from(resume?.m, new Float32Array(n)),
        v: from(resume?.v, new Float32Array(n)),
        ema: from(resume?.ema, p.data.slice()),
      });
    }
  }

  /**
   * Applies step `step` (0-based) with `grads` (every parameter's, by name): clips them to the
   * global norm `clipNorm`, then AdamW and the EMA (decay min(emaDecay, (1 + step) / (10 + step))).
   */
  update(step: number, grads: ReadonlyMap<string, Float32Array>): UpdateResult {
    const o = this.optim;
    const lr = learningRate(o, step);
    let sumSq = 0;
    for (const [name, p] of this.params) {
      const g = grads.get(name);
      if (!g) throw new Error(`AdamW: no gradient for parameter '${name}'`);
      if (g.length !== p.value.length)
        throw new Error(`AdamW: gradient of '${name}' has ${g.length} values, the parameter ${p.value.length}`);
      for (let i = 0; i < g.length; i++) sumSq += g[i]! * g[i]!;
    }
    const gradNorm = Math.sqrt(sumSq);
    const clip = Math.min(1, o.clipNorm / (gradNorm + 1e-6));
    const t = step + 1;
    const bc1 = 1 - Math.pow(o.beta1, t);
    const bc2 = 1 - Math.pow(o.beta2, t);
    const emaDecay = Math.min(o.emaDecay, (1 + step) / (10 + step));
    for (const [name, p] of this.params) {
      const g = grads.get(name)!;
      const decay = p.shape.length >= 2 && o.weightDecay > 0 ? 1 - lr * o.weightDecay : 1;
      const { value, m, v, ema } = p;
      for (let i = 0; i < g.length; i++) {
        const gi = g[i]! * clip;
        const mi = (m[i] = m[i]! * o.beta1 + gi * (1 - o.beta1));
        const vi = (v[i] = v[i]! * o.beta2 + gi * gi * (1 - o.beta2));
        const update = mi / bc1 / (Math.sqrt(vi / bc2) + o.eps);
        const pi = (value[i] = value[i]! * decay - update * lr);
        ema[i] = ema[i]! * emaDecay + pi * (1 - emaDecay);
      }
    }
    return { gradNorm, lr };
  }

  /** Copies of the values, moments and EMA, by name (for checkpoints). */
  snapshot(): {
    params: Map<string, NamedArray>;
    m: Map<string, NamedArray>;
    v: Map<string, NamedArray>;
    ema: Map<string, NamedArray>;
  } {
    const of = (k: "value" | "m" | "v" | "ema"): Map<string, NamedArray> =>
      new Map([...this.params].map(([name, p]) => [name, { shape: p.shape.slice(), data: p[k].slice() }]));
    return { params: of("value"), m: of("m"), v: of("v"), ema: of("ema") };
  }
}
