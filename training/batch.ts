/**
 * The training batch: what every data source (LeRobot windows, robomimic, toy problems, simulator
 * recordings) hands to the trainer. Arrays are flat, row-major, float32, already normalised and
 * padded to the model's sizes.
 */
import type { Rng } from "../policy/random.ts";

/** One batch of chunk windows. */
export interface Batch {
  /** Number of windows in the batch. */
  size: number;
  /** Normalised observation features by the model's feature name; each `[size, ...featureShape]`. */
  obs: Record<string, Float32Array>;
  /** Normalised action chunks `[size, horizon, actionDim]`; padded steps repeat the last action. */
  actions: Float32Array;
  /** `[size, horizon]`, 1 where the step lies past the episode end (ignored by the loss). */
  isPad: Uint8Array;
  /**
   * Optional fixed noise `[size, horizon, actionDim]` paired with `actions` (ReFlow couplings); when
   * absent the trainer draws fresh N(0, I) noise.
   */
  noise?: Float32Array;
}

/** A source of batches; `next` draws `size` windows using `rng` (seeded, so runs repeat). */
export interface BatchSource {
  next(size: number, rng: Rng): Batch;
  /** The whole split in a fixed order, in batches of `size` (for validation); optional. */
  epoch?(size: number): Iterable<Batch>;
}
