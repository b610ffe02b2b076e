/**
 * The training objectives as one strategy each: how a batch becomes the network's inputs, what the
 * loss regresses the network output onto, and how a chunk is sampled from a trained head. The tfjs
 * trainer, the onnxruntime training graph, the tfjs sampler and the ONNX sample graph all call the
 * objective named by the head's config (`objectiveOf`) instead of branching on its name.
 *
 * - `flow`: conditional flow matching. The head is a velocity field v(x_t, t); the target is the
 *   path's u_t; sampling integrates dx/dt = v with an ODE solver on a grid from 0 (noise) to 1 (data).
 * - `regression`: the same network evaluated at x = 0, t = 1, regressed onto the action chunk; one
 *   evaluation, no noise.
 * - `meanflow` (Geng et al. 2025, in our convention t = 0 noise, t = 1 data): the head predicts the
 *   average velocity u(z_t, t, r) = 1/(r - t) int_t^r v(z_s, s) ds over a step from the state's time t
 *   forward to r >= t, with the step length h = r - t as its second time input (`interval`). The
 *   MeanFlow identity u = v - (t - r) du/dt, du/dt = v . du/dz + du/dt (a Jacobian-vector product
 *   with tangents (v, 1) in (z, t) at fixed r, so h has tangent -1), gives the target under
 *   stop-gradient, with adaptive per-sample weights 1 / (mean squared error + c). Half the training
 *   examples have r = t (flow matching); the others step to r = 1 or to r uniform in [t, 1]. Sampling jumps
 *   z_{t'} = z_t + (t' - t) u(z_t, t, t') on any grid; one step is z_1 = z_0 + u(z_0, 0, 1).
 */
import { z } from "zod";
import type { HeadConfig, Objective as ObjectiveName } from "../net/config.ts";
import type { Ops } from "../net/ops.ts";
import type { Rng } from "../random.ts";
import type { ProbPath } from "./path.ts";
import { PathSchema, pathFromConfig, samplePath } from "./path.ts";
import type { OdeSolver, SolverName, VectorSpace } from "./solvers.ts";
import { integrate } from "./solvers.ts";
import type { TimeSampler } from "./time.ts";
import { TimeSamplerSchema, timeSamplerFromConfig } from "./time.ts";

/**
 * The loss settings a head was trained with, beside its objective: the time sampler and the
 * probability path (stored in a checkpoint's `config.json` as `loss`). Unknown keys are refused.
 */
export const LossSettingsSchema = z.strictObject({ timeSampler: TimeSamplerSchema, path: PathSchema });
/** See {@link LossSettingsSchema}. */
export type LossSettings = z.infer<typeof LossSettingsSchema>;

/** The trainer's defaults: pi0's time sampler and the linear path. */
export const DEFAULT_LOSS_SETTINGS: Readonly<LossSettings> = { timeSampler: { kind: "pi0" }, path: { kind: "linear" } };

/** The {@link PrepareContext} of a head trained with `loss` (its path and time sampler built). */
export function prepareContext(
  config: PrepareContext["config"],
  loss: LossSettings = DEFAULT_LOSS_SETTINGS,
): PrepareContext {
  return { config, path: pathFromConfig(loss.path), timeSampler: timeSamplerFromConfig(loss.timeSampler) };
}

/**
 * A batch as the objectives see it; flat, row-major, float32. `actions` `[size, horizon, actionDim]`
 * normalised and padded; `noise` (optional, else drawn from the rng) the same shape; `isPad`
 * `[size, horizon]`, 1 past the episode end.
 */
export interface ObjectiveBatch {
  size: number;
  actions: Float32Array;
  noise?: Float32Array;
  isPad: Uint8Array;
}

/** What `Objective.prepare` needs besides the batch. */
export interface PrepareContext {
  config: Pick<HeadConfig, "horizon" | "actionDim" | "rtcMaxDelay">;
  path: ProbPath;
  timeSampler: TimeSampler;
}

