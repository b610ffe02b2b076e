/**
 * The training engine: conditional flow matching (or plain MSE for the regression baseline) with a
 * padding mask, AdamW, warmup + cosine schedule, global-norm gradient clipping, EMA weights,
 * seeded and resumable runs.
 *
 * Per step t the randomness comes from `Rng(seed, step)`, so a resumed run draws exactly what the
 * uninterrupted run would have drawn.
 */
import * as tf from "@tensorflow/tfjs";
import type { ActionHead } from "../policy/net/network.ts";
import type { NamedArray } from "../policy/net/tfjs-ops.ts";
import { TfjsOps } from "../policy/net/tfjs-ops.ts";
import type { ProbPath } from "../policy/flow/path.ts";
import { linearPath, samplePath, sigmaMinPath } from "../policy/flow/path.ts";
import type { TimeSampler, TimeSamplerConfig } from "../policy/flow/time.ts";
import { timeSamplerFromConfig } from "../policy/flow/time.ts";
import { Rng } from "../policy/random.ts";
import type { Batch } from "./batch.ts";

/** The optimisation settings of a run (stored in the checkpoint's train state). */
export interface OptimConfig {
  /** Peak learning rate. */
  lr: number;
  /** Linear warmup steps from 0 to `lr`. */
  warmupSteps: number;
  /** Total steps of the cosine decay (normally the run's step count). */
  decaySteps: number;
  /** Learning rate at the end of the cosine, as a fraction of `lr`. */
  minLrRatio: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay (AdamW), applied to matrices only. */
  weightDecay: number;
  /** Global gradient-norm clip. */
  clipNorm: number;
  /** EMA decay of the inference weights (pi0: 0.99); warmed up as min(decay, (1+s)/(10+s)). */
  emaDecay: number;
}

/** Defaults modelled on pi0 (AdamW b1 0.9, b2 0.95, clip 1.0, EMA 0.99). */
export const DEFAULT_OPTIM: OptimConfig = {
  lr: 1e-3,
  warmupSteps: 100,
  decaySteps: 2000,
  minLrRatio: 0.05,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: 1e-4,
  clipNorm: 1.0,
  emaDecay: 0.99,
};

/** The flow-matching path of a run. */
export type PathConfig = { kind: "linear" } | { kind: "sigma_min"; sigmaMin: number };

/** Options of `Trainer`. */
export interface TrainerOptions {
  head: ActionHead;
  seed: number;
  optim?: Partial<OptimConfig>;
  timeSampler?: TimeSamplerConfig;
  path?: PathConfig;
  /** Resume from these raw weights and moments (from a checkpoint's optimizer state). */
  resume?: { params: Map<string, NamedArray>; m: Map<string, NamedArray>; v: Map<string, NamedArray>; ema: Map<string, NamedArray>; step: number };
}

/** Learning rate at `step` (0-based) under warmup + cosine decay. */
export function learningRate(o: OptimConfig, step: number): number {
  if (step < o.warmupSteps) return (o.lr * (step + 1)) / o.warmupSteps;
  const span = Math.max(1, o.decaySteps - o.warmupSteps);
  const progress = Math.min(1, (step - o.warmupSteps) / span);
  const cosine = 0.5 * (1 + Math.cos(Math.PI * progress));
  return o.lr * (o.minLrRatio + (1 - o.minLrRatio) * cosine);
}

/** The per-step generator of a run: independent of how the run was split by resumes. */
export function stepRng(seed: number, step: number): Rng {
  return new Rng((Math.imul(seed ^ 0x5bd1e995, 0x27d4eb2f) + Math.imul(step + 1, 0x165667b1)) >>> 0);
}

/** The flow path named by a config. */
export function pathFromConfig(c: PathConfig): ProbPath {
  return c.kind === "linear" ? linearPath() : sigmaMinPath(c.sigmaMin);
}

/** What one training step reports. */
export interface StepResult {
  step: number;
  loss: number;
  gradNorm: number;
  lr: number;
}

/** Trains one action head. Call `dispose()` when done to free its tensors. */
export class Trainer {
  readonly head: ActionHead;
  readonly optim: OptimConfig;
  readonly path: ProbPath;
  readonly timeSampler: TimeSampler;
  /** Raw trainable weights. */
  readonly ops: TfjsOps;
  /** EMA weights, used for validation and inference. */
  readonly emaOps: TfjsOps;
  private readonly seed: number;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();
  private readonly ema = new Map<string, tf.Variable>();
  private stepCount = 0;

