/**
 * The chunk executor: pure, clock-free bookkeeping between a {@link ChunkPolicy} and whatever runs
 * actions (closed-loop evaluation in `sim/`, the real-time loop in `bridge/`). Actions sit in a
 * queue indexed by **absolute control step** (0 = the episode's first action). The driver asks
 * {@link ChunkExecutor.wantsChunk} whether to request a chunk now, takes a {@link ChunkTicket}
 * (the step `s0` whose observation the chunk is computed from, and the committed prefix to send),
 * hands the arriving chunk to {@link ChunkExecutor.merge} whenever it arrives (the same step in
 * simulation, some steps later on a robot) and pops one action per control step with
 * {@link ChunkExecutor.next}. The executor never reads a clock and never awaits: time is the step
 * counter the driver advances.
 *
 * How chunks merge is one vocabulary, {@link ChunkMerge}, for every driver (`sim eval`, `sim run`,
 * `serve --robot`, `bench loop`); {@link chunkMergeFrom} maps the command-line flags to it.
 * `prefixSteps` p means the same in every mode that takes it: each request commits at least p of
 * the queued actions as the next chunk's prefix (the policy keeps them and continues them).
 *
 * Merge modes (`mode`):
 * - `sync`: execute `nActionSteps` actions of each chunk, then request the next (openpi's
 *   ActionChunkBroker, LeRobot's `n_action_steps`). The arm holds while a chunk is computed, so
 *   nothing executes during inference: each request commits exactly p actions, the previous chunk's
 *   next p planned ones (prefix carrying); the new chunk then replaces the queue from `s0` on.
 * - `ensemble`: ACT temporal ensembling: request every step; the action for step t is the average
 *   of every prediction for t with weights `w_i = exp(-coeff * i)` normalised, i = 0 the oldest
 *   (LeRobot's ACTTemporalEnsembler, coeff 0.01).
 * - `blend`: LeRobot's async client: request when `queued / horizon <= threshold` (queued = actions
 *   for steps >= the current step); an overlapping action is merged by `aggregate(old, new)`;
 *   predictions for steps already executed are dropped.
 * - `rtc`: real-time chunking by prefix: with inference delay d steps and execution horizon s, a
 *   chunk is requested every s steps and its first c = max(d, p) steps (the actions that execute
 *   while it is computed, or p of them when that is more) are committed: sent as the prefix, and
 *   kept from the queue when the chunk arrives; the chunk's later steps replace the queue
 *   (c <= s <= horizon - c). When nothing is queued after the prefix (the first chunk, or a queue
 *   that ran dry), the robot holds until the chunk arrives, and the chunk resumes from its first
 *   action after the prefix then, as `sync` does.
 *
 * At most one request is in flight. A chunk of the wrong length or holding NaN/Inf is refused
 * (the queue is left as it was, the request is closed); when no action is queued for the current
 * step {@link ChunkExecutor.next} returns `undefined` and the driver holds.
 */
import type { ChunkPolicy } from "../chunk-policy.ts";
import { SMOOTHING_ANCHOR_STEPS, smoothOnto } from "./smooth.ts";

/**
 * Default smoothing weight λ of `sync`, `blend` and `rtc` (`smooth.ts`; in control steps): each new
 * chunk is bent onto the commands before it, so a chunk boundary is as smooth as a chunk's inside.
 */
export const DEFAULT_SMOOTHING = 30;

/** The merge modes (see the module doc). */
export const MERGE_MODES = ["sync", "ensemble", "blend", "rtc"] as const;

/** How `blend` merges an old and a new prediction for the same step (LeRobot's aggregate functions). */
export type Aggregate = "weighted_average" | "latest_only" | "average" | "conservative";

/** The aggregate functions of `blend`. */
export const AGGREGATES: readonly Aggregate[] = ["weighted_average", "latest_only", "average", "conservative"];