/**
 * The network inputs of a batch and its fixed regression target; flat, row-major, float32. `xt`,
 * `target` `[size, horizon, actionDim]`; `t` `[size, 1]` (one time per sample) or
 * `[size, horizon]` (per-token: prefix training); `interval` (average-velocity heads only) the
 * step length r - t, shaped like `t`; `isPad` `[size, horizon]`, 1 where a step is left out of the
 * loss (past the episode end, or a clean prefix step). For `meanflow` `target` is the conditional
 * velocity v, from which `Objective.lossTarget` forms the loss's target.
 */
export interface TrainingInputs {
  xt: Float32Array;
  t: Float32Array;
  interval?: Float32Array;
  target: Float32Array;
  isPad: Uint8Array;
}

/** The primitives `Objective.lossTarget` computes in: a subset of `DiffOps`. */
export type TargetOps<T> = Pick<Ops<T>, "add" | "sub" | "mul" | "scale" | "reshape" | "constant"> & {
  /** Sums x over `axes`, keeping each as a size-1 axis. */
  sumAxes(x: T, axes: number[]): T;
  /** Elementwise a / b with broadcasting. */
  div(a: T, b: T): T;
};

/**
 * The network's value at the loss inputs and its directional derivative (Jacobian-vector
 * product) along tangents of `xt` `[batch, horizon, actionDim]`, `t` and `interval`
 * (`[batch, timeTokens]`), each given as a tensor of its input's shape. Supplied by the backend:
 * double backward in tfjs, forward-mode tangents on the autodiff tape.
 */
export type NetworkJvp<T> = (tangents: { xt: T; t: T; interval: T }) => { value: T; jvp: T };

/** The loss inputs `Objective.lossTarget` reads, as tensors of the backend. */
export interface TargetInputs<T> {
  /** `[batch, horizon, actionDim]` */
  xt: T;
  /** `[batch, timeTokens]` */
  t: T;
  /** `[batch, timeTokens]`; present for average-velocity heads. */
  interval?: T;
  /** The prepared target `[batch, horizon, actionDim]`. */
  target: T;
  /** `[batch, horizon, 1]`, 1 on steps in the loss, 0 on padded (or prefix) steps. */
  keep: T;
  /** Time tokens of `t` and `interval` (1 or the horizon). */
  timeTokens: number;
  horizon: number;
  actionDim: number;
}

/** The target of the loss (no gradient flows through it) and optional per-sample weights `[batch, 1, 1]`. */
export interface LossTarget<T> {
  target: T;
  weight?: T;
}

/** What a sampler gives an objective to sample with. */
export interface SampleSpec<T> {
  ops: Ops<T>;
  space: VectorSpace<T>;
  /**
   * The head at state `x` `[batch, horizon, actionDim]` and time `t`; average-velocity heads also
   * take the step length `interval` (default 0: the instantaneous velocity).
   */
  net(x: T, t: number, interval?: number): T;
  /** The initial noise `[batch, horizon, actionDim]` (asked for only by objectives that sample from noise). */
  noise(): T;
  /** Zeros `[batch or 1, horizon, actionDim]`, the input of a regression head. */
  zeros(): T;
  /** Times from 0 to 1; one step per interval. */
  grid: readonly number[];
  solver: OdeSolver;
  /** Applied to the state after each step ending at time `t` (e.g. inpainting a prefix); default: none. */
  afterStep?(x: T, t: number): T;
  /** Called with the state after each step and its time. */
  onStep?(x: T, t: number): void;
}

