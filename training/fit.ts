/**
 * The training loop around a trainer (tfjs `Trainer` or onnxruntime `OrtTrainer`): draws batches, steps, validates and checkpoints on schedule,
 * and reports progress. Used by `actionflow train` and the toy problems.
 */
import type { BatchSource } from "./batch.ts";
import type { StepTrainer } from "./trainer-interface.ts";
import type { StepResult } from "./trainer.ts";
import { stepRng } from "./trainer.ts";

/** Options of `fit`. */
export interface FitOptions {
  /** The tfjs `Trainer` or the onnxruntime `OrtTrainer` (see `training/trainer-interface.ts`). */
  trainer: StepTrainer;
  source: BatchSource;
  /** Stop when the trainer has taken this many steps in total. */
  steps: number;
  batchSize: number;
  seed: number;
  /** Validation loss of the EMA weights, every `valEvery` steps and at the end. */
  validate?: () => number | Promise<number>;
  valEvery?: number;
  /** Called every `checkpointEvery` steps and at the end (awaited: the write completes before training goes on). */
  checkpoint?: (summary: FitSummary) => Promise<void>;
  checkpointEvery?: number;
  /** Called after every step. */
  onStep?: (r: StepResult, summary: FitSummary) => void;
}

/** Steps between the points of a run's training-loss curve. */
export const TRAIN_HISTORY_EVERY = 10;

/** What a run has measured so far. */
export interface FitSummary {
  step: number;
  /** Mean training loss over the last (up to) 50 steps. */
  trainLoss: number;
  valLoss?: number;
  valLossAtStart?: number;
  valHistory: { step: number; valLoss: number }[];
  /** The running training loss every {@link TRAIN_HISTORY_EVERY} steps and at the last (the run's training curve). */
  trainHistory: { step: number; trainLoss: number }[];
  samplesPerSec: number;
  seconds: number;
}

/** Trains until `steps`; returns the final summary. */
export async function fit(opts: FitOptions, resumeSummary?: Partial<FitSummary>): Promise<FitSummary> {
  const { trainer } = opts;
  const recent: number[] = [];
  const summary: FitSummary = {
    step: trainer.step,
    trainLoss: NaN,
    valHistory: resumeSummary?.valHistory ?? [],
    trainHistory: resumeSummary?.trainHistory ?? [],
    valLossAtStart: resumeSummary?.valLossAtStart,
    samplesPerSec: 0,
    seconds: 0,
  };
  if (opts.validate && summary.valLossAtStart === undefined) {
    summary.valLossAtStart = await opts.validate();
    summary.valLoss = summary.valLossAtStart;
    summary.valHistory.push({ step: trainer.step, valLoss: summary.valLossAtStart });
  }
  const start = performance.now();
  let samples = 0;
  while (trainer.step < opts.steps) {
    const rng = stepRng(opts.seed ^ 0x9e37, trainer.step);
    const batch = opts.source.next(opts.batchSize, rng);
    const r = await trainer.trainStepAsync(batch);
    samples += batch.size;
    recent.push(r.loss);
    if (recent.length > 50) recent.shift();
    summary.step = trainer.step;
    summary.trainLoss = recent.reduce((a, b) => a + b, 0) / recent.length;
    summary.seconds = (performance.now() - start) / 1000;
    summary.samplesPerSec = samples / summary.seconds;
    const last = trainer.step === opts.steps;
    if (trainer.step % TRAIN_HISTORY_EVERY === 0 || last)
      summary.trainHistory.push({ step: trainer.step, trainLoss: summary.trainLoss });
    if (opts.validate && opts.valEvery && (trainer.step % opts.valEvery === 0 || last)) {
      summary.valLoss = await opts.validate();
      summary.valHistory.push({ step: trainer.step, valLoss: summary.valLoss });
    }
    opts.onStep?.(r, summary);
    if (opts.checkpoint && ((opts.checkpointEvery && trainer.step % opts.checkpointEvery === 0) || last)) {
      await opts.checkpoint(summary);
    }
  }
  return summary;
}