/**
 * How chunks are merged into the action queue: the one merge vocabulary of closed-loop evaluation,
 * the real-time loop and the benches (see the module doc for each mode). Settings left out take
 * their defaults; the inference delay d of `rtc` is not a setting but what the driver measures (or
 * simulates), given to the executor as {@link ChunkExecutorOptions.delaySteps}.
 */
export type ChunkMerge =
  | {
      mode: "sync";
      /** Actions executed from each chunk before the next request, 1..horizon (default: horizon - prefixSteps). */
      nActionSteps?: number;
      /**
       * Actions each request commits as the next chunk's prefix: the previous chunk's next planned
       * ones (default 0; `nActionSteps + prefixSteps <= horizon`).
       */
      prefixSteps?: number;
      /** Smoothing weight λ of each new chunk onto the commands before it (`smooth.ts`; default {@link DEFAULT_SMOOTHING}, 0 = off). */
      smoothing?: number;
    }
  | {
      mode: "ensemble";
      /** Weight decay coefficient of ACT's temporal ensembling (default 0.01; 0 = plain mean). */
      coeff?: number;
    }
  | {
      mode: "blend";
      /** Request when `queued / horizon <= threshold` (default 0.5, in [0, 1]). */
      threshold?: number;
      /** How overlapping predictions merge (default `weighted_average`: 0.3 old + 0.7 new). */
      aggregate?: Aggregate;
      /** Smoothing weight λ of the merged actions onto the commands before them (`smooth.ts`; default {@link DEFAULT_SMOOTHING}, 0 = off). */
      smoothing?: number;
    }
  | {
      mode: "rtc";
      /**
       * Execution horizon s: control steps between requests (c <= s <= horizon - c, s >= 1, with c
       * the actions committed; default floor(horizon / 2)).
       */
      executionHorizon?: number;
      /**
       * Commit at least this many actions per request (default 0: the inference delay d); each
       * request commits c = max(d, prefixSteps), at most horizon / 2. A longer prefix pins down which
       * way a multimodal policy goes.
       */
      prefixSteps?: number;
      /** Smoothing weight λ of each new chunk onto the commands before it (`smooth.ts`; default {@link DEFAULT_SMOOTHING}, 0 = off). */
      smoothing?: number;
    };

/**
 * The merge flags of the commands (`--merge`, `--n-action-steps`, `--prefix-steps`, `--aggregate`),
 * as {@link chunkMergeFrom} reads them.
 */
export interface MergeFlags {
  merge: ChunkMerge["mode"];
  /** `sync`: actions executed per chunk; `rtc`: the execution horizon s. */
  nActionSteps?: number;
  /** `sync` and `rtc`: the least actions committed per request as the next chunk's prefix. */
  prefixSteps?: number;
  /** `blend`: how overlapping actions merge. */
  aggregate?: Aggregate;
  /** `sync`, `blend` and `rtc`: smoothing weight λ of each new chunk onto the commands before it (0 = off). */
  smoothing?: number;
}

/**
 * The merge settings of the flags, for every command that executes chunks (`sim eval`, `sim run`,
 * `serve --robot`). `defaults.nActionSteps` applies when the mode takes the flag and it was not
 * given. A flag the mode does not take is refused naming it.
 */
export function chunkMergeFrom(o: MergeFlags, defaults: { nActionSteps?: number } = {}): ChunkMerge {
  if (!(MERGE_MODES as readonly string[]).includes(o.merge))
    throw new Error(`--merge: unknown mode '${String(o.merge)}' (valid: ${MERGE_MODES.join(", ")})`);
  const takesSteps = o.merge === "sync" || o.merge === "rtc";
  if (o.aggregate !== undefined && o.merge !== "blend")
    throw new Error(`--aggregate applies to --merge blend, not ${o.merge}`);
  if (o.nActionSteps !== undefined && !takesSteps)
    throw new Error(`--n-action-steps applies to --merge sync or rtc, not ${o.merge}`);
  if (o.prefixSteps !== undefined && !takesSteps)
    throw new Error(`--prefix-steps applies to --merge sync or rtc, not ${o.merge}`);
  if (o.smoothing !== undefined && o.merge === "ensemble")
    throw new Error(`--smoothing applies to --merge sync, blend or rtc, not ensemble`);
  const n = o.nActionSteps ?? defaults.nActionSteps;
  const smooth = o.smoothing !== undefined ? { smoothing: o.smoothing } : {};
  const prefix = { ...(o.prefixSteps !== undefined ? { prefixSteps: o.prefixSteps } : {}), ...smooth };
  switch (o.merge) {
    case "sync":
      return { mode: "sync", ...(n !== undefined ? { nActionSteps: n } : {}), ...prefix };
    case "ensemble":
      return { mode: "ensemble" };
    case "blend":
      return { mode: "blend", ...(o.aggregate !== undefined ? { aggregate: o.aggregate } : {}), ...smooth };
    case "rtc":
      return { mode: "rtc", ...(n !== undefined ? { executionHorizon: n } : {}), ...prefix };
  }
}