/** One training objective (see the module comment). */
export interface Objective {
  readonly name: ObjectiveName;
  /** True when the head takes the step length (`interval`) as a second time input. */
  readonly intervalInput: boolean;
  /** True when sampling starts from noise (the sample graph has a `noise` input). */
  readonly noiseInput: boolean;
  /**
   * True when `lossTarget` needs the network's Jacobian-vector product: the backend must then
   * keep `xt`, `t` and `interval` differentiable.
   */
  readonly targetNeedsJvp: boolean;
  /** True when the head can be trained with a clean action prefix (`rtcMaxDelay` > 0). */
  readonly prefixTraining: boolean;
  /** Draws the network inputs and target of a batch (all randomness from `rng`). */
  prepare(batch: ObjectiveBatch, ctx: PrepareContext, rng: Rng): TrainingInputs;
  /**
   * The inputs and fixed target of the loss measured on an exported velocity graph (offline
   * evaluation: no gradient, no Jacobian-vector product, no prefix): `flow` and `regression` as
   * `prepare` without a prefix (`ctx.config.rtcMaxDelay` is not read); `meanflow` the flow-matching
   * loss of its instantaneous velocity (interval 0, what the velocity graph evaluates). `t` is per
   * token, `[size, horizon]`. All randomness from `rng`: the batch's times, then its noise.
   */
  evaluationInputs(batch: ObjectiveBatch, ctx: PrepareContext, rng: Rng): TrainingInputs;
  /** The loss's target (and weights) given the prepared target and, if needed, the network's JVP. */
  lossTarget<T>(ops: TargetOps<T>, x: TargetInputs<T>, jvp: NetworkJvp<T>): LossTarget<T>;
  /** Samples a normalised chunk `[batch, horizon, actionDim]`; `nfe` counts head evaluations. */
  sample<T>(spec: SampleSpec<T>): { x: T; nfe: number };
  /** The solver label recorded with an export (`none` when there is no integration). */
  solverLabel(solver: SolverName): SolverName | "none" | "meanflow";
  /** Head evaluations per chunk for `steps` steps of `solver`. */
  nfe(steps: number, solver: OdeSolver): number;
}

/** Share of MeanFlow training samples with r != t (FACTS: about 25-75%). */
export const MEANFLOW_INTERVAL_SHARE = 0.5;
/** The c of MeanFlow's adaptive weight 1 / (mean squared error + c) (power p = 1). */
export const MEANFLOW_WEIGHT_EPS = 1e-3;

/** x_t and the conditional velocity at one time per sample (shared by its tokens), no prefix. */
function pathInputs(
  batch: ObjectiveBatch,
  ctx: PrepareContext,
  rng: Rng,
  t: Float32Array,
): { xt: Float32Array; ut: Float32Array } {
  const { horizon: H, actionDim: A } = ctx.config;
  const n = batch.size * H;
  const tokenTime = new Float32Array(n);
  for (let b = 0; b < batch.size; b++) tokenTime.fill(t[b]!, b * H, (b + 1) * H);
  const x0 = batch.noise ?? rng.normalArray(n * A);
  if (x0.length !== n * A) throw new Error(`batch.noise has ${x0.length} values, expected ${n * A}`);
  return samplePath(ctx.path, x0, batch.actions, tokenTime, { dim: A });
}

/** Flow matching without a prefix: one time per sample from the sampler, x_t and u_t on the path; `t` per token. */
function flowMatchingInputs(batch: ObjectiveBatch, ctx: PrepareContext, rng: Rng): TrainingInputs {
  checkBatch(batch, ctx);
  const H = ctx.config.horizon;
  const t = new Float32Array(batch.size);
  for (let b = 0; b < batch.size; b++) t[b] = ctx.timeSampler.sample(rng);
  const { xt, ut } = pathInputs(batch, ctx, rng, t);
  const tokenTime = new Float32Array(batch.size * H);
  for (let b = 0; b < batch.size; b++) tokenTime.fill(t[b]!, b * H, (b + 1) * H);
  return { xt, t: tokenTime, target: ut, isPad: batch.isPad };
}

function checkBatch(batch: ObjectiveBatch, ctx: PrepareContext): void {
  const { horizon: H, actionDim: A } = ctx.config;
  const n = batch.size * H * A;
  if (batch.actions.length !== n)
    throw new Error(`batch.actions has ${batch.actions.length} values, expected ${batch.size} x ${H} x ${A} = ${n}`);
}

