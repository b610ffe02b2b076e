/**
 * Chunk errors in the dataset's units: K sampled chunks `[H, A]` per frame against the demonstrated
 * one, accumulated over frames.
 *
 * - `mse`, `l1`: mean over frames, samples, steps and dims (the expected error of one sample);
 * - `perStepMse` `[H]`, `perJointMse` / `perJointL1` `[A]`: the same means split by step or dim;
 * - `firstActionL1`: mean |error| of step 0 (the action executed first);
 * - `bestOfK.mse`: per frame the smallest chunk MSE of the K samples, averaged over frames, so a
 *   policy that picked another valid mode in some samples is judged by its closest one;
 * - `spread`: the root mean (over frames, steps, dims) of the unbiased variance between the K
 *   samples of a frame, in dataset units (0 for a deterministic policy).
 */

/** The accumulated errors (see the module doc). */
export interface ChunkErrors {
  mse: number;
  l1: number;
  firstActionL1: number;
  bestOfK: { k: number; mse: number };
  spread: number;
  perStepMse: number[];
  perJointMse: number[];
  perJointL1: number[];
  /** Frames accumulated. */
  frames: number;
}

/** Accumulates chunk errors of `horizon` x `actionDim` chunks over frames. */
export class ChunkErrorAccumulator {
  private readonly H: number;
  private readonly A: number;
  private readonly stepSq: Float64Array;
  private readonly jointSq: Float64Array;
  private readonly jointAbs: Float64Array;
  private firstAbs = 0;
  private bestSum = 0;
  private varSum = 0;
  private varCount = 0;
  private chunks = 0;
  private frameCount = 0;
  private k = 0;

  constructor(horizon: number, actionDim: number) {
    this.H = horizon;
    this.A = actionDim;
    this.stepSq = new Float64Array(horizon);
    this.jointSq = new Float64Array(actionDim);
    this.jointAbs = new Float64Array(actionDim);
  }

  /** Adds one frame: `samples` K chunks `[H * A]` against `demo` `[H * A]` (K the same for every frame). */
  add(samples: readonly Float32Array[], demo: Float32Array): void {
    const { H, A } = this;
    const K = samples.length;
    if (K < 1) throw new Error("chunk errors: a frame needs at least one sample");
    if (this.frameCount > 0 && K !== this.k)
      throw new Error(`chunk errors: ${K} samples, earlier frames had ${this.k}`);
    this.k = K;
    if (demo.length !== H * A) throw new Error(`chunk errors: demo has ${demo.length} values, expected ${H}x${A}`);
    let best = Infinity;
    for (const s of samples) {
      if (s.length !== H * A) throw new Error(`chunk errors: a sample has ${s.length} values, expected ${H}x${A}`);
      let sq = 0;
      for (let h = 0; h < H; h++) {
        for (let j = 0; j < A; j++) {
          const e = s[h * A + j]! - demo[h * A + j]!;
          this.stepSq[h] = this.stepSq[h]! + e * e;
          this.jointSq[j] = this.jointSq[j]! + e * e;
          this.jointAbs[j] = this.jointAbs[j]! + Math.abs(e);
          if (h === 0) this.firstAbs += Math.abs(e);
          sq += e * e;
        }
      }
      best = Math.min(best, sq / (H * A));
      this.chunks++;
    }
    this.bestSum += best;
    if (K > 1) {
      for (let i = 0; i < H * A; i++) {
        let m = 0;
        for (const s of samples) m += s[i]!;
        m /= K;
        let v = 0;
        for (const s of samples) v += (s[i]! - m) ** 2;
        this.varSum += v / (K - 1);
      }
    }
    this.varCount += H * A;
    this.frameCount++;
  }

  /** The errors so far; throws when no frame was added. */
  result(): ChunkErrors {
    const { H, A } = this;
    const n = this.chunks;
    if (n === 0) throw new Error("chunk errors: no frames");
    const sumSq = this.stepSq.reduce((a, b) => a + b, 0);
    const sumAbs = this.jointAbs.reduce((a, b) => a + b, 0);
    return {
      mse: sumSq / (n * H * A),
      l1: sumAbs / (n * H * A),
      firstActionL1: this.firstAbs / (n * A),
      bestOfK: { k: this.k, mse: this.bestSum / this.frameCount },
      spread: Math.sqrt(this.varSum / this.varCount),
      perStepMse: Array.from(this.stepSq, (s) => s / (n * A)),
      perJointMse: Array.from(this.jointSq, (s) => s / (n * H)),
      perJointL1: Array.from(this.jointAbs, (s) => s / (n * H)),
      frames: this.frameCount,
    };
  }
}