  constructor(opts: TrainerOptions) {
    this.head = opts.head;
    this.seed = opts.seed;
    this.optim = { ...DEFAULT_OPTIM, ...opts.optim };
    this.path = pathFromConfig(opts.path ?? { kind: "linear" });
    this.timeSampler = timeSamplerFromConfig(opts.timeSampler ?? { kind: "pi0" });
    this.ops = new TfjsOps({ seed: opts.seed, weights: opts.resume?.params });
    // Create every parameter with one forward pass on a dummy batch.
    const cfg = this.head.config;
    tf.tidy(() => {
      const obs: Record<string, tf.Tensor> = {};
      for (const f of cfg.obs) obs[f.name] = tf.zeros([1, ...f.shape]);
      const ctx = this.head.encode(this.ops, obs);
      this.head.velocity(this.ops, ctx, tf.zeros([1, cfg.horizon, cfg.actionDim]), tf.zeros([1, cfg.horizon]));
    });
    const emaWeights = opts.resume?.ema ?? this.ops.snapshot();
    this.emaOps = new TfjsOps({ seed: opts.seed, weights: emaWeights, mode: "frozen" });
    for (const [name, p] of this.ops.variables()) {
      const fromResume = (m: Map<string, NamedArray> | undefined): tf.Tensor =>
        m?.get(name) ? tf.tensor(m.get(name)!.data, p.shape) : tf.zerosLike(p);
      this.m.set(name, tf.variable(fromResume(opts.resume?.m), false));
      this.v.set(name, tf.variable(fromResume(opts.resume?.v), false));
      this.ema.set(name, this.emaOps.param({ name, shape: p.shape, init: { kind: "zeros" } }) as tf.Variable);
    }
    this.stepCount = opts.resume?.step ?? 0;
  }

  /** Steps taken so far (the next step's index). */
  get step(): number {
    return this.stepCount;
  }

  /** Number of trainable scalars. */
  parameterCount(): number {
    let n = 0;
    for (const p of this.ops.variables().values()) n += p.size;
    return n;
  }

  /**
   * The network inputs and regression target for a batch: for `flow`, x_t and u_t on the path at a
   * per-sample time t (shared by the sample's tokens, so `t` is `[size, 1]`); for `regression`,
   * x = 0, t = 1, target = actions.
   */
  prepare(batch: Batch, rng: Rng): { xt: Float32Array; t: Float32Array; target: Float32Array } {
    const { horizon: H, actionDim: A } = this.head.config;
    const n = batch.size * H;
    if (batch.actions.length !== n * A) {
      throw new Error(`batch.actions has ${batch.actions.length} values, expected ${batch.size} x ${H} x ${A} = ${n * A}`);
    }
    const t = new Float32Array(batch.size);
    if (this.head.config.objective === "regression") {
      t.fill(1);
      return { xt: new Float32Array(n * A), t, target: batch.actions };
    }
    const tokenTime = new Float32Array(n);
    for (let b = 0; b < batch.size; b++) {
      t[b] = this.timeSampler.sample(rng);
      tokenTime.fill(t[b]!, b * H, (b + 1) * H);
    }
    const x0 = batch.noise ?? rng.normalArray(n * A);
    if (x0.length !== n * A) throw new Error(`batch.noise has ${x0.length} values, expected ${n * A}`);
    const { xt, ut } = samplePath(this.path, x0, batch.actions, tokenTime, { dim: A });
    return { xt, t, target: ut };
  }

  /** Masked mean squared error between the network output and `target` (a scalar tensor). */
  private lossTensor(ops: TfjsOps, batch: Batch, inputs: { xt: Float32Array; t: Float32Array; target: Float32Array }): tf.Scalar {
    const { horizon: H, actionDim: A } = this.head.config;
    const obs: Record<string, tf.Tensor> = {};
    for (const f of this.head.config.obs) {
      const data = batch.obs[f.name];
      if (!data) throw new Error(`batch has no observation feature '${f.name}'`);
      obs[f.name] = tf.tensor(data, [batch.size, ...f.shape]);
    }
    const ctx = this.head.encode(ops, obs);
    const v = this.head.velocity(ops, ctx, tf.tensor(inputs.xt, [batch.size, H, A]), tf.tensor(inputs.t, [batch.size, 1]), { timeTokens: 1 });
    const mask = tf.sub(tf.scalar(1), tf.tensor(Float32Array.from(batch.isPad), [batch.size, H, 1]));
    const sq = tf.mul(tf.square(tf.sub(v, tf.tensor(inputs.target, [batch.size, H, A]))), mask);
    const denom = tf.mul(tf.maximum(tf.sum(mask), tf.scalar(1)), tf.scalar(A));
    return tf.div(tf.sum(sq), denom) as tf.Scalar;
  }

