/**
 * Quantiles of measured figures (latencies, jitter, step times), one definition for every figure
 * actionflow reports: the **nearest rank**. The q-quantile of n samples is the smallest sample x
 * such that at least q·n samples are <= x, i.e. the sample at index `ceil(q·n) - 1` of the sorted
 * samples (index 0 for q = 0). The median of an even count is the lower of the two middle samples;
 * the 0.99-quantile of fewer than 100 samples is the largest. No interpolation: every figure is a
 * value that was measured.
 *
 * Three forms, for three memory budgets:
 * - {@link quantile} / {@link quantiles} / {@link median}: exact, over an array (copies and sorts).
 * - {@link RecentSamples}: a fixed-capacity ring buffer of the latest samples, exact over them.
 * - {@link StreamingQuantiles}: a whole run in fixed memory, a DDSketch (`@datadog/sketches-js`) read
 *   at the nearest rank; the value returned is within `relativeAccuracy` of the exact one (relative
 *   error), exact at q = 0 and q = 1 (the minimum and maximum are kept exactly).
 *
 * Recording is O(1) and allocation-free for the ring buffer and the sketch; reading a sketch walks
 * its bins (at most `binLimit`), whatever the number of samples.
 */
import { LogCollapsingLowestDenseDDSketch } from "@datadog/sketches-js";

/** The index of the nearest-rank q-quantile among `n` sorted samples (`n > 0`). */
export function nearestRankIndex(n: number, q: number): number {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile: q must be in [0, 1], got ${q}`);
  return Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1));
}

/** Nearest-rank quantiles `qs` of `xs` (one sort); NaN each for no samples. */
export function quantiles(xs: ArrayLike<number>, qs: readonly number[]): number[] {
  const n = xs.length;
  if (n === 0) {
    for (const q of qs) nearestRankIndex(1, q);
    return qs.map(() => Number.NaN);
  }
  const s = Float64Array.from(xs).sort();
  return qs.map((q) => s[nearestRankIndex(n, q)] as number);
}

/** The nearest-rank q-quantile of `xs` (see the module comment); NaN for no samples. */
export function quantile(xs: ArrayLike<number>, q: number): number {
  return quantiles(xs, [q])[0] as number;
}

/** The nearest-rank median of `xs` (the lower middle sample of an even count); NaN for no samples. */
export function median(xs: ArrayLike<number>): number {
  return quantile(xs, 0.5);
}

/** p50 and p99 (nearest rank) of durations in ms; NaN each for no samples. */
export function percentiles(ms: ArrayLike<number>): { p50Ms: number; p99Ms: number } {
  const [p50Ms, p99Ms] = quantiles(ms, [0.5, 0.99]) as [number, number];
  return { p50Ms, p99Ms };
}

/**
 * The latest `capacity` samples in a ring buffer (fixed memory; `push` is O(1) and allocates
 * nothing). Quantiles are exact over the samples held.
 */
export class RecentSamples {
  private readonly buf: Float64Array;
  private readonly scratch: Float64Array;
  private next = 0;
  private held = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`RecentSamples: capacity must be a positive integer, got ${capacity}`);
    this.buf = new Float64Array(capacity);
    this.scratch = new Float64Array(capacity);
  }

  /** Samples held (at most `capacity`). */
  get length(): number {
    return this.held;
  }

  /** Records `x`, replacing the oldest sample once full. */
  push(x: number): void {
    this.buf[this.next] = x;
    this.next = (this.next + 1) % this.capacity;
    if (this.held < this.capacity) this.held++;
  }

  /** The samples held, oldest first (a copy). */
  values(): Float64Array {
    const out = new Float64Array(this.held);
    const start = (this.next - this.held + this.capacity) % this.capacity;
    for (let i = 0; i < this.held; i++) out[i] = this.buf[(start + i) % this.capacity] as number;
    return out;
  }

  /** Nearest-rank quantiles of the samples held (NaN each when empty); sorts a preallocated copy. */
  quantiles(qs: readonly number[]): number[] {
    const n = this.held;
    if (n === 0) return quantiles([], qs);
    const s = this.scratch.subarray(0, n);
    s.set(this.buf.subarray(0, n));
    s.sort();
    return qs.map((q) => s[nearestRankIndex(n, q)] as number);
  }

  /** The largest sample held (NaN when empty). */
  max(): number {
    if (this.held === 0) return Number.NaN;
    let m = -Infinity;
    for (let i = 0; i < this.held; i++) m = Math.max(m, this.buf[i] as number);
    return m;
  }

  /** Forgets every sample. */
  clear(): void {
    this.next = 0;
    this.held = 0;
  }
}

/** Options of {@link StreamingQuantiles}. */
export interface StreamingQuantilesOptions {
  /** Relative error bound of a quantile (default 0.005: 0.5%). */
  relativeAccuracy?: number;
  /** Most bins kept; beyond it the smallest values' bins collapse (default 2048). */
  binLimit?: number;
}

/**
 * Quantiles of a whole run in fixed memory: every sample is counted, none is stored. A quantile is
 * the nearest-rank one to within `relativeAccuracy` (relative), exact at q = 0 and q = 1; the count,
 * sum, minimum and maximum are exact.
 */
export class StreamingQuantiles {
  private readonly sketch: LogCollapsingLowestDenseDDSketch;
  readonly relativeAccuracy: number;

  constructor(opts: StreamingQuantilesOptions = {}) {
    this.relativeAccuracy = opts.relativeAccuracy ?? 0.005;
    this.sketch = new LogCollapsingLowestDenseDDSketch({
      relativeAccuracy: this.relativeAccuracy,
      binLimit: opts.binLimit ?? 2048,
    });
  }

  /** Records `x` (finite; a non-finite value throws a RangeError naming it). */
  add(x: number): void {
    if (!Number.isFinite(x)) throw new RangeError(`StreamingQuantiles.add: ${x} is not a finite number`);
    this.sketch.accept(x);
  }

  /** Samples recorded. */
  get count(): number {
    return this.sketch.count;
  }

  /** Sum of the samples (0 when empty). */
  get sum(): number {
    return this.sketch.sum;
  }

  /** The smallest sample (NaN when empty). */
  get min(): number {
    return this.count === 0 ? Number.NaN : this.sketch.min;
  }

  /** The largest sample (NaN when empty). */
  get max(): number {
    return this.count === 0 ? Number.NaN : this.sketch.max;
  }

  /** The mean (NaN when empty). */
  get mean(): number {
    return this.count === 0 ? Number.NaN : this.sketch.sum / this.count;
  }

  /** The nearest-rank q-quantile to within the relative accuracy (NaN when empty). */
  quantile(q: number): number {
    const n = this.count;
    if (n === 0) return quantile([], q);
    const i = nearestRankIndex(n, q);
    if (i === 0) return this.min;
    if (i === n - 1) return this.max;
    // DDSketch reads the sample at index floor(q' (n - 1)): aim at the middle of index i.
    const v = this.sketch.getValueAtQuantile(Math.min(1, (i + 0.5) / (n - 1)));
    return Math.min(this.max, Math.max(this.min, v));
  }
}
