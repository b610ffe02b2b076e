/**
 * How the control loop merges action chunks into its queue, indexed by absolute control step. The
 * loop depends only on {@link ActionMerger}; the chunk executor of `policy/runtime/executor.ts`
 * (`sync`, `ensemble`, `blend`, `rtc`) plugs in through an adapter. Two small mergers live here:
 * {@link SyncMerger} (openpi's broker: execute n actions, then infer) and {@link LatestMerger}
 * (asynchronous, the newest chunk wins: LeRobot's `latest_only`).
 *
 * All actions are raw, `[actionDim]` each, at the control rate (the loop resamples chunks first).
 */

/** Where a chunk belongs in absolute control steps. */
export interface ChunkPlacement {
  /** Control step the chunk's first action is for (the step of its observation). */
  startStep: number;
  /** Control step at which the chunk arrived; actions for earlier steps are in the past. */
  nowStep: number;
}

/** The merge logic behind the loop's action queue. Called from the loop's thread only. */
export interface ActionMerger {
  /** Mode name for reports (`sync`, `latest`, `ensemble`, `blend`, `rtc`, ...). */
  readonly mode: string;
  /** Adds a chunk `[len * actionDim]`. */
  add(chunk: Float32Array, at: ChunkPlacement): void;
  /** The action `[actionDim]` to execute at `step`, or undefined; forgets earlier steps. */
  actionAt(step: number): Float32Array | undefined;
  /** Queued actions for steps `>= step`, up to `max`, in step order (to publish a whole trajectory). */
  upcoming(step: number, max: number): Float32Array[];
  /** Whether to request a new chunk at `step`, given the expected inference delay in control steps. */
  wantsChunk(step: number, delaySteps: number): boolean;
  /**
   * The committed actions `[d * actionDim]` for steps `step .. step + d - 1` that the next chunk
   * must continue (real-time chunking), or undefined for mergers without a prefix.
   */
  prefix?(step: number, delaySteps: number): Float32Array | undefined;
  /** Empties the queue (after a reconnect, a dropped chunk, an e-stop). */
  clear(): void;
}

/** A queue of actions by absolute step shared by the mergers below. */
class StepQueue {
  readonly q = new Map<number, Float32Array>();
  constructor(readonly actionDim: number) {}
  put(chunk: Float32Array, from: number, firstIndex: number, count: number): void {
    const A = this.actionDim;
    for (let i = firstIndex; i < firstIndex + count; i++) this.q.set(from + i, chunk.slice(i * A, (i + 1) * A));
  }
  take(step: number): Float32Array | undefined {
    for (const k of this.q.keys()) if (k < step) this.q.delete(k);
    return this.q.get(step);
  }
  upcoming(step: number, max: number): Float32Array[] {
    const out: Float32Array[] = [];
    for (let s = step; out.length < max; s++) {
      const a = this.q.get(s);
      if (!a) break;
      out.push(a);
    }
    return out;
  }
  depth(step: number): number {
    let n = 0;
    while (this.q.has(step + n)) n++;
    return n;
  }
}

/**
 * openpi's synchronous broker: infer, execute the chunk's first `executeSteps` actions from the step
 * the chunk arrived (the robot held still meanwhile), then infer again once the queue is empty.
 */
export class SyncMerger implements ActionMerger {
  readonly mode = "sync";
  private readonly queue: StepQueue;
  constructor(private readonly opts: { actionDim: number; executeSteps?: number }) {
    this.queue = new StepQueue(opts.actionDim);
  }
  add(chunk: Float32Array, at: ChunkPlacement): void {
    const len = Math.floor(chunk.length / this.opts.actionDim);
    this.queue.q.clear();
    this.queue.put(chunk, at.nowStep, 0, Math.min(len, this.opts.executeSteps ?? len));
  }
  actionAt(step: number): Float32Array | undefined {
    return this.queue.take(step);
  }
  upcoming(step: number, max: number): Float32Array[] {
    return this.queue.upcoming(step, max);
  }
  wantsChunk(step: number): boolean {
    return this.queue.depth(step) === 0;
  }
  clear(): void {
    this.queue.q.clear();
  }
}

/**
 * Asynchronous, newest chunk wins (LeRobot's `latest_only`): a chunk's action i is for step
 * `startStep + i`; steps already past are dropped; a new chunk is requested while at most
 * `delaySteps + marginSteps` actions remain, so the queue does not run dry while inference is faster
 * than the chunk.
 */
export class LatestMerger implements ActionMerger {
  readonly mode = "latest";
  private readonly queue: StepQueue;
  constructor(private readonly opts: { actionDim: number; marginSteps?: number }) {
    this.queue = new StepQueue(opts.actionDim);
  }
  add(chunk: Float32Array, at: ChunkPlacement): void {
    const len = Math.floor(chunk.length / this.opts.actionDim);
    const first = Math.max(0, at.nowStep - at.startStep);
    for (const k of [...this.queue.q.keys()]) if (k >= at.startStep + first) this.queue.q.delete(k);
    if (first < len) this.queue.put(chunk, at.startStep, first, len - first);
  }
  actionAt(step: number): Float32Array | undefined {
    return this.queue.take(step);
  }
  upcoming(step: number, max: number): Float32Array[] {
    return this.queue.upcoming(step, max);
  }
  wantsChunk(step: number, delaySteps: number): boolean {
    return this.queue.depth(step) <= delaySteps + (this.opts.marginSteps ?? 1);
  }
  clear(): void {
    this.queue.q.clear();
  }
}

/**
 * Resamples a chunk from the policy's rate to the control rate by linear interpolation in time:
 * input `[H * A]` spaced `1 / fromHz` s, output `[L * A]` spaced `1 / toHz` s with
 * `L = floor((H - 1) * toHz / fromHz) + 1` (no extrapolation past the last action).
 */
export function resampleChunk(chunk: Float32Array, actionDim: number, fromHz: number, toHz: number): Float32Array {
  const H = Math.floor(chunk.length / actionDim);
  if (H * actionDim !== chunk.length)
    throw new RangeError(`resampleChunk: ${chunk.length} values is not a multiple of actionDim ${actionDim}`);
  if (fromHz === toHz || H <= 1) return chunk.slice();
  const L = Math.floor(((H - 1) * toHz) / fromHz + 1e-9) + 1;
  const out = new Float32Array(L * actionDim);
  for (let j = 0; j < L; j++) {
    const u = (j * fromHz) / toHz;
    const i0 = Math.min(H - 1, Math.floor(u + 1e-9));
    const i1 = Math.min(H - 1, i0 + 1);
    const f = Math.max(0, u - i0);
    for (let a = 0; a < actionDim; a++) {
      const x0 = chunk[i0 * actionDim + a] as number;
      const x1 = chunk[i1 * actionDim + a] as number;
      out[j * actionDim + a] = x0 + f * (x1 - x0);
    }
  }
  return out;
}
