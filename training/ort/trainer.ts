/**
 * Training in onnxruntime: the masked loss of the head's objective and its gradients come
 * from the training graph (`buildTrainModel`, the backward pass emitted from the one network
 * description), the update from `AdamW` over Float32Arrays. Same initialisation, batches, per-step
 * randomness (`stepRng`), schedule, clipping and EMA as the tfjs `Trainer`, which stays the
 * reference this trainer is tested against.
 *
 * `trainRun` uses it for `--backend ort` through the `RunTrainer` interface
 * (`training/trainer-interface.ts`): `trainStepAsync`, `evalLossOver`, `state()` and `dispose()`.
 */
import * as ort from "onnxruntime-node";
import type { ActionHead } from "../../policy/net/head.ts";
import { TfjsOps } from "../../policy/net/tfjs-ops.ts";
import type { NamedArray } from "../../policy/net/ops.ts";
import { buildTrainModel, gradOutputName, obsInputName } from "../../policy/onnx/graphs.ts";
import { encodeModel } from "../../policy/onnx/proto.ts";
import { pathFromConfig, type ProbPath } from "../../policy/flow/path.ts";
import type { TimeSampler } from "../../policy/flow/time.ts";
import { timeSamplerFromConfig } from "../../policy/flow/time.ts";
import { Rng } from "../../policy/random.ts";
import type { Batch } from "../batch.ts";
import { createParams, lossDenominator, timeTokensOfInputs, type LossInputs } from "../loss.ts";
import { DEFAULT_OPTIM, type OptimConfig } from "../optim.ts";
import { prepareInputs, stepRng, type StepResult, type TrainerOptions } from "../trainer.ts";
import type { RunTrainer, TrainerState } from "../trainer-interface.ts";
import { AdamW } from "./adamw.ts";

/**
 * Options of `OrtTrainer.create`: the tfjs `Trainer`'s (head, seed, optimiser, time sampler, path,
 * resume state) without its gradient worker threads, plus onnxruntime's own settings.
 */
export interface OrtTrainerOptions extends Omit<TrainerOptions, "workers"> {
  /** onnxruntime intra-op threads (default: onnxruntime's choice, one per core). */
  threads?: number;
  /**
   * Diagnostics: onnxruntime writes a per-node profile (Chrome trace JSON) to a file starting with
   * this prefix; `endProfiling()` ends it and returns the file name.
   */
  profileFilePrefix?: string;
}

/** Initial parameters of `head` exactly as the tfjs `Trainer` creates them for `seed`. */
export function initialParams(head: ActionHead, seed: number): Map<string, NamedArray> {
  const ops = new TfjsOps({ seed });
  try {
    createParams(head, ops);
    return ops.snapshot();
  } finally {
    ops.dispose();
  }
}

/** Trains one action head in onnxruntime. Create with `OrtTrainer.create`; `release()` when done. */
export class OrtTrainer implements RunTrainer {
  readonly optim: OptimConfig;
  readonly path: ProbPath;
  readonly timeSampler: TimeSampler;
  private readonly sessions = new Map<number, ort.InferenceSession>();
  /**
   * Preallocated outputs of the training graph (its loss and every parameter's gradient), which
   * onnxruntime writes in place each run instead of allocating fresh ones (see `bench adamw`: fresh
   * outputs cost as much as the update itself).
   */
  private readonly outputs: { loss: Float32Array; grads: Map<string, Float32Array> };
  private stepCount: number;
  private busy = false;

  private constructor(
    readonly head: ActionHead,
    private readonly seed: number,
    private readonly adam: AdamW,
    private readonly sessionOptions: ort.InferenceSession.SessionOptions,
    opts: OrtTrainerOptions,
  ) {
    this.optim = adam.optim;
    this.path = pathFromConfig(opts.path ?? { kind: "linear" });
    this.timeSampler = timeSamplerFromConfig(opts.timeSampler ?? { kind: "pi0" });
    this.stepCount = opts.resume?.step ?? 0;
    this.outputs = {
      loss: new Float32Array(1),
      grads: new Map([...adam.params].map(([name, p]) => [name, new Float32Array(p.value.length)])),
    };
  }

