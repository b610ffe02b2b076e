/**
 * How the control loop merges action chunks: the one chunk executor of
 * `policy/runtime/executor.ts` (`sync`, `ensemble`, `blend`, `rtc`, settings as its
 * {@link ChunkMerge}), adapted to a loop whose step counter runs on a clock. {@link LoopExecutor}
 * keeps the executor's step in line with the loop's
 * absolute control step (a missed deadline pops the skipped steps' actions), resamples chunks from
 * the policy's rate to the control rate, places a chunk where the mode wants it, and in `rtc` sizes
 * the committed prefix from the measured inference delay (`sync` commits its `prefixSteps`: the arm
 * holds while a chunk is computed).
 *
 * All actions are raw, `[actionDim]` each, at the control rate.
 */
import { ChunkExecutor, type ChunkMerge } from "../policy/runtime/executor.ts";

/** The policy facts the executor needs. */
export interface MergePolicyShape {
  horizon: number;
  actionDim: number;
  /** The chunk's action rate, Hz (absent: taken to be the control rate). */
  fps?: number;
  /** The largest prefix the policy was trained to continue (0/absent: not prefix-trained). */
  rtcMaxDelay?: number;
}

/** A request the loop sends: the step of its observation and the committed prefix (loop steps). */
export interface LoopTicket {
  /** Absolute control step of the observation. */
  s0: number;
  /** Committed raw actions `[d * actionDim]` (absent when nothing is committed). */
  prefix?: Float32Array;
}

/** Raised when the measured delay makes real-time chunking impossible or unsafe for this policy. */
export class RtcDelayError extends Error {
  override readonly name = "RtcDelayError";
}

/**
 * The loop's action queue over one {@link ChunkExecutor}. Called from the loop's thread only; per
 * control step the loop calls {@link wantsChunk} (then {@link request}) and {@link actionAt}
 * once, with non-decreasing steps; a chunk is handed to {@link merge} whenever it arrives.
 */
export class LoopExecutor {
  /** The mode's name for reports. */
  readonly mode: ChunkMerge["mode"];
  /** Actions per chunk at the control rate (the executor's horizon). */
  readonly horizon: number;
  /** Whether requests carry a committed prefix (`rtc`, `sync` with `prefixSteps`; then the policy's fps must equal the control rate). */
  readonly passesPrefix: boolean;
  private exec: ChunkExecutor;
  /** Loop step of the executor's step 0. */
  private base = 0;
  /** Loop step from which queued actions were carried over by a rebuild, not merged (valid until the next merge). */
  private carriedEnd = Infinity;
  /** `sync`: first loop step not to execute from the current chunk. */
  private syncEnd = -Infinity;

  /** Checks the settings against the policy's shape (RangeError naming the field). */
  constructor(
    private readonly merge_: ChunkMerge,
    private readonly policy: MergePolicyShape,
    private readonly controlRateHz: number,
  ) {
    this.mode = merge_.mode;
    const fps = policy.fps ?? controlRateHz;
    this.horizon = fps === controlRateHz ? policy.horizon : resampledLength(policy.horizon, fps, controlRateHz);
    const prefixSteps = merge_.mode === "sync" || merge_.mode === "rtc" ? merge_.prefixSteps : undefined;
    this.passesPrefix = merge_.mode === "rtc" || (prefixSteps ?? 0) > 0;
    if (this.passesPrefix && fps !== controlRateHz)
      throw new RangeError(
        `merge mode '${merge_.mode}'${merge_.mode === "rtc" ? "" : ` with prefixSteps ${prefixSteps}`} passes a prefix, which needs the policy's fps (${fps}) to equal the control rate (${controlRateHz} Hz)`,
      );
    if (prefixSteps !== undefined) {
      const p = prefixSteps;
      const max = policy.rtcMaxDelay ?? 0;
      // sync: at most horizon - 1 (one executed action per chunk); rtc: half the horizon (c <= s <= H - c)
      const bound = merge_.mode === "rtc" ? Math.floor(this.horizon / 2) : this.horizon - 1;
      const hi = max > 0 ? Math.min(max, bound) : bound;
      if (!Number.isInteger(p) || p < 0 || p > hi)
        throw new RangeError(
          `${merge_.mode}: prefixSteps must be an integer in [0, ${hi}] (horizon ${this.horizon}${max > 0 ? `, rtcMaxDelay ${max}` : ""}), got ${p}`,
        );
    }
    this.exec = this.build(0);
  }