/** The prepared target as it is (flow, regression). */
function fixedTarget<T>(_ops: TargetOps<T>, x: TargetInputs<T>): LossTarget<T> {
  return { target: x.target };
}

/** Conditional flow matching. */
export const flowObjective: Objective = {
  name: "flow",
  intervalInput: false,
  noiseInput: true,
  targetNeedsJvp: false,
  prefixTraining: true,
  prepare(batch, ctx, rng) {
    checkBatch(batch, ctx);
    const { horizon: H, actionDim: A, rtcMaxDelay: D } = ctx.config;
    const t = new Float32Array(batch.size);
    for (let b = 0; b < batch.size; b++) t[b] = ctx.timeSampler.sample(rng);
    if (D === 0) {
      const { xt, ut } = pathInputs(batch, ctx, rng, t);
      return { xt, t, target: ut, isPad: batch.isPad };
    }
    // Prefix training: sample b's first d steps are clean (per-token time 1) and out of the loss.
    const n = batch.size * H;
    const tokenTime = new Float32Array(n);
    for (let b = 0; b < batch.size; b++) tokenTime.fill(t[b]!, b * H, (b + 1) * H);
    const x0 = batch.noise ?? rng.normalArray(n * A);
    if (x0.length !== n * A) throw new Error(`batch.noise has ${x0.length} values, expected ${n * A}`);
    const isPad = batch.isPad.slice();
    const prefixLen = new Int32Array(batch.size);
    for (let b = 0; b < batch.size; b++) {
      // Half the examples without a prefix: under d ~ U[0, D] chunk step i is trained only when d <= i,
      // (i + 1) / (D + 1) of the time, and the first steps (what sync and small delays execute) starve.
      const d = rng.uniform() < 0.5 ? 0 : 1 + rng.int(D);
      prefixLen[b] = d;
      tokenTime.fill(1, b * H, b * H + d);
      isPad.fill(1, b * H, b * H + d);
    }
    const { xt, ut } = samplePath(ctx.path, x0, batch.actions, tokenTime, { dim: A });
    // Exactly clean, whatever the path's value at t = 1 (sigma_min keeps a little noise there).
    for (let b = 0; b < batch.size; b++) {
      const from = b * H * A;
      xt.set(batch.actions.subarray(from, from + prefixLen[b]! * A), from);
    }
    return { xt, t: tokenTime, target: ut, isPad };
  },
  evaluationInputs: flowMatchingInputs,
  lossTarget: fixedTarget,
  sample(spec) {
    let x = spec.noise();
    let nfe = 0;
    for (let i = 0; i + 1 < spec.grid.length; i++) {
      const t1 = spec.grid[i + 1]!;
      const r = integrate(spec.solver, spec.space, (xt, t) => spec.net(xt, t), x, [spec.grid[i]!, t1]);
      nfe += r.nfe;
      x = spec.afterStep ? spec.afterStep(r.x, t1) : r.x;
      spec.onStep?.(x, t1);
    }
    return { x, nfe };
  },
  solverLabel: (solver) => solver,
  nfe: (steps, solver) => steps * solver.evalsPerStep,
};

/** Direct regression of the chunk: the head at x = 0, t = 1. */
export const regressionObjective: Objective = {
  name: "regression",
  intervalInput: false,
  noiseInput: false,
  targetNeedsJvp: false,
  prefixTraining: false,
  prepare(batch, ctx) {
    checkBatch(batch, ctx);
    const { horizon: H, actionDim: A } = ctx.config;
    const t = new Float32Array(batch.size).fill(1);
    return { xt: new Float32Array(batch.size * H * A), t, target: batch.actions, isPad: batch.isPad };
  },
  evaluationInputs(batch, ctx) {
    checkBatch(batch, ctx);
    const { horizon: H, actionDim: A } = ctx.config;
    const t = new Float32Array(batch.size * H).fill(1);
    return { xt: new Float32Array(batch.size * H * A), t, target: batch.actions, isPad: batch.isPad };
  },
  lossTarget: fixedTarget,
  sample(spec) {
    const x = spec.net(spec.zeros(), 1);
    return { x: spec.afterStep ? spec.afterStep(x, 1) : x, nfe: 1 };
  },
  solverLabel: () => "none",
  nfe: () => 1,
};