/**
 * The flags that give `merge` with {@link chunkMergeFrom}, for a command line that reproduces a run
 * (settings without a flag, `blend`'s threshold and `ensemble`'s coeff, are left out).
 */
export function mergeFlagsOf(merge: ChunkMerge): string[] {
  const out = ["--merge", merge.mode];
  const flag = (name: string, v: number | string | undefined): void => {
    if (v !== undefined) out.push(name, String(v));
  };
  switch (merge.mode) {
    case "sync":
      flag("--n-action-steps", merge.nActionSteps);
      flag("--prefix-steps", merge.prefixSteps);
      flag("--smoothing", merge.smoothing);
      break;
    case "rtc":
      flag("--n-action-steps", merge.executionHorizon);
      flag("--prefix-steps", merge.prefixSteps);
      flag("--smoothing", merge.smoothing);
      break;
    case "blend":
      flag("--aggregate", merge.aggregate);
      flag("--smoothing", merge.smoothing);
      break;
    case "ensemble":
      break;
  }
  return out;
}

/** Options of {@link ChunkExecutor}: the chunk's shape, the merge mode and (`rtc`) the inference delay. */
export type ChunkExecutorOptions = {
  /** Actions per chunk, H. */
  horizon: number;
  /** Values per action, A. */
  actionDim: number;
  /**
   * `rtc`: the inference delay d in control steps, the actions that execute while a chunk is
   * computed (default 0); each request commits max(d, prefixSteps). The other modes ignore it
   * (`sync` holds the arm during inference).
   */
  delaySteps?: number;
} & ChunkMerge;

/** A merge mode with its defaults filled in, as the executor runs it. */
export type ResolvedMerge = Required<ChunkMerge>;

/** A request the driver should send: the observation of step `s0` plus the committed prefix. */
export interface ChunkTicket {
  /** Absolute step whose observation the chunk is computed from; the chunk's action i is for step s0 + i. */
  s0: number;
  /** Committed raw actions for steps s0 .. s0 + prefixLen - 1, `[prefixLen * actionDim]` (absent when prefixLen is 0). */
  prefix?: Float32Array;
  /** Leading committed steps (0 when nothing is committed). */
  prefixLen: number;
  /**
   * `rtc`: nothing was queued after the prefix (step s0 + prefixLen), so the robot holds there until
   * the chunk arrives; the chunk then resumes where the robot stopped (see {@link ChunkExecutor.merge}).
   */
  holdsAfterPrefix?: boolean;
}

/**
 * Queue bookkeeping for one episode; build a new executor (or call `reset`) per episode. Not
 * re-entrant: one driver calls it, each call completes synchronously. Per control step the driver
 * calls `wantsChunk` (then `request`, and later `merge` or `cancel`) and `next` exactly once.
 */
export class ChunkExecutor {
  /** Actions per chunk, H. */
  readonly horizon: number;
  /** Values per action, A. */
  readonly actionDim: number;
  /** The merge mode and its settings, defaults filled in. */
  readonly settings: Readonly<ResolvedMerge>;
  /** Actions each request commits as the prefix: `sync` prefixSteps, `rtc` max(delaySteps, prefixSteps), else 0. */
  readonly committedSteps: number;