  /** Actions per step. */
  get actionDim(): number {
    return this.policy.actionDim;
  }

  /** The actions committed per request by the current `rtc` executor, max(d, prefixSteps) (0 in other modes). */
  get delaySteps(): number {
    return this.exec.settings.mode === "rtc" ? this.exec.committedSteps : 0;
  }

  /**
   * `rtc`: the largest inference delay d (control steps) that can be committed as a prefix:
   * `min(rtcMaxDelay, floor(horizon / 2))` (`rtcMaxDelay` only when the policy is prefix-trained);
   * Infinity in the other modes.
   */
  get maxDelaySteps(): number {
    if (this.merge_.mode !== "rtc") return Infinity;
    const max = this.policy.rtcMaxDelay ?? 0;
    const half = Math.floor(this.horizon / 2);
    return max > 0 ? Math.min(max, half) : half;
  }

  /** Whether to request a chunk from the observation of loop step `step`. */
  wantsChunk(step: number): boolean {
    this.advance(step);
    return this.exec.wantsChunk();
  }

  /**
   * Opens a request at loop step `step`. In `rtc`, `delaySteps` is the measured delay d: the
   * executor commits c = max(d, prefixSteps) steps (rebuilt when c changed) with s clamped to [c, H - c]; throws
   * {@link RtcDelayError} when 2d > H or d exceeds a prefix-trained policy's `rtcMaxDelay`.
   */
  request(step: number, delaySteps: number): LoopTicket {
    this.advance(step);
    if (this.merge_.mode === "rtc") {
      const H = this.horizon;
      const max = this.policy.rtcMaxDelay ?? 0;
      if (max > 0 && delaySteps > max)
        throw new RtcDelayError(
          `rtc: measured inference delay d = ${delaySteps} control steps exceeds the policy's rtcMaxDelay ${max} (it was trained for prefixes up to ${max}); refusing to execute`,
        );
      if (2 * delaySteps > H)
        throw new RtcDelayError(
          `rtc: measured inference delay d = ${delaySteps} control steps leaves no execution horizon s with d <= s <= H - d (H = ${H}); refusing to execute`,
        );
      const commit = Math.max(delaySteps, this.merge_.prefixSteps ?? 0);
      const want = this.rtcSettings(commit);
      const cur = this.exec.settings;
      if (
        cur.mode !== "rtc" ||
        this.exec.committedSteps !== want.delaySteps ||
        cur.executionHorizon !== want.executionHorizon
      )
        this.rebuild(step, commit);
    }
    const t = this.exec.request();
    return { s0: t.s0 + this.base, ...(t.prefix ? { prefix: t.prefix } : {}) };
  }

  /** Closes the request in flight without a chunk (inference failed); the queue is unchanged. */
  cancel(): void {
    this.exec.cancel();
  }

  /**
   * Merges a chunk `[policy horizon * actionDim]` at the policy's rate for the request `ticket`;
   * `nowStep` is the next loop step to execute (`sync` starts the chunk there). Returns `stale` (and merges nothing)
   * for a chunk requested before the queue was cleared. Throws on a wrong length or NaN/Inf.
   */
  merge(ticket: LoopTicket, chunk: Float32Array, nowStep: number): "merged" | "stale" {
    const fps = this.policy.fps ?? this.controlRateHz;
    const rows =
      fps === this.controlRateHz ? chunk : resampleChunk(chunk, this.policy.actionDim, fps, this.controlRateHz);
    if (ticket.s0 < this.base) {
      this.exec.cancel();
      return "stale";
    }
    if (this.merge_.mode === "sync") {
      // the robot held while the chunk was computed: it executes from its arrival
      this.exec.merge(nowStep - this.base, rows);
      const s = this.exec.settings;
      this.syncEnd = nowStep + (s.mode === "sync" ? s.nActionSteps : this.horizon);
    } else this.exec.merge(ticket.s0 - this.base, rows);
    this.carriedEnd = Infinity;
    return "merged";
  }

  /** The action `[actionDim]` for loop step `step` (popping every earlier one), or undefined: hold. */
  actionAt(step: number): Float32Array | undefined {
    this.advance(step);
    const a = this.exec.next();
    return step >= this.carriedEnd ? undefined : a;
  }