  /** One optimisation step on `batch`; randomness from `stepRng(seed, step)` unless `rng` is given. */
  trainStep(batch: Batch, rng?: Rng): StepResult {
    const step = this.stepCount;
    const r = rng ?? stepRng(this.seed, step);
    const inputs = this.prepare(batch, r);
    const o = this.optim;
    const lr = learningRate(o, step);
    const vars = [...this.ops.variables().values()];
    const [lossValue, normValue] = tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => this.lossTensor(this.ops, batch, inputs), vars);
      let sumSq: tf.Tensor = tf.scalar(0);
      for (const g of Object.values(grads)) sumSq = tf.add(sumSq, tf.sum(tf.square(g)));
      const norm = tf.sqrt(sumSq);
      const clip = tf.minimum(tf.scalar(1), tf.div(tf.scalar(o.clipNorm), tf.add(norm, tf.scalar(1e-6))));
      const t = step + 1;
      const bc1 = 1 - Math.pow(o.beta1, t);
      const bc2 = 1 - Math.pow(o.beta2, t);
      const emaDecay = Math.min(o.emaDecay, (1 + step) / (10 + step));
      for (const [name, p] of this.ops.variables()) {
        const g = tf.mul(grads[p.name]!, clip);
        const m = this.m.get(name)!;
        const v = this.v.get(name)!;
        const m1 = tf.add(tf.mul(m, tf.scalar(o.beta1)), tf.mul(g, tf.scalar(1 - o.beta1)));
        const v1 = tf.add(tf.mul(v, tf.scalar(o.beta2)), tf.mul(tf.square(g), tf.scalar(1 - o.beta2)));
        m.assign(m1);
        v.assign(v1);
        const update = tf.div(tf.div(m1, tf.scalar(bc1)), tf.add(tf.sqrt(tf.div(v1, tf.scalar(bc2))), tf.scalar(o.eps)));
        const decayed = p.rank >= 2 && o.weightDecay > 0 ? tf.mul(p, tf.scalar(1 - lr * o.weightDecay)) : p;
        const p1 = tf.sub(decayed, tf.mul(update, tf.scalar(lr)));
        p.assign(p1);
        const e = this.ema.get(name)!;
        e.assign(tf.add(tf.mul(e, tf.scalar(emaDecay)), tf.mul(p1, tf.scalar(1 - emaDecay))));
      }
      return [value.dataSync()[0]!, norm.dataSync()[0]!];
    });
    if (!Number.isFinite(lossValue)) {
      throw new Error(`training diverged at step ${step}: loss is ${lossValue} (gradient norm ${normValue}); lower the learning rate or check the data for NaN`);
    }
    this.stepCount++;
    return { step, loss: lossValue, gradNorm: normValue, lr };
  }

  /** Loss of the EMA weights on `batch` with fixed randomness (comparable across calls). */
  evalLoss(batch: Batch, seed = 1234): number {
    const inputs = this.prepare(batch, new Rng(seed));
    return tf.tidy(() => this.lossTensor(this.emaOps, batch, inputs).dataSync()[0]!);
  }

  /** Mean EMA loss over batches (e.g. a validation split's `epoch`), sample-weighted. */
  evalLossOver(batches: Iterable<Batch>, seed = 1234): number {
    let sum = 0;
    let n = 0;
    let i = 0;
    for (const b of batches) {
      sum += this.evalLoss(b, seed + i++) * b.size;
      n += b.size;
    }
    return n === 0 ? NaN : sum / n;
  }

  /** The state needed to resume: raw weights, AdamW moments and EMA weights. */
  state(): { params: Map<string, NamedArray>; m: Map<string, NamedArray>; v: Map<string, NamedArray>; ema: Map<string, NamedArray> } {
    const copy = (vars: Map<string, tf.Variable>): Map<string, NamedArray> =>
      new Map([...vars].map(([k, v]) => [k, { shape: v.shape.slice(), data: (v.dataSync() as Float32Array).slice() }]));
    return { params: this.ops.snapshot(), m: copy(this.m), v: copy(this.v), ema: copy(this.ema) };
  }

  /** Frees every tensor the trainer holds. */
  dispose(): void {
    this.ops.dispose();
    this.emaOps.dispose();
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
    this.m.clear();
    this.v.clear();
    this.ema.clear();
  }
}
