/**
 * The training engine: the head's objective (conditional flow matching, the regression baseline or
 * MeanFlow, `policy/flow/objective.ts`) with a padding mask, AdamW, warmup + cosine schedule, global-norm gradient clipping, EMA weights,
 * seeded and resumable runs.
 *
 * Per step t the randomness comes from `Rng(seed, step)`, so a resumed run draws exactly what the
 * uninterrupted run would have drawn.
 */
import os from "node:os";
import * as tf from "@tensorflow/tfjs";
import type { ActionHead } from "../policy/net/head.ts";
import { featureSize } from "../policy/net/head.ts";
import type { Abstract } from "../policy/net/flops.ts";
import { FlopCounter, headFlops } from "../policy/net/flops.ts";
import type { ParamSpec } from "../policy/net/ops.ts";
import type { NamedArray } from "../policy/net/tfjs-ops.ts";
import { TfjsOps } from "../policy/net/tfjs-ops.ts";
import type { PathConfig, ProbPath } from "../policy/flow/path.ts";
import { pathFromConfig } from "../policy/flow/path.ts";
import { objectiveOf } from "../policy/flow/objective.ts";
import type { TimeSampler, TimeSamplerConfig } from "../policy/flow/time.ts";
import { timeSamplerFromConfig } from "../policy/flow/time.ts";
import { Rng } from "../policy/random.ts";
import type { Batch } from "./batch.ts";
import type { OptimConfig } from "./optim.ts";
import { DEFAULT_OPTIM } from "./optim.ts";
import { GradPool } from "./parallel/pool.ts";
import { splitInputs } from "./parallel/shard.ts";
import type { LossInputs } from "./loss.ts";
import { createParams, lossDenominator, maskedLoss, withLossTarget } from "./loss.ts";

/** Options of `Trainer`. */
export interface TrainerOptions {
  head: ActionHead;
  seed: number;
  optim?: Partial<OptimConfig>;
  timeSampler?: TimeSamplerConfig;
  path?: PathConfig;
  /** Resume from these raw weights and moments (from a checkpoint's optimizer state). */
  resume?: {
    params: Map<string, NamedArray>;
    m: Map<string, NamedArray>;
    v: Map<string, NamedArray>;
    ema: Map<string, NamedArray>;
    step: number;
  };
  /**
   * Threads computing gradients (default 1: this thread only). With N > 1 each step splits the
   * batch into N shards by sample: this thread takes the first, N - 1 worker threads (each its own
   * tfjs instance on the same backend) the rest, and the gradients are summed before the update.
   * Steps must then go through `trainStepAsync`. See `defaultWorkers()`.
   */
  workers?: number;
}

/** Counts a head's parameters (by name, each once) while counting its FLOPs. */
class ParamCounter extends FlopCounter {
  readonly sizes = new Map<string, number>();
  override param(spec: ParamSpec): Abstract {
    this.sizes.set(spec.name, featureSize(spec.shape));
    return super.param(spec);
  }
}

/** Training FLOPs of one step (3x the forward matMul FLOPs) per trainable parameter. */
export function flopsPerParam(head: ActionHead, batch: number): number {
  const counter = new ParamCounter();
  const flops = headFlops(head, batch);
  const cfg = head.config;
  const obs = Object.fromEntries(cfg.obs.map((f) => [f.name, { shape: [1, ...f.shape], dynamic: true }]));
  head.velocity(
    counter,
    head.encode(counter, obs),
    { shape: [1, cfg.horizon, cfg.actionDim], dynamic: true },
    { shape: [1, 1], dynamic: true },
    { timeTokens: 1 },
  );
  const params = [...counter.sizes.values()].reduce((a, b) => a + b, 0);
  return (3 * (flops.encode + flops.velocity)) / Math.max(params, 1);
}

/**
 * The gradient threads worth using for `head` at `batch` here: 2 when the machine has 2+ cores and
 * a step does at least 1000 training FLOPs per parameter, else 1. Below that a step is dominated by
 * per-kernel and per-parameter costs (optimizer, parameter and gradient traffic) that a second
 * thread does not share. Measured on 2 cores (main-thread CPU time per step, 1 -> 2 workers): the
 * default transformer 1.84x at batch 32 (5500 FLOPs/param), 1.44x at batch 8 (1400); a 64-wide
 * 2-layer transformer 1.3x at batch 32 (1700), 1.24x at 16 (860), 1.0x at 8 (430); the default mlp
 * 0.93x at batch 32 (190).
 */