/** MeanFlow: average velocity over a step, trained with the MeanFlow identity. */
export const meanflowObjective: Objective = {
  name: "meanflow",
  intervalInput: true,
  noiseInput: true,
  targetNeedsJvp: true,
  prefixTraining: false,
  prepare(batch, ctx, rng) {
    checkBatch(batch, ctx);
    const t = new Float32Array(batch.size);
    const interval = new Float32Array(batch.size);
    for (let b = 0; b < batch.size; b++) {
      t[b] = ctx.timeSampler.sample(rng);
      if (rng.uniform() < MEANFLOW_INTERVAL_SHARE) {
        // The step's end r > t: half the time the data end (r = 1, the jump a one-step sampler
        // makes from t = 0), else uniform in [t, 1]. Two sorted draws of a time sampler that
        // favours noise (pi0's) would almost never give the long steps few-step sampling takes.
        const r = rng.uniform() < 0.5 ? 1 : t[b]! + (1 - t[b]!) * rng.uniform();
        interval[b] = r - t[b]!;
      }
    }
    const { xt, ut } = pathInputs(batch, ctx, rng, t);
    return { xt, t, interval, target: ut, isPad: batch.isPad };
  },
  evaluationInputs: flowMatchingInputs,
  lossTarget(ops, x, jvp) {
    if (x.interval === undefined) throw new Error("meanflow loss: the loss inputs have no interval");
    // Tangents (v, 1) in (z, t) at fixed r: the interval h = r - t moves with -1.
    const ones = ops.add(ops.scale(x.t, 0), ops.constant(Float32Array.of(1), [1, 1]));
    const { value, jvp: dudt } = jvp({ xt: x.target, t: ones, interval: ops.scale(ones, -1) });
    // u_tgt = v - (t - r) du/dt = v + h du/dt.
    const h = ops.reshape(x.interval, [-1, x.timeTokens, 1]);
    const target = ops.add(x.target, ops.mul(h, dudt));
    // Adaptive weight 1 / (mean over the sample's kept values of (u - u_tgt)^2 + c).
    const d = ops.sub(value, target);
    const sq = ops.sumAxes(ops.mul(ops.mul(d, d), x.keep), [1, 2]);
    const count = ops.scale(ops.sumAxes(x.keep, [1, 2]), x.actionDim);
    const mean = ops.div(sq, ops.add(count, ops.constant(Float32Array.of(1e-6), [1, 1, 1])));
    const weight = ops.div(
      ops.constant(Float32Array.of(1), [1, 1, 1]),
      ops.add(mean, ops.constant(Float32Array.of(MEANFLOW_WEIGHT_EPS), [1, 1, 1])),
    );
    return { target, weight };
  },
  sample(spec) {
    let x = spec.noise();
    for (let i = 0; i + 1 < spec.grid.length; i++) {
      const t0 = spec.grid[i]!;
      const t1 = spec.grid[i + 1]!;
      x = spec.space.axpy(x, t1 - t0, spec.net(x, t0, t1 - t0));
      if (spec.afterStep) x = spec.afterStep(x, t1);
      spec.onStep?.(x, t1);
    }
    return { x, nfe: spec.grid.length - 1 };
  },
  solverLabel: () => "meanflow",
  nfe: (steps) => steps,
};

const OBJECTIVES: Record<ObjectiveName, Objective> = {
  flow: flowObjective,
  regression: regressionObjective,
  meanflow: meanflowObjective,
};

/** The objective a head was configured with. */
export function objectiveOf(config: Pick<HeadConfig, "objective">): Objective {
  return OBJECTIVES[config.objective];
}