  /** Predictions per absolute step (several only in `ensemble`). */
  private readonly queue = new Map<number, Float32Array[]>();
  private current = 0;
  private pending: ChunkTicket | undefined;
  /** `s0` of the last request (-1: none yet). */
  private lastRequest = -1;
  /** `sync`: first step no longer executable from the current chunk. */
  private execEnd = 0;
  /** The last (up to 3) commands `next` gave, oldest first, with their steps (a hold repeats the last): the smoothing's anchor. */
  private recent: { t: number; a: Float32Array }[] = [];

  /** Checks the settings (RangeError naming the field and value) and starts at step 0 with an empty queue. */
  constructor(opts: ChunkExecutorOptions) {
    const { horizon: H, actionDim: A } = opts;
    if (!Number.isInteger(H) || H < 1)
      throw new RangeError(`chunk executor: horizon must be a positive integer, got ${H}`);
    if (!Number.isInteger(A) || A < 1)
      throw new RangeError(`chunk executor: actionDim must be a positive integer, got ${A}`);
    this.horizon = H;
    this.actionDim = A;
    const v = validate(opts);
    this.settings = v.settings;
    this.committedSteps = v.committed;
  }

  /** The chunk executor of a policy's shape; `delaySteps` as in {@link ChunkExecutorOptions}. */
  static forPolicy(
    policy: Pick<ChunkPolicy, "horizon" | "actionDim" | "nActionSteps">,
    merge: ChunkMerge,
    opts: { delaySteps?: number } = {},
  ): ChunkExecutor {
    return new ChunkExecutor({
      horizon: policy.horizon,
      actionDim: policy.actionDim,
      ...opts,
      ...withPolicySteps(policy, merge),
    });
  }

  /** The absolute step whose action {@link ChunkExecutor.next} returns next. */
  get step(): number {
    return this.current;
  }

  /** Whether a request is in flight (taken by `request`, not yet merged or cancelled). */
  get inFlight(): boolean {
    return this.pending !== undefined;
  }

  /** Actions queued for the current step and later. */
  get queued(): number {
    let n = 0;
    for (const t of this.queue.keys()) if (t >= this.current) n++;
    return n;
  }

  /** Whether the driver should request a chunk from the current step's observation now. */
  wantsChunk(): boolean {
    if (this.pending) return false;
    const t = this.current;
    const s = this.settings;
    switch (s.mode) {
      case "sync":
        return t >= this.execEnd || !this.queue.has(t);
      case "ensemble":
        return this.lastRequest < t;
      case "blend":
        return this.queued / this.horizon <= s.threshold;
      case "rtc":
        return this.lastRequest < 0 || t >= this.lastRequest + s.executionHorizon || !this.queue.has(t);
    }
  }

  /**
   * Opens a request at the current step: the ticket names `s0` and the committed prefix (`sync`:
   * the next `prefixSteps` planned actions; `rtc`: the next `delaySteps`; as many as are queued
   * contiguously). Throws while another request is in flight.
   */
  request(): ChunkTicket {
    if (this.pending)
      throw new Error(
        `chunk executor: a request from step ${this.pending.s0} is still in flight (step ${this.current})`,
      );
    const s = this.settings;
    const want = this.committedSteps;
    const A = this.actionDim;
    const s0 = this.current;
    let len = 0;
    while (len < want && this.queue.has(s0 + len)) len++;
    const ticket: ChunkTicket = { s0, prefixLen: len };
    if (s.mode === "rtc" && !this.queue.has(s0 + len)) ticket.holdsAfterPrefix = true;
    if (len > 0) {
      const prefix = new Float32Array(len * A);
      for (let i = 0; i < len; i++) prefix.set(this.actionAt(s0 + i)!, i * A);
      ticket.prefix = prefix;
    }
    this.pending = ticket;
    this.lastRequest = s0;
    return ticket;
  }

  /** Closes the in-flight request without a chunk (the policy failed); the queue is unchanged. */
  cancel(): void {
    this.pending = undefined;
  }

