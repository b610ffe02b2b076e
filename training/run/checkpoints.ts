/**
 * A run's checkpoints as the run sees them: the trainer state it keeps in `train_state.json`, where a
 * resume starts from, and writing one after a step. The folder layout is `policy/checkpoint/checkpoint.ts`.
 */
import { join } from "node:path";
import { z } from "zod";
import type { NormalizationSpec } from "../../policy/checkpoint/checkpoint.ts";
import type { LossSettings } from "../../policy/flow/objective.ts";
import { loadCheckpoint, resolveCheckpointDir, saveCheckpoint } from "../../policy/checkpoint/checkpoint.ts";
import { parseValue } from "../../policy/io/json.ts";
import type { HeadConfig } from "../../policy/net/config.ts";
import type { FitSummary } from "../fit.ts";
import type { TrainerOptions } from "../trainer.ts";
import type { RunTrainer } from "../trainer-interface.ts";
import { stable } from "./settings.ts";

/** A loss that was never measured is written as NaN, which JSON stores as `null`: it reads back as NaN. */
const LossSchema = z
  .number()
  .nullable()
  .transform((v) => v ?? NaN);

/** What a run's checkpoints keep in `train_state.json`. */
export const TrainStateSchema = z.object({
  step: z.number().int().nonnegative(),
  seed: z.number().int(),
  trainLoss: LossSchema,
  valLoss: LossSchema,
  valLossAtStart: LossSchema,
  valHistory: z.array(z.object({ step: z.number().int().nonnegative(), valLoss: LossSchema })),
  /** Runs saved before the training curve was kept have none. */
  trainHistory: z.array(z.object({ step: z.number().int().nonnegative(), trainLoss: LossSchema })).default([]),
  savedAt: z.string(),
  /** What computed this invocation's steps (`ort`, or a tfjs backend); checkpoints saved before it was kept have none. */
  backend: z.string().optional(),
});
/** See {@link TrainStateSchema}. */
export type TrainState = z.infer<typeof TrainStateSchema>;

/** Where a resumed run starts: its latest checkpoint, the trainer's resume state and the stored counters. */
export interface ResumePoint {
  /** The checkpoint folder. */
  dir: string;
  resume: NonNullable<TrainerOptions["resume"]>;
  trainState: TrainState;
}

/**
 * The latest checkpoint of the run in `out` with its optimizer state, or undefined when the run has none
 * yet. Throws naming the checkpoint (and the file and field inside it) when it cannot be loaded or its
 * head config differs from `head`.
 */
export async function loadResumePoint(out: string, head: HeadConfig): Promise<ResumePoint | undefined> {
  const dir = await resolveCheckpointDir(out);
  if (!dir) return undefined;
  let ckpt: Awaited<ReturnType<typeof loadCheckpoint>>;
  try {
    ckpt = await loadCheckpoint(dir, { withOptimizer: "yes" });
  } catch (err) {
    throw new Error(`${dir}: cannot load the checkpoint to resume from: ${(err as Error).message}`, { cause: err });
  }
  if (stable(ckpt.config) !== stable(head)) throw new Error(`${dir}: checkpoint config differs from run.json's head`);
  const opt = ckpt.optimizer!;
  const trainState = parseValue(opt.trainState, TrainStateSchema, join(dir, "train_state.json"));
  return {
    dir,
    resume: { params: opt.params, m: opt.m, v: opt.v, ema: ckpt.weights, step: opt.trainState.step },
    trainState,
  };
}

/** What {@link saveRunCheckpoint} writes besides the trainer's state. */
export interface RunCheckpointOptions {
  out: string;
  head: HeadConfig;
  /** The time sampler and path the head trains with, kept in the checkpoint's `config.json`. */
  loss: LossSettings;
  normalization: NormalizationSpec;
  seed: number;
  /** Checkpoints kept. */
  keep: number;
  /** What computes the steps (`ort`, or a tfjs backend), kept in `train_state.json`. */
  backend: string;
}

/** Writes the checkpoint of `trainer`'s current step (EMA weights, optimizer, train state); resolves to its folder. */
export async function saveRunCheckpoint(trainer: RunTrainer, s: FitSummary, o: RunCheckpointOptions): Promise<string> {
  const st = trainer.state();
  const trainState: TrainState = {
    step: trainer.step,
    seed: o.seed,
    trainLoss: s.trainLoss,
    valLoss: s.valLoss ?? NaN,
    valLossAtStart: s.valLossAtStart ?? NaN,
    valHistory: s.valHistory,
    trainHistory: s.trainHistory,
    savedAt: new Date().toISOString(),
    backend: o.backend,
  };
  return saveCheckpoint(
    o.out,
    trainer.step,
    {
      config: o.head,
      loss: o.loss,
      weights: st.ema,
      normalization: o.normalization,
      optimizer: { params: st.params, m: st.m, v: st.v, trainState },
    },
    { keep: o.keep },
  );
}
