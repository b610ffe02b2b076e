/**
 * The control loop's clock and timer, injected so tests run on a fake clock. Times are seconds on a
 * monotonic clock (`performance.now()` for the real one); never wall-clock time.
 */

/** A monotonic clock plus one-shot timers at absolute times. */
export interface Scheduler {
  /** Monotonic time, seconds. */
  now(): number;
  /** Calls `fn` once at (or as soon as possible after) `timeS`; returns a cancel function. */
  at(timeS: number, fn: () => void): () => void;
}

/** Options of {@link realScheduler}. */
export interface RealSchedulerOptions {
  /**
   * Milliseconds before a deadline at which the coarse `setTimeout` hands over to `setImmediate`
   * polling (timers fire up to ~1 ms late); default 1.5. 0 uses `setTimeout` alone.
   */
  spinMs?: number;
}

/**
 * The real scheduler: `performance.now()`, a `setTimeout` that wakes `spinMs` early, then
 * `setImmediate` polling until the deadline (sub-millisecond lateness while the event loop is free).
 */
export function realScheduler(opts: RealSchedulerOptions = {}): Scheduler {
  const spinMs = opts.spinMs ?? 1.5;
  const now = (): number => performance.now() / 1000;
  return {
    now,
    at(timeS, fn) {
      let cancelled = false;
      let timeout: NodeJS.Timeout | undefined;
      let immediate: NodeJS.Immediate | undefined;
      const poll = (): void => {
        if (cancelled) return;
        if (spinMs <= 0 || now() >= timeS) fn();
        else immediate = setImmediate(poll);
      };
      const waitMs = (timeS - now()) * 1000 - spinMs;
      if (waitMs > 0) timeout = setTimeout(poll, waitMs);
      else immediate = setImmediate(poll);
      return () => {
        cancelled = true;
        clearTimeout(timeout);
        if (immediate) clearImmediate(immediate);
      };
    },
  };
}