export function defaultWorkers(head: ActionHead, batch: number): number {
  if (os.availableParallelism() < 2) return 1;
  return flopsPerParam(head, batch) >= 1000 ? 2 : 1;
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

/** What {@link Trainer.prepare} makes of a batch (see {@link LossInputs} for the shapes). */
export type PreparedInputs = Pick<LossInputs, "xt" | "t" | "interval" | "target" | "isPad">;

/** What one training step reports. */
export interface StepResult {
  step: number;
  loss: number;
  gradNorm: number;
  lr: number;
}

/**
 * The network inputs and regression target of a batch for a trainer's head, path and time sampler,
 * drawn by the head's objective (`policy/flow/objective.ts`); shared by the tfjs `Trainer` and the
 * onnxruntime `OrtTrainer`.
 */
export function prepareInputs(
  trainer: Pick<Trainer, "head" | "path" | "timeSampler">,
  batch: Batch,
  rng: Rng,
): PreparedInputs {
  const config = trainer.head.config;
  return objectiveOf(config).prepare(batch, { config, path: trainer.path, timeSampler: trainer.timeSampler }, rng);
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
  private readonly pool: GradPool | undefined;
  private busy = false;

  constructor(opts: TrainerOptions) {
    this.head = opts.head;
    this.seed = opts.seed;
    this.optim = { ...DEFAULT_OPTIM, ...opts.optim };
    this.path = pathFromConfig(opts.path ?? { kind: "linear" });
    this.timeSampler = timeSamplerFromConfig(opts.timeSampler ?? { kind: "pi0" });
    this.ops = new TfjsOps({ seed: opts.seed, weights: opts.resume?.params });
    createParams(this.head, this.ops);
    const cfg = this.head.config;
    const emaWeights = opts.resume?.ema ?? this.ops.snapshot();
    this.emaOps = new TfjsOps({ seed: opts.seed, weights: emaWeights, mode: "frozen" });
    for (const [name, p] of this.ops.variables()) {
      const fromResume = (m: Map<string, NamedArray> | undefined): tf.Tensor =>
        m?.get(name) ? tf.tensor(m.get(name)!.data, p.shape) : tf.zerosLike(p);
      this.m.set(
        name,
        tf.tidy(() => tf.variable(fromResume(opts.resume?.m), false)),
      );
      this.v.set(
        name,
        tf.tidy(() => tf.variable(fromResume(opts.resume?.v), false)),
      );
      this.ema.set(name, this.emaOps.param({ name, shape: p.shape, init: { kind: "zeros" } }) as tf.Variable);
    }
    this.stepCount = opts.resume?.step ?? 0;
    const workers = opts.workers ?? 1;
    if (!Number.isInteger(workers) || workers < 1)
      throw new Error(`Trainer: workers must be an integer >= 1, got ${workers}`);
    if (workers > 1) {
      const layout = [...this.ops.variables()].map(([name, p]) => ({ name, shape: p.shape.slice() }));
      this.pool = new GradPool({ config: cfg, backend: tf.getBackend(), layout, threads: workers - 1 });
    }
  }

  /** Threads computing gradients (this one included). */
  get workers(): number {
    return (this.pool?.threads ?? 0) + 1;
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
   * x = 0, t = 1, target = actions. With prefix training (`rtcMaxDelay` D > 0) each sample draws a
   * prefix length d in [0, D] (0 with probability 1/2, else uniform in 1..D): its first d steps get
   * x_t = x1 (clean) and per-token time 1, so `t` is `[size, horizon]`, and `isPad` (a copy of the
   * batch's) also marks them, leaving them out of the loss.
   */
  prepare(batch: Batch, rng: Rng): PreparedInputs {
    return prepareInputs(this, batch, rng);
  }

  /**
   * The loss inputs of a whole batch, with the objective's loss target under `ops`' weights (for
   * `meanflow` the MeanFlow target and weights, computed before the gradient pass: no gradient
   * flows through them).
   */
  private lossInputs(batch: Batch, inputs: PreparedInputs, ops: TfjsOps): LossInputs {
    return withLossTarget(this.head, ops, { size: batch.size, obs: batch.obs, ...inputs });
  }

  /**
   * One optimisation step on `batch`; randomness from `stepRng(seed, step)` unless `rng` is given.
   * Runs on this thread only: with `workers > 1` use `trainStepAsync`.
   */
  trainStep(batch: Batch, rng?: Rng): StepResult {
    if (this.pool)
      throw new Error(`Trainer: trainStep runs on one thread; with workers = ${this.workers} call trainStepAsync`);
    const step = this.stepCount;
    const inputs = this.lossInputs(batch, this.prepare(batch, rng ?? stepRng(this.seed, step)), this.ops);
    const denominator = lossDenominator(inputs.isPad, this.head.config.actionDim);
    const vars = [...this.ops.variables().values()];
    const [lossValue, normValue] = tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => maskedLoss(this.head, this.ops, inputs, denominator), vars);
      const norm = this.applyGradients(step, (name) => grads[this.ops.variables().get(name)!.name]!);
      return [value.dataSync()[0]!, norm];
    });
    return this.finishStep(step, lossValue, normValue);
  }

  /**
   * One optimisation step, its gradients computed by `workers` threads (see `TrainerOptions`): the
   * same result as `trainStep` up to float rounding, and repeatable for a given worker count.
   * Callers must await each step before starting the next.
   */
  async trainStepAsync(batch: Batch, rng?: Rng): Promise<StepResult> {
    const pool = this.pool;
    if (!pool) return this.trainStep(batch, rng);
    if (this.busy) throw new Error("Trainer: trainStepAsync called while a step is running (await each step)");
    this.busy = true;
    try {
      const step = this.stepCount;
      const inputs = this.lossInputs(batch, this.prepare(batch, rng ?? stepRng(this.seed, step)), this.ops);
      const denominator = lossDenominator(inputs.isPad, this.head.config.actionDim);
      const [own, ...rest] = splitInputs(inputs, this.workers, this.head.config);
      pool.writeParams(this.ops.variables());
      const pending = pool.gradients(rest, denominator);
      const vars = [...this.ops.variables().values()];
      let local: { value: tf.Scalar; grads: tf.NamedTensorMap };
      try {
        local = tf.variableGrads(() => maskedLoss(this.head, this.ops, own!, denominator), vars);
      } catch (err) {
        await pending.catch(() => undefined);
        throw err;
      }
      let remote: Awaited<typeof pending>;
      try {
        remote = await pending;
      } catch (err) {
        tf.dispose([local.value, ...Object.values(local.grads)]);
        throw err;
      }
      const [lossValue, normValue] = tf.tidy(() => {
        let loss = local.value.dataSync()[0]!;
        for (const r of remote) loss += r.loss;
        const norm = this.applyGradients(step, (name) => {
          const p = this.ops.variables().get(name)!;
          let g: tf.Tensor = local.grads[p.name]!;
          for (const r of remote) g = tf.add(g, tf.tensor(r.grad(name), p.shape, "float32"));
          return g;
        });
        return [loss, norm];
      });
      tf.dispose([local.value, ...Object.values(local.grads)]);
      return this.finishStep(step, lossValue, normValue);
    } finally {
      this.busy = false;
    }
  }

  /** Clips the gradients (by name) to the global norm, then AdamW and EMA; returns the norm. Call inside `tf.tidy`. */
  private applyGradients(step: number, gradOf: (name: string) => tf.Tensor): number {
    const o = this.optim;
    const lr = learningRate(o, step);
    const grads = new Map([...this.ops.variables().keys()].map((name) => [name, gradOf(name)]));
    let sumSq: tf.Tensor = tf.scalar(0);
    for (const g of grads.values()) sumSq = tf.add(sumSq, tf.sum(tf.square(g)));
    const norm = tf.sqrt(sumSq);
    const clip = tf.minimum(tf.scalar(1), tf.div(tf.scalar(o.clipNorm), tf.add(norm, tf.scalar(1e-6))));
    const t = step + 1;
    const bc1 = 1 - Math.pow(o.beta1, t);
    const bc2 = 1 - Math.pow(o.beta2, t);
    const emaDecay = Math.min(o.emaDecay, (1 + step) / (10 + step));
    for (const [name, p] of this.ops.variables()) {
      const g = tf.mul(grads.get(name)!, clip);
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
    return norm.dataSync()[0]!;
  }

  private finishStep(step: number, lossValue: number, normValue: number): StepResult {
    if (!Number.isFinite(lossValue)) {
      throw new Error(
        `training diverged at step ${step}: loss is ${lossValue} (gradient norm ${normValue}); lower the learning rate or check the data for NaN`,
      );
    }
    this.stepCount++;
    return { step, loss: lossValue, gradNorm: normValue, lr: learningRate(this.optim, step) };
  }

  /** Loss of the EMA weights on `batch` with fixed randomness (comparable across calls). */
  evalLoss(batch: Batch, seed = 1234): number {
    const inputs = this.lossInputs(batch, this.prepare(batch, new Rng(seed)), this.emaOps);
    const denominator = lossDenominator(inputs.isPad, this.head.config.actionDim);
    return tf.tidy(() => maskedLoss(this.head, this.emaOps, inputs, denominator).dataSync()[0]!);
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
  state(): {
    params: Map<string, NamedArray>;
    m: Map<string, NamedArray>;
    v: Map<string, NamedArray>;
    ema: Map<string, NamedArray>;
  } {
    const copy = (vars: Map<string, tf.Variable>): Map<string, NamedArray> =>
      new Map([...vars].map(([k, v]) => [k, { shape: v.shape.slice(), data: (v.dataSync() as Float32Array).slice() }]));
    return { params: this.ops.snapshot(), m: copy(this.m), v: copy(this.v), ema: copy(this.ema) };
  }

  /** Frees every tensor the trainer holds and stops its worker threads. */
  dispose(): void {
    if (this.pool) void this.pool.close();
    this.ops.dispose();
    this.emaOps.dispose();
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
    this.m.clear();
    this.v.clear();
    this.ema.clear();
  }
}
