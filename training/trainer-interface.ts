/**
 * What a run needs of a trainer, whichever runtime computes the gradients: the tfjs `Trainer`
 * (`training/trainer.ts`) and the onnxruntime `OrtTrainer` (`training/ort/trainer.ts`) both fit it.
 * `fit` drives `step`/`trainStepAsync`, validation calls `evalLossOver`, checkpoints write `state()`
 * and a resume hands the same state back to the trainer's constructor/`create`.
 */
import type { NamedArray } from "../policy/net/ops.ts";
import type { Rng } from "../policy/random.ts";
import type { Batch } from "./batch.ts";
import type { StepResult } from "./trainer.ts";

/**
 * A trainer's resumable state, in the one format the run's checkpoints write: raw weights, AdamW
 * moments and EMA weights by parameter name (the EMA weights become the checkpoint's model).
 */
export interface TrainerState {
  params: Map<string, NamedArray>;
  m: Map<string, NamedArray>;
  v: Map<string, NamedArray>;
  ema: Map<string, NamedArray>;
}

/** The trainer `fit` drives: one caller, each step awaited before the next. */
export interface StepTrainer {
  /** Steps taken so far (the next step's index). */
  readonly step: number;
  /** One optimisation step on `batch` (randomness from `stepRng(seed, step)` unless `rng` is given). */
  trainStepAsync(batch: Batch, rng?: Rng): Promise<StepResult>;
}

/** The trainer a run (`trainRun`) uses: {@link StepTrainer} plus validation, parameter count, checkpoint state and release. */
export interface RunTrainer extends StepTrainer {
  /** Number of trainable scalars. */
  parameterCount(): number;
  /** Sample-weighted mean loss of the EMA weights over `batches`, batch i with fixed randomness `seed + i`. */
  evalLossOver(batches: Iterable<Batch>, seed?: number): number | Promise<number>;
  /** Copies of the resumable state, written by `saveRunCheckpoint`. */
  state(): TrainerState;
  /** Frees what the trainer holds (tensors, worker threads, sessions); the trainer is unusable afterwards. */
  dispose(): void | Promise<void>;
}