  /**
   * Merges a chunk `[horizon * actionDim]` computed from the observation of step `s0` (its action i
   * is for step s0 + i; in `rtc`, when the ticket `holdsAfterPrefix` and the chunk arrives after the
   * prefix ran out, action `prefixLen` is for the current step). Predictions for steps before the
   * current one are dropped; `smooth: false` merges the chunk as it is whatever the smoothing
   * (actions carried over, not sampled). Throws, leaving
   * the queue as it was and closing the request, on a wrong length or a non-finite value.
   */
  merge(s0: number, chunk: Float32Array, opts: { smooth?: boolean } = {}): void {
    const H = this.horizon;
    const A = this.actionDim;
    const ticket = this.pending?.s0 === s0 ? this.pending : undefined;
    this.pending = undefined;
    if (!Number.isInteger(s0) || s0 < 0) throw new RangeError(`chunk executor: s0 must be a step >= 0, got ${s0}`);
    if (chunk.length !== H * A) {
      throw new Error(
        `chunk executor: the chunk has ${chunk.length} values, expected horizon*actionDim = ${H}*${A} = ${H * A}`,
      );
    }
    for (let i = 0; i < chunk.length; i++) {
      if (!Number.isFinite(chunk[i]!)) {
        throw new Error(
          `chunk executor: the chunk from step ${s0} has a non-finite action ${chunk[i]} at chunk step ${Math.floor(i / A)}, dim ${i % A}; refused`,
        );
      }
    }
    const s = this.settings;
    // rtc: when the robot held after the prefix (nothing else was queued) and the chunk arrives after
    // the prefix ran out, its action prefixLen (the first one continuing the prefix) runs now, not
    // the one planned for this step: the robot stood still meanwhile, so nothing of the chunk is skipped.
    const start = s.mode === "rtc" && ticket?.holdsAfterPrefix ? Math.max(s0, this.current - ticket.prefixLen) : s0;
    const row = (i: number): Float32Array => chunk.slice(i * A, (i + 1) * A);
    const from = Math.max(start, this.current);
    switch (s.mode) {
      case "sync":
        for (const t of [...this.queue.keys()]) if (t >= s0) this.queue.delete(t);
        for (let t = from; t < s0 + H; t++) this.queue.set(t, [row(t - s0)]);
        this.execEnd = s0 + s.nActionSteps;
        // The committed prefix is the policy's copy of what was planned: kept, not smoothed.
        if (opts.smooth !== false) this.smoothFrom(Math.max(from, s0 + (ticket?.prefixLen ?? 0)), s0 + H);
        break;
      case "ensemble":
        for (let t = from; t < s0 + H; t++) {
          const list = this.queue.get(t);
          if (list) list.push(row(t - s0));
          else this.queue.set(t, [row(t - s0)]);
        }
        break;
      case "blend":
        for (let t = from; t < s0 + H; t++) {
          const old = this.queue.get(t)?.[0];
          const fresh = row(t - s0);
          this.queue.set(t, [old ? aggregate(s.aggregate, old, fresh) : fresh]);
        }
        if (opts.smooth !== false) this.smoothFrom(from, s0 + H);
        break;
      case "rtc": {
        const committed = s0 + this.committedSteps;
        let first = start + H;
        for (let t = from; t < start + H; t++) {
          if (t < committed && this.queue.has(t)) continue;
          this.queue.set(t, [row(t - start)]);
          first = Math.min(first, t);
        }
        for (const t of [...this.queue.keys()]) if (t >= start + H) this.queue.delete(t);
        if (opts.smooth !== false) this.smoothFrom(first, start + H);
        break;
      }
    }
    this.prune();
  }

  /** The action `[actionDim]` for the current step, advancing to the next step; `undefined` (hold) when none is queued. */
  next(): Float32Array | undefined {
    const t = this.current;
    const a = this.settings.mode === "sync" && t >= this.execEnd ? undefined : this.actionAt(t);
    // A hold keeps the last command: that is what the arm runs at step t.
    const ran = a ?? this.recent[this.recent.length - 1]?.a;
    if (ran) {
      this.recent.push({ t, a: ran });
      if (this.recent.length > SMOOTHING_ANCHOR_STEPS) this.recent.shift();
    }
    this.current = t + 1;
    this.prune();
    return a;
  }