  /** Builds the trainer: initial (or resumed) parameters and the training graph's session. */
  static async create(opts: OrtTrainerOptions): Promise<OrtTrainer> {
    const optim = { ...DEFAULT_OPTIM, ...opts.optim };
    const values = opts.resume?.params ?? initialParams(opts.head, opts.seed);
    const adam = new AdamW(optim, values, opts.resume);
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: ["cpu"],
      graphOptimizationLevel: "all",
      logSeverityLevel: 3,
      ...(opts.threads !== undefined ? { intraOpNumThreads: opts.threads, interOpNumThreads: 1 } : {}),
      ...(opts.profileFilePrefix !== undefined
        ? { enableProfiling: true, profileFilePrefix: opts.profileFilePrefix }
        : {}),
    };
    const trainer = new OrtTrainer(opts.head, opts.seed, adam, sessionOptions, opts);
    await trainer.session(opts.head.config.rtcMaxDelay > 0 ? opts.head.config.horizon : 1);
    return trainer;
  }

  /** Steps taken so far (the next step's index). */
  get step(): number {
    return this.stepCount;
  }

  /** Number of trainable scalars. */
  parameterCount(): number {
    let n = 0;
    for (const p of this.adam.params.values()) n += p.value.length;
    return n;
  }

  /** The network inputs and target of a batch, exactly as the tfjs `Trainer.prepare` draws them. */
  prepare(batch: Batch, rng: Rng): ReturnType<typeof prepareInputs> {
    return prepareInputs(this, batch, rng);
  }

  /**
   * Loss and every parameter's gradient on `x` with the current raw weights (or `weights`), the
   * loss divided by `denominator` as in `maskedLoss`. The gradients live in the trainer's buffers:
   * valid until the next call.
   */
  async lossAndGradients(
    x: LossInputs,
    denominator: number,
    weights?: ReadonlyMap<string, NamedArray>,
  ): Promise<{ loss: number; grads: Map<string, Float32Array> }> {
    const { horizon: H, actionDim: A } = this.head.config;
    const T = timeTokensOfInputs(x, H);
    const session = await this.session(T);
    const feeds: Record<string, ort.Tensor> = {
      xt: new ort.Tensor("float32", x.xt, [x.size, H, A]),
      t: new ort.Tensor("float32", x.t, [x.size, T]),
      ...(x.interval ? { interval: new ort.Tensor("float32", x.interval, [x.size, T]) } : {}),
      target: new ort.Tensor("float32", x.target, [x.size, H, A]),
      is_pad: new ort.Tensor("float32", Float32Array.from(x.isPad), [x.size, H]),
      denominator: new ort.Tensor("float32", Float32Array.of(denominator), []),
    };
    for (const f of this.head.config.obs) {
      const data = x.obs[f.name];
      if (!data) throw new Error(`batch has no observation feature '${f.name}'`);
      feeds[obsInputName(f.name)] = new ort.Tensor("float32", data, [x.size, ...f.shape]);
    }
    for (const [name, p] of this.adam.params) {
      const w = weights?.get(name);
      feeds[name] = new ort.Tensor("float32", w?.data ?? p.value, p.shape);
    }
    const { loss, grads } = this.outputs;
    const fetches: Record<string, ort.Tensor> = { loss: new ort.Tensor("float32", loss, []) };
    for (const [name, p] of this.adam.params)
      fetches[gradOutputName(name)] = new ort.Tensor("float32", grads.get(name)!, p.shape);
    await session.run(feeds, fetches);
    return { loss: loss[0]!, grads };
  }

  /**
   * One optimisation step on `batch`; randomness from `stepRng(seed, step)` unless `rng` is given.
   * Callers must await each step before starting the next.
   */
  async trainStep(batch: Batch, rng?: Rng): Promise<StepResult> {
    if (this.busy) throw new Error("OrtTrainer: trainStep called while a step is running (await each step)");
    this.busy = true;
    try {
      const step = this.stepCount;
      const inputs = { size: batch.size, obs: batch.obs, ...this.prepare(batch, rng ?? stepRng(this.seed, step)) };
      const denominator = lossDenominator(inputs.isPad, this.head.config.actionDim);
      const { loss, grads } = await this.lossAndGradients(inputs, denominator);
      if (!Number.isFinite(loss)) {
        throw new Error(
          `training diverged at step ${step}: loss is ${loss}; lower the learning rate or check the data for NaN`,
        );
      }
      const { gradNorm, lr } = this.adam.update(step, grads);
      this.stepCount++;
      return { step, loss, gradNorm, lr };
    } finally {
      this.busy = false;
    }
  }

  /** `trainStep` under the name `fit` calls (`RunTrainer`). */
  trainStepAsync(batch: Batch, rng?: Rng): Promise<StepResult> {
    return this.trainStep(batch, rng);
  }

  /** Loss of the EMA weights on `batch` with fixed randomness (as `Trainer.evalLoss`). */
  async evalLoss(batch: Batch, seed = 1234): Promise<number> {
    const inputs = { size: batch.size, obs: batch.obs, ...this.prepare(batch, new Rng(seed)) };
    const denominator = lossDenominator(inputs.isPad, this.head.config.actionDim);
    return (await this.lossAndGradients(inputs, denominator, this.emaWeights())).loss;
  }

  /** Mean EMA loss over batches, sample-weighted, batch i with seed `seed + i` (as `Trainer.evalLossOver`). */
  async evalLossOver(batches: Iterable<Batch>, seed = 1234): Promise<number> {
    const ema = this.emaWeights();
    let sum = 0;
    let n = 0;
    let i = 0;
    for (const b of batches) {
      const inputs = { size: b.size, obs: b.obs, ...this.prepare(b, new Rng(seed + i++)) };
      const denominator = lossDenominator(inputs.isPad, this.head.config.actionDim);
      sum += (await this.lossAndGradients(inputs, denominator, ema)).loss * b.size;
      n += b.size;
    }
    return n === 0 ? NaN : sum / n;
  }

  /** Views of the EMA weights by name (not copies: read them before the next step). */
  private emaWeights(): Map<string, NamedArray> {
    return new Map([...this.adam.params].map(([name, p]) => [name, { shape: p.shape, data: p.ema }]));
  }

  /** The state needed to resume: raw weights, AdamW moments and EMA weights (copies). */
  state(): TrainerState {
    return this.adam.snapshot();
  }

  /** Ends onnxruntime profiling (see `profileFilePrefix`) of every session; returns nothing when not profiling. */
  endProfiling(): void {
    for (const s of this.sessions.values()) s.endProfiling();
  }

  /** `release()` under the name `trainRun` calls (`RunTrainer`). */
  dispose(): Promise<void> {
    return this.release();
  }

  /** Releases the onnxruntime sessions. */
  async release(): Promise<void> {
    for (const s of this.sessions.values()) await s.release();
    this.sessions.clear();
  }

  private async session(timeTokens: number): Promise<ort.InferenceSession> {
    const got = this.sessions.get(timeTokens);
    if (got) return got;
    const { model } = buildTrainModel(this.head, this.head.config.obs, { timeTokens });
    let s: ort.InferenceSession;
    try {
      s = await ort.InferenceSession.create(encodeModel(model), this.sessionOptions);
    } catch (err) {
      throw new Error(
        `training graph (${this.head.config.arch}, t [batch, ${timeTokens}]): onnxruntime could not load it`,
        {
          cause: err,
        },
      );
    }
    this.sessions.set(timeTokens, s);
    return s;
  }
}
