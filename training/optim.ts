/**
 * The optimisation settings of a run (AdamW with warmup + cosine decay, gradient clipping, EMA):
 * their schema, type and pi0-modelled defaults. Stored in run.json; applied by `Trainer`.
 */
import { z } from "zod";

/** The optimiser settings; every field required (a config file gives `OptimSchema.partial()`). */
export const OptimSchema = z.strictObject({
  /** Peak learning rate. */
  lr: z.number().positive(),
  /** Linear warmup steps from 0 to `lr`. */
  warmupSteps: z.number().int().nonnegative(),
  /** Total steps of the cosine decay (normally the run's step count). */
  decaySteps: z.number().int().positive(),
  /** Learning rate at the end of the cosine, as a fraction of `lr`. */
  minLrRatio: z.number().min(0).max(1),
  beta1: z.number().min(0).lt(1),
  beta2: z.number().min(0).lt(1),
  eps: z.number().positive(),
  /** Decoupled weight decay (AdamW), applied to matrices only. */
  weightDecay: z.number().nonnegative(),
  /** Global gradient-norm clip. */
  clipNorm: z.number().positive(),
  /** EMA decay of the inference weights (pi0: 0.99); warmed up as min(decay, (1+s)/(10+s)). */
  emaDecay: z.number().min(0).lt(1),
});
/** The optimisation settings of a run (see {@link OptimSchema}). */
export type OptimConfig = z.infer<typeof OptimSchema>;

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