  /** The last (up to 3) commands `next` gave, oldest first, with their steps (a hold repeats the last command). */
  recentCommands(): { t: number; a: Float32Array }[] {
    return this.recent.map((r) => ({ t: r.t, a: r.a.slice() }));
  }

  /**
   * Commands that ran before this executor took over (steps relative to it, so below the current
   * one), oldest first: the next chunk is smoothed onto them as onto its own (a rebuilt executor).
   */
  ranBefore(commands: readonly { t: number; a: Float32Array }[]): void {
    this.recent = commands
      .filter((c) => c.t < this.current)
      .slice(-SMOOTHING_ANCHOR_STEPS)
      .map((c) => ({ t: c.t, a: c.a.slice() }));
  }

  /** Empties the queue and restarts at step 0 (a new episode); an in-flight request is forgotten. */
  reset(): void {
    this.queue.clear();
    this.current = 0;
    this.pending = undefined;
    this.lastRequest = -1;
    this.execEnd = 0;
    this.recent = [];
  }

  /**
   * `sync`, `blend` and `rtc` with smoothing: smooths the newly merged actions of steps [first, end) onto
   * the (up to 3) commands before `first`, queued (a kept prefix) or already run.
   */
  private smoothFrom(first: number, end: number): void {
    const s = this.settings;
    const lambda = s.mode === "ensemble" ? 0 : s.smoothing;
    if (lambda === 0 || end <= first) return;
    const A = this.actionDim;
    const anchor: Float32Array[] = [];
    for (let t = first - 1; t >= first - SMOOTHING_ANCHOR_STEPS; t--) {
      const a = this.queue.get(t)?.[0] ?? this.recent.find((r) => r.t === t)?.a;
      if (!a) break;
      anchor.unshift(a);
    }
    const m = end - first;
    const x = new Float32Array(m * A);
    for (let i = 0; i < m; i++) x.set(this.queue.get(first + i)![0]!, i * A);
    const flat = new Float32Array(anchor.length * A);
    anchor.forEach((a, i) => flat.set(a, i * A));
    const y = smoothOnto(x, flat, A, lambda);
    for (let i = 0; i < m; i++) this.queue.set(first + i, [y.slice(i * A, (i + 1) * A)]);
  }

  /** The action queued for step `t` (ensembled in `ensemble` mode), or undefined. */
  actionAt(t: number): Float32Array | undefined {
    const list = this.queue.get(t);
    if (!list || list.length === 0) return undefined;
    if (list.length === 1) return list[0]!.slice();
    const s = this.settings;
    const coeff = s.mode === "ensemble" ? s.coeff : 0;
    const out = new Float64Array(this.actionDim);
    let total = 0;
    for (const [i, a] of list.entries()) {
      const w = Math.exp(-coeff * i);
      total += w;
      for (let j = 0; j < out.length; j++) out[j]! += w * a[j]!;
    }
    return Float32Array.from(out, (v) => v / total);
  }

  private prune(): void {
    for (const t of [...this.queue.keys()]) if (t < this.current) this.queue.delete(t);
  }
}

const BLEND: Record<Aggregate, number> = { weighted_average: 0.7, latest_only: 1, average: 0.5, conservative: 0.3 };

/** LeRobot's aggregate functions: `(1 - w) * old + w * new` with w the new prediction's weight. */
function aggregate(kind: Aggregate, old: Float32Array, fresh: Float32Array): Float32Array {
  const w = BLEND[kind];
  if (w === 1) return fresh;
  const out = new Float32Array(old.length);
  for (let j = 0; j < old.length; j++) out[j] = (1 - w) * old[j]! + w * fresh[j]!;
  return out;
}