  /** Queued actions for loop steps `>= step`, up to `max`, in step order (to publish a whole trajectory). */
  upcoming(step: number, max: number): Float32Array[] {
    const out: Float32Array[] = [];
    const end = Math.min(this.carriedEnd, this.merge_.mode === "sync" ? this.syncEnd : Infinity);
    for (let t = Math.max(step, this.base + this.exec.step); out.length < max && t < end; t++) {
      const a = this.exec.actionAt(t - this.base);
      if (!a) break;
      out.push(a);
    }
    return out;
  }

  /** Empties the queue from loop step `step` on (reconnect, hold); a request in flight becomes stale. */
  clear(step: number): void {
    this.exec = this.build(this.merge_.mode === "rtc" ? this.delaySteps : 0);
    this.base = step;
    this.carriedEnd = Infinity;
    this.syncEnd = -Infinity;
  }

  private advance(step: number): void {
    if (step < this.base + this.exec.step)
      throw new Error(`LoopExecutor: step ${step} is before the queue's step ${this.base + this.exec.step}`);
    while (this.base + this.exec.step < step) this.exec.next();
  }

  private rtcSettings(d: number): { delaySteps: number; executionHorizon: number } {
    const H = this.horizon;
    const m = this.merge_;
    const want = m.mode === "rtc" ? (m.executionHorizon ?? Math.floor(H / 2)) : 1;
    return { delaySteps: d, executionHorizon: Math.max(1, Math.min(Math.max(want, d), H - d)) };
  }

  private build(delaySteps: number): ChunkExecutor {
    const m = this.merge_;
    const shape = { horizon: this.horizon, actionDim: this.policy.actionDim };
    switch (m.mode) {
      case "sync":
        return new ChunkExecutor({ ...shape, ...m });
      case "ensemble":
        return new ChunkExecutor({ ...shape, mode: "ensemble", ...(m.coeff !== undefined ? { coeff: m.coeff } : {}) });
      case "blend":
        return new ChunkExecutor({
          ...shape,
          mode: "blend",
          ...(m.threshold !== undefined ? { threshold: m.threshold } : {}),
          ...(m.aggregate !== undefined ? { aggregate: m.aggregate } : {}),
          ...(m.smoothing !== undefined ? { smoothing: m.smoothing } : {}),
        });
      case "rtc":
        return new ChunkExecutor({
          ...shape,
          mode: "rtc",
          ...this.rtcSettings(delaySteps),
          ...(m.smoothing !== undefined ? { smoothing: m.smoothing } : {}),
        });
    }
  }

  /**
   * A new `rtc` executor for delay d starting at loop step `step`, carrying the queued actions over
   * (the executor's settings are fixed per instance). The carried actions go in as one chunk padded
   * with the last of them; the padding is never executed ({@link carriedEnd}) and is replaced by the
   * next merge, which covers the same steps. Fewer queued actions than d (the queue runs dry before
   * the chunk arrives anyway) are not carried: padding inside the committed steps would be kept.
   */
  private rebuild(step: number, d: number): void {
    const A = this.policy.actionDim;
    const H = this.horizon;
    const carried: Float32Array[] = [];
    for (let t = step; carried.length < H; t++) {
      if (t >= this.carriedEnd) break;
      const a = this.exec.actionAt(t - this.base);
      if (!a) break;
      carried.push(a);
    }
    const ran = this.exec.recentCommands().map((c) => ({ t: c.t + this.base - step, a: c.a }));
    this.exec = this.build(d);
    this.exec.ranBefore(ran);
    this.base = step;
    this.carriedEnd = Infinity;
    if (carried.length === 0 || carried.length < d) return;
    const chunk = new Float32Array(H * A);
    for (let i = 0; i < H; i++) chunk.set(carried[Math.min(i, carried.length - 1)]!, i * A);
    // merging at s0 = 0 with the queue empty keeps every row; steps past the carried ones are padding
    this.exec.merge(0, chunk, { smooth: false });
    this.carriedEnd = step + carried.length;
  }
}

/** Actions of a chunk of `h` actions at `fromHz` resampled to `toHz` (see {@link resampleChunk}). */
export function resampledLength(h: number, fromHz: number, toHz: number): number {
  return h <= 1 || fromHz === toHz ? h : Math.floor(((h - 1) * toHz) / fromHz + 1e-9) + 1;
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
  const L = resampledLength(H, fromHz, toHz);
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