/**
 * `merge` with sync's `nActionSteps` filled in from the policy's own recommendation
 * (`ChunkPolicy.nActionSteps`) when the merge leaves it open (kept within the horizon less the prefix).
 */
export function withPolicySteps(policy: Pick<ChunkPolicy, "horizon" | "nActionSteps">, merge: ChunkMerge): ChunkMerge {
  if (merge.mode !== "sync" || merge.nActionSteps !== undefined || policy.nActionSteps === undefined) return merge;
  const room = Math.max(1, policy.horizon - (merge.prefixSteps ?? 0));
  return { ...merge, nActionSteps: Math.min(policy.nActionSteps, room) };
}

function validate(opts: ChunkExecutorOptions): { settings: ResolvedMerge; committed: number } {
  const H = opts.horizon;
  const int = (v: number, lo: number, hi: number, what: string): number => {
    if (!Number.isInteger(v) || v < lo || v > hi)
      throw new RangeError(`chunk executor (${opts.mode}): ${what} must be an integer in [${lo}, ${hi}], got ${v}`);
    return v;
  };
  switch (opts.mode) {
    case "sync": {
      const p = opts.prefixSteps ?? 0;
      const n = int(opts.nActionSteps ?? Math.max(1, H - p), 1, H, `nActionSteps (horizon ${H})`);
      if (!Number.isInteger(p) || p < 0 || n + p > H)
        throw new RangeError(
          `chunk executor (sync): prefixSteps must be an integer >= 0 with nActionSteps + prefixSteps <= horizon (${n} + ${p} > ${H})`,
        );
      return {
        settings: { mode: "sync", nActionSteps: n, prefixSteps: p, smoothing: smoothingOf(opts) },
        committed: p,
      };
    }
    case "ensemble": {
      const coeff = opts.coeff ?? 0.01;
      if (!Number.isFinite(coeff) || coeff < 0)
        throw new RangeError(`chunk executor (ensemble): coeff must be finite and >= 0, got ${coeff}`);
      return { settings: { mode: "ensemble", coeff }, committed: 0 };
    }
    case "blend": {
      const threshold = opts.threshold ?? 0.5;
      if (!(threshold >= 0 && threshold <= 1))
        throw new RangeError(`chunk executor (blend): threshold must be in [0, 1], got ${threshold}`);
      const agg = opts.aggregate ?? "weighted_average";
      if (!(agg in BLEND))
        throw new RangeError(
          `chunk executor (blend): aggregate must be one of ${Object.keys(BLEND).join(", ")}, got ${agg}`,
        );
      return { settings: { mode: "blend", threshold, aggregate: agg, smoothing: smoothingOf(opts) }, committed: 0 };
    }
    case "rtc": {
      const d = opts.delaySteps ?? 0;
      if (!Number.isInteger(d) || d < 0 || 2 * d > H)
        throw new RangeError(
          `chunk executor (rtc): delaySteps must be an integer with 0 <= d <= horizon/2 (d=${d}, H=${H})`,
        );
      const p = opts.prefixSteps ?? 0;
      if (!Number.isInteger(p) || p < 0 || 2 * p > H)
        throw new RangeError(
          `chunk executor (rtc): prefixSteps must be an integer with 0 <= p <= horizon/2 (p=${p}, H=${H})`,
        );
      const c = Math.max(d, p);
      const s = int(
        opts.executionHorizon ?? Math.max(1, Math.floor(H / 2)),
        Math.max(1, c),
        H - c,
        `executionHorizon s (d=${c} <= s <= H-d, H=${H})`,
      );
      return {
        settings: { mode: "rtc", executionHorizon: s, prefixSteps: p, smoothing: smoothingOf(opts) },
        committed: c,
      };
    }
  }
}

function smoothingOf(opts: { mode: string; smoothing?: number }): number {
  const l = opts.smoothing ?? DEFAULT_SMOOTHING;
  if (!(Number.isFinite(l) && l >= 0))
    throw new RangeError(`chunk executor (${opts.mode}): smoothing must be finite and >= 0, got ${l}`);
  return l;
}
