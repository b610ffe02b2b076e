/**
 * The real-time control loop: at the profile's rate on a monotonic clock, with deadlines that do not
 * drift (tick k is due at `start + k * dt`, never `now + dt`), it reads the newest joint state and
 * features (and the camera images the policy takes, {@link CameraInputs}) from a {@link RobotLink}, keeps the action queue by absolute control step (through the
 * chunk executor, {@link LoopExecutor}: `sync`, `ensemble`, `blend`, `rtc`), requests the next chunk before the queue runs dry, passes every action
 * through the {@link SafetyLayer} and sends the result. Inference never blocks the loop: the
 * {@link ChunkPolicy} call is awaited off-tick (with a threaded policy it runs in its own thread).
 *
 * The measured inference delay is `d = ceil(L / dt)` control steps, L the longest of the last 5
 * measured inference latencies within bounds (0 before the first). In `rtc` the next d queued
 * actions are committed and passed to the policy as the prefix, with d <= s <= H - d.
 *
 * `rtc` overruns: an inference that takes more than `D = min(rtcMaxDelay, floor(H / 2))` control
 * steps (the largest prefix the policy can be given) is an overrun, counted (`rtcOverruns`, an
 * `rtc-overrun` event, diagnostics) as soon as it is seen, while still in flight or on arrival. Its
 * chunk, which does not continue what the robot executed meanwhile, is dropped, and its latency is
 * kept out of d. The loop then executes only what is already queued and holds; once the queue is empty
 * it requests a chunk from rest (no prefix), which starts from its arrival whatever its latency.
 * The first inference back within D ends the overrun (`rtc-recovered`) and real-time chunking
 * resumes. The profile's `rtc_max_consecutive_overruns` overruns in a row, or one inference still
 * running after `rtc_overrun_timeout_s`, latch the e-stop with a `loop-error` event naming the delay.
 *
 * After a reconnect (a new link epoch) the queue is cleared, chunks still in flight are discarded,
 * and nothing is sent until a joint state of the new epoch has arrived and a new chunk was computed
 * from it; the first command then ramps from the measured position.
 */
import type { ChunkPolicy, Observation } from "../policy/chunk-policy.ts";
import { RecentSamples, StreamingQuantiles } from "../policy/stats/quantiles.ts";
import type { ChunkMerge } from "../policy/runtime/executor.ts";
import { CameraInputs, policyCameras } from "./cameras.ts";
import type { LoopTicket } from "./merge.ts";
import { LoopExecutor } from "./merge.ts";
import type { RobotProfile } from "./profile.ts";
import { effectiveLimits } from "./profile.ts";
import type { RobotLink, SendResult } from "./robot-link.ts";
import type { SafetyStats } from "./safety.ts";
import { SafetyLayer } from "./safety.ts";
import type { Scheduler } from "./scheduler.ts";
import { realScheduler } from "./scheduler.ts";

/** Options of {@link ControlLoop}. */
export interface ControlLoopOptions {
  /**
   * The policy; the cameras among the features it declares (`features`, or a remote policy's
   * `metadata.features`) are read from the profile's cameras, each of which needs a `max_age_s`.
   */
  policy: ChunkPolicy;
  link: RobotLink;
  profile: RobotProfile;
  /** How chunks are merged; default `sync` over the whole chunk. */
  merge?: ChunkMerge;
  /** Clock and timers; default {@link realScheduler}. */
  scheduler?: Scheduler;
  /**
   * With the `trajectory` interface: `chunk` publishes the whole remaining queue as one trajectory
   * whenever a new chunk arrives, `step` one point per tick (default). Ignored for `forward`.
   */
  publish?: "chunk" | "step";
  /** Seconds between diagnostics messages; default 1. */
  diagnosticsEveryS?: number;
  /** Things worth a log line. */
  onEvent?: (e: LoopEvent) => void;
  /** Every chunk the policy returned, with its latency, prefix and what the loop did with it (run logs). */
  onChunk?: (c: ChunkReport) => void;
}

/** A chunk the policy returned and what the loop did with it (see `onChunk`). */
export interface ChunkReport {
  /** The step of the observation it was computed from. */
  s0: number;
  /** The loop's next step when it arrived. */
  step: number;
  /** Request to arrival, seconds. */
  latencyS: number;
  /** Committed actions passed to the policy as the prefix, steps (0: none). */
  prefixSteps: number;
  /** Whether it was requested from rest (empty queue). */
  fromRest: boolean;
  /** `merged`, or why it was dropped (`stopped`: the loop had stopped). */
  decision: "merged" | "stopped" | "non-finite" | "bad-length" | "stale-epoch" | "cleared" | "overrun";
  /** The raw chunk, `[horizon * actionDim]`. */
  actions: Float32Array;
}

/** Events of the loop. */
export type LoopEvent =
  | { kind: "resync"; epoch: number }
  | {
      kind: "chunk-dropped";
      reason: "non-finite" | "bad-length" | "stale-epoch" | "cleared" | "overrun";
      step: number;
    }
  | { kind: "infer-error"; error: string }
  | { kind: "loop-error"; error: string }
  | {
      kind: "rtc-overrun";
      /** The inference's delay so far, control steps. */
      delaySteps: number;
      /** The largest delay the policy can be given as a prefix (D). */
      maxDelaySteps: number;
      /** Overruns in a row, this one included. */
      consecutive: number;
      step: number;
    }
  | { kind: "rtc-recovered"; step: number }
  /** No action to execute for `forS` seconds (once per such stretch): `reason` says why. */
  | { kind: "starved"; reason: string; forS: number; step: number }
  | { kind: "hold"; reason: string; step: number }
  /** A person took the robot over (`active`) or handed it back (the loop ramps back in). */
  | { kind: "intervention"; active: boolean; step: number }
  /**
   * A task prompt arrived on the prompt topic: accepted (the policy's next chunk is conditioned on
   * it), or refused (`error` names the prompts the policy knows; the current one stays).
   */
  | { kind: "prompt"; prompt: string; accepted: boolean; error?: string; step: number };

/** Relative accuracy of the whole-run jitter and inference-latency quantiles of {@link LoopStats}. */
export const LOOP_QUANTILE_RELATIVE_ACCURACY = 0.005;

/** Seconds of ticks at the control rate held for the `recent` figures of {@link LoopStats}. */
export const LOOP_RECENT_WINDOW_S = 10;

/**
 * Figures of the latest ticks and inferences (exact nearest-rank quantiles over them; 0 when none).
 * Each ring holds `ceil(LOOP_RECENT_WINDOW_S * control_rate_hz)` samples: the last 10 s of ticks
 * when none was missed, and as many of the latest inferences.
 */
export interface LoopRecentStats {
  /** Ticks the jitter figures cover. */
  ticks: number;
  jitterP50Ms: number;
  jitterP99Ms: number;
  jitterMaxMs: number;
  /** Inferences the latency figures cover. */
  inferCount: number;
  inferP50Ms: number;
  inferMaxMs: number;
}

/**
 * What the loop measured; every figure of `--json` output. Kept in fixed memory: counts, sums and
 * maxima are exact; the whole-run quantiles (`jitterP50Ms`, `jitterP99Ms`, `inferP50Ms`) are
 * nearest-rank quantiles read from a DDSketch, within {@link LOOP_QUANTILE_RELATIVE_ACCURACY}
 * (0.5 %, relative) of the exact value and exact when every sample is equal; `recent` holds exact
 * nearest-rank figures of the latest {@link LOOP_RECENT_WINDOW_S} seconds. No figure grows with the
 * run's length, and neither does the cost of reading them.
 */
export interface LoopStats {
  /**
   * Prompts from the prompt topic accepted and refused, and the prompt of the next chunk (null:
   * the policy's own, or none).
   */
  prompts: { accepted: number; rejected: number; current: string | null };
  /** Ticks run (deadlines not missed). */
  ticks: number;
  seconds: number;
  loopHz: number;
  /** Tick lateness against its deadline `start + k * dt`, whole run: p50, p99 (sketch), max (exact). */
  jitterP50Ms: number;
  jitterP99Ms: number;
  jitterMaxMs: number;
  missedDeadlines: number;
  /** Inference latency (request to chunk arrival), whole run: count, p50 (sketch), max (exact). */
  inferCount: number;
  inferP50Ms: number;
  inferMaxMs: number;
  /** The latest ticks and inferences. */
  recent: LoopRecentStats;
  /** Times the queue ran dry while the loop was executing (a non-empty -> empty transition). */
  queueEmptyEvents: number;
  /** `rtc`: the inference delay d (control steps) committed by the latest request; 0 in other modes. */
  rtcDelaySteps: number;
  /** `rtc`: inferences slower than the largest delay the policy can be given as a prefix (see the module doc). */
  rtcOverruns: number;
  /** `rtc`: overruns in a row so far (0 when the latest inference was within bounds). */
  rtcConsecutiveOverruns: number;
  /** Clamps of every kind (details in `safety.clamps`). */
  clamps: number;
  sent: number;
  droppedDisconnected: number;
  droppedStale: number;
  /** Chunks discarded because the connection epoch changed while they were computed. */
  discardedChunks: number;
  /** Ticks without inference because a feature or a camera image was missing or stale. */
  staleFeatureTicks: number;
  inferErrors: number;
  resyncs: number;
  /** Exceptions inside a tick (each latches the e-stop). */
  loopErrors: number;
  safety: SafetyStats;
}

/** A figure for JSON: 0 for no samples (NaN) rather than null. */
const orZero = (x: number): number => (Number.isNaN(x) ? 0 : x);

/** The control loop; {@link start} it, {@link stop} it to get its {@link LoopStats}. */
export class ControlLoop {
  readonly dt: number;
  private readonly safety: SafetyLayer;
  private readonly merger: LoopExecutor;
  private readonly sched: Scheduler;
  private readonly joints: number;
  private readonly chunkMode: boolean;
  private startS = 0;
  private step = 0;
  private cancel?: () => void;
  private running = false;
  private epoch = -1;
  private inflight = false;
  /** Start time of the inference in flight, and whether it was already counted as an overrun. */
  private inflightT0 = 0;
  private inflightOverrun = false;
  /** Whether the request in flight was made from rest (empty queue, no prefix). */
  private inflightFromRest = false;
  /** `rtc`: the current run of overruns (absent when the latest inference was within bounds). */
  private overrunStreak: { count: number } | undefined;
  private lastStateAtS = -Infinity;
  /** Jitter and inference latency (ms): the whole run in sketches, the latest in rings (fixed memory). */
  private readonly jitterAll = new StreamingQuantiles({ relativeAccuracy: LOOP_QUANTILE_RELATIVE_ACCURACY });
  private readonly inferAll = new StreamingQuantiles({ relativeAccuracy: LOOP_QUANTILE_RELATIVE_ACCURACY });
  private readonly jitterRecent: RecentSamples;
  private readonly inferRecent: RecentSamples;
  private recentLatencyS: number[] = [];
  private hadAction = false;
  private newChunk = false;
  /** Receive time of the joint state the newest queued chunk was computed from. */
  private chunkSourceAtS = -Infinity;
  private lastDiagS = -Infinity;
  /** When the loop last had an action to execute, and whether the stretch without one was reported. */
  private lastActionS = 0;
  private starvedReported = false;
  /** Why the latest inference was skipped or failed (for the starved report). */
  private blockedBy?: string;
  private readonly cameras: CameraInputs;
  /** The last prompt accepted from the prompt topic. */
  private prompt: string | null = null;
  private counts = {
    missed: 0,
    queueEmpty: 0,
    sent: 0,
    droppedDisconnected: 0,
    droppedStale: 0,
    discarded: 0,
    staleFeature: 0,
    inferErrors: 0,
    promptsAccepted: 0,
    promptsRejected: 0,
    resyncs: 0,
    loopErrors: 0,
    rtcOverruns: 0,
  };

  constructor(private readonly opts: ControlLoopOptions) {
    const p = opts.profile;
    this.dt = 1 / p.control_rate_hz;
    this.joints = p.joints.length;
    if (opts.policy.actionDim !== this.joints)
      throw new Error(
        `ControlLoop: policy actionDim ${opts.policy.actionDim} != ${this.joints} joints of profile '${p.name}'`,
      );
    this.sched = opts.scheduler ?? realScheduler();
    try {
      this.cameras = new CameraInputs(p, policyCameras(opts.policy));
    } catch (err) {
      throw new Error(`ControlLoop: ${(err as Error).message}`, { cause: err });
    }
    try {
      this.merger = new LoopExecutor(opts.merge ?? { mode: "sync" }, opts.policy, p.control_rate_hz);
    } catch (err) {
      throw new Error(`ControlLoop: ${(err as Error).message}`, { cause: err });
    }
    this.safety = new SafetyLayer({
      limits: effectiveLimits(p),
      dt: this.dt,
      watchdogTimeoutS: p.watchdog_timeout_s,
      rampS: p.ramp_s,
    });
    this.chunkMode = p.command_interface === "trajectory" && opts.publish === "chunk";
    const recent = Math.max(1, Math.ceil(LOOP_RECENT_WINDOW_S * p.control_rate_hz));
    this.jitterRecent = new RecentSamples(recent);
    this.inferRecent = new RecentSamples(recent);
  }

  /** Starts ticking; tick 0 is due now. */
  start(): void {
    if (this.running) throw new Error("ControlLoop.start: already running");
    this.running = true;
    this.startS = this.sched.now();
    this.lastActionS = this.startS;
    this.step = 0;
    this.cancel = this.sched.at(this.startS, () => this.tick());
  }

  /** Latches the e-stop (SIGINT/SIGTERM, an operator): the loop holds from the next tick on. */
  estop(reason: string): void {
    this.safety.estop(reason);
  }

  /** Stops ticking and returns the figures. */
  stop(): LoopStats {
    this.running = false;
    this.cancel?.();
    return this.stats();
  }

  /** The figures so far. */
  stats(): LoopStats {
    const seconds = Math.max(1e-9, this.sched.now() - this.startS);
    const safety = this.safety.stats();
    const ticks = this.jitterAll.count;
    const [rj50, rj99] = this.jitterRecent.quantiles([0.5, 0.99]) as [number, number];
    const [ri50] = this.inferRecent.quantiles([0.5]) as [number];
    return {
      ticks,
      seconds,
      loopHz: ticks / seconds,
      jitterP50Ms: orZero(this.jitterAll.quantile(0.5)),
      jitterP99Ms: orZero(this.jitterAll.quantile(0.99)),
      jitterMaxMs: orZero(this.jitterAll.max),
      missedDeadlines: this.counts.missed,
      inferCount: this.inferAll.count,
      inferP50Ms: orZero(this.inferAll.quantile(0.5)),
      inferMaxMs: orZero(this.inferAll.max),
      recent: {
        ticks: this.jitterRecent.length,
        jitterP50Ms: orZero(rj50),
        jitterP99Ms: orZero(rj99),
        jitterMaxMs: orZero(this.jitterRecent.max()),
        inferCount: this.inferRecent.length,
        inferP50Ms: orZero(ri50),
        inferMaxMs: orZero(this.inferRecent.max()),
      },
      queueEmptyEvents: this.counts.queueEmpty,
      rtcDelaySteps: this.merger.delaySteps,
      rtcOverruns: this.counts.rtcOverruns,
      rtcConsecutiveOverruns: this.overrunStreak?.count ?? 0,
      clamps: safety.clampTotal,
      sent: this.counts.sent,
      droppedDisconnected: this.counts.droppedDisconnected,
      droppedStale: this.counts.droppedStale,
      discardedChunks: this.counts.discarded,
      staleFeatureTicks: this.counts.staleFeature,
      inferErrors: this.counts.inferErrors,
      resyncs: this.counts.resyncs,
      loopErrors: this.counts.loopErrors,
      prompts: { accepted: this.counts.promptsAccepted, rejected: this.counts.promptsRejected, current: this.prompt },
      safety,
    };
  }

  private tick(): void {
    if (!this.running) return;
    const now = this.sched.now();
    const due = this.startS + this.step * this.dt;
    const jitterMs = Math.max(0, (now - due) * 1000);
    this.jitterAll.add(jitterMs);
    this.jitterRecent.push(jitterMs);
    try {
      this.control(now);
    } catch (err) {
      // A bug or a transport failure inside a tick must not kill the process silently or keep
      // commanding: latch the e-stop (the robot holds) and report.
      const message = (err as Error).message ?? String(err);
      this.counts.loopErrors++;
      this.safety.estop(`loop error: ${message}`);
      this.opts.onEvent?.({ kind: "loop-error", error: message });
    } finally {
      this.scheduleNext();
    }
  }

  private scheduleNext(): void {
    if (!this.running) return;
    this.step++;
    const now = this.sched.now();
    // A deadline already past when the previous tick ends is missed: its step is skipped, never run late.
    const behind = now - (this.startS + this.step * this.dt);
    if (behind > 0) {
      const late = Math.floor(behind / this.dt) + 1;
      this.counts.missed += late;
      this.step += late;
    }
    this.cancel = this.sched.at(this.startS + this.step * this.dt, () => this.tick());
  }

  private control(now: number): void {
    const link = this.opts.link;
    const k = this.step;
    if (link.estopRequest !== undefined) this.safety.estop(link.estopRequest);
    const person = link.intervention === true;
    if (person !== this.safety.intervention) {
      this.safety.setIntervention(person);
      this.opts.onEvent?.({ kind: "intervention", active: person, step: k });
    }
    const prompt = link.takePrompt?.();
    if (prompt !== undefined) this.applyPrompt(prompt, k);
    if (link.epoch !== this.epoch) {
      if (this.epoch >= 0) {
        this.counts.resyncs++;
        this.opts.onEvent?.({ kind: "resync", epoch: link.epoch });
      }
      this.epoch = link.epoch;
      this.merger.clear(k);
      this.safety.restart();
      this.hadAction = false;
      this.newChunk = false;
    }
    const st = link.jointState();
    const current = st !== undefined && st.epoch === this.epoch;
    if (st && current && st.atS > this.lastStateAtS) {
      this.lastStateAtS = st.atS;
      this.safety.observe(st.positions, st.atS);
    }
    if (this.inflight && this.merger.mode === "rtc") this.watchInflight(now, k);
    if (
      !this.inflight &&
      link.connected &&
      st &&
      current &&
      this.safety.stateFresh(now) &&
      !this.safety.estopped &&
      !person
    ) {
      if (this.overrunStreak) {
        // after an overrun: only from rest, once what was queued has run out
        if (this.merger.upcoming(k, 1).length === 0 && this.merger.wantsChunk(k))
          this.infer(k, now, st.positions, st.atS, 0);
      } else {
        const delaySteps = this.stepsOf(Math.max(0, ...this.recentLatencyS));
        if (this.merger.wantsChunk(k)) this.infer(k, now, st.positions, st.atS, delaySteps);
      }
    }
    const action = this.merger.actionAt(k);
    if (action) {
      this.lastActionS = now;
      this.starvedReported = false;
    } else if (!this.starvedReported && now - this.lastActionS >= 1) {
      this.starvedReported = true;
      const reason = this.whyStarved(now, current);
      this.opts.onEvent?.({ kind: "starved", reason, forS: now - this.lastActionS, step: k });
    }
    if (action) this.hadAction = true;
    else if (this.hadAction) {
      this.hadAction = false;
      this.counts.queueEmpty++;
    }
    const d = this.safety.step(action, now);
    if (d.kind === "command") {
      if (!this.chunkMode)
        this.count(
          link.send({
            kind: "positions",
            positions: d.positions,
            dtS: this.dt,
            epoch: this.epoch,
            sourceAtS: this.chunkSourceAtS,
          }),
        );
      else if (this.newChunk) {
        const rest = this.safety.preview(this.merger.upcoming(k + 1, 10_000), now);
        const points = [d.positions, ...rest];
        this.count(
          link.send({ kind: "trajectory", points, dtS: this.dt, epoch: this.epoch, sourceAtS: this.chunkSourceAtS }),
        );
      }
      this.newChunk = false;
    } else {
      if (d.entered) this.opts.onEvent?.({ kind: "hold", reason: d.reason, step: k });
      // One stop message when a hold starts for a reason the robot must act on; only from a state of
      // this connection (never an old command after a reconnect).
      const stop =
        d.reason === "estop" || d.reason === "watchdog" || d.reason === "intervention" || d.reason === "non-finite";
      if (d.entered && stop && d.positions && current)
        this.count(
          link.send({ kind: "positions", positions: d.positions, dtS: this.dt, epoch: this.epoch, sourceAtS: st.atS }),
        );
      if (d.reason !== "empty") this.merger.clear(k + 1);
    }
    if (now - this.lastDiagS >= (this.opts.diagnosticsEveryS ?? 1)) {
      this.lastDiagS = now;
      this.publishDiagnostics();
    }
  }

  /** Gives the policy a prompt from the prompt topic (from its next chunk on), or refuses it. */
  private applyPrompt(text: string, k: number): void {
    const policy = this.opts.policy;
    let error: string | undefined;
    if (policy.prompts === undefined || !policy.setPrompt) error = "the policy takes no prompt";
    else
      try {
        policy.setPrompt(text);
      } catch (err) {
        error = (err as Error).message;
      }
    if (error === undefined) {
      this.counts.promptsAccepted++;
      this.prompt = text;
      this.opts.onEvent?.({ kind: "prompt", prompt: text, accepted: true, step: k });
    } else {
      this.counts.promptsRejected++;
      this.opts.onEvent?.({ kind: "prompt", prompt: text, accepted: false, error, step: k });
    }
  }

  private infer(k: number, now: number, positions: Float64Array, sourceAtS: number, delaySteps: number): void {
    const p = this.opts.profile;
    const obs: Observation = { [p.state_feature]: Float32Array.from(positions) };
    for (const f of p.features) {
      const s = this.opts.link.feature(f.feature);
      if (!s || s.epoch !== this.epoch || now - s.atS > f.stale_after_s) {
        this.counts.staleFeature++;
        const why = !s
          ? "no valid message yet"
          : s.epoch !== this.epoch
            ? "none since the reconnect"
            : `last valid message ${(now - s.atS).toFixed(3)} s ago, stale_after_s ${f.stale_after_s}`;
        const rejected = this.opts.link.rejections?.last(f.topic);
        this.blockedBy = `feature ${f.feature} on ${f.topic} stale or rejected: ${why}${rejected ? ` (last rejected: ${rejected})` : ""}`;
        this.opts.link.rejections?.reject(f.topic, "stale", `feature ${f.feature}: ${why}`);
        return;
      }
      this.opts.link.rejections?.accepted(f.topic, ["stale"]);
      obs[f.feature] = s.values;
    }
    const blocked = this.cameras.fill(obs, this.opts.link, now, this.epoch);
    if (blocked) {
      this.counts.staleFeature++;
      const rejected = this.opts.link.rejections?.last(blocked.topic);
      this.blockedBy = `camera ${blocked.feature} on ${blocked.topic} stale or rejected: ${blocked.why}${rejected ? ` (last rejected: ${rejected})` : ""}`;
      this.opts.link.rejections?.reject(blocked.topic, "stale", `camera ${blocked.feature}: ${blocked.why}`);
      return;
    }
    for (const topic of this.cameras.topics) this.opts.link.rejections?.accepted(topic, ["stale"]);
    const fromRest = this.merger.upcoming(k, 1).length === 0;
    const ticket = this.merger.request(k, delaySteps);
    const prefix = ticket.prefix;
    const epoch = this.epoch;
    this.inflight = true;
    this.inflightOverrun = false;
    this.inflightFromRest = fromRest;
    const t0 = this.sched.now();
    this.inflightT0 = t0;
    let pending: Promise<Float32Array>;
    try {
      pending = this.opts.policy.sampleChunk(obs, prefix ? { prefix } : {});
    } catch (err) {
      pending = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    pending.then(
      (chunk) => this.onChunk(chunk, ticket, epoch, t0, sourceAtS),
      (err: unknown) => {
        this.inflight = false;
        this.merger.cancel();
        this.counts.inferErrors++;
        this.blockedBy = `inference failing: ${(err as Error).message ?? String(err)}`;
        this.opts.onEvent?.({ kind: "infer-error", error: (err as Error).message ?? String(err) });
      },
    );
  }

  private onChunk(chunk: Float32Array, ticket: LoopTicket, epoch: number, t0: number, sourceAtS: number): void {
    const fromRest = this.inflightFromRest;
    const decision = this.takeChunk(chunk, ticket, epoch, t0, sourceAtS);
    const report = this.opts.onChunk;
    if (!report) return;
    const latencyS = this.sched.now() - t0;
    const prefixSteps = ticket.prefix ? ticket.prefix.length / this.opts.policy.actionDim : 0;
    report({ s0: ticket.s0, step: this.step, latencyS, prefixSteps, fromRest, decision, actions: chunk });
  }

  private takeChunk(
    chunk: Float32Array,
    ticket: LoopTicket,
    epoch: number,
    t0: number,
    sourceAtS: number,
  ): ChunkReport["decision"] {
    this.inflight = false;
    this.blockedBy = undefined;
    const now = this.sched.now();
    const latency = now - t0;
    this.inferAll.add(latency * 1000);
    this.inferRecent.push(latency * 1000);
    // between ticks `step` is the next tick's step, the first one this chunk can still act on
    const nowStep = this.step;
    const overran = this.merger.mode === "rtc" && this.stepsOf(latency) > this.merger.maxDelaySteps;
    if (overran) {
      if (!this.inflightOverrun) this.overrun(this.stepsOf(latency), nowStep);
    } else {
      this.recentLatencyS.push(latency);
      if (this.recentLatencyS.length > 5) this.recentLatencyS.shift();
      if (this.overrunStreak) {
        this.overrunStreak = undefined;
        this.opts.onEvent?.({ kind: "rtc-recovered", step: nowStep });
      }
    }
    if (!this.running) {
      this.merger.cancel();
      return "stopped";
    }
    const pol = this.opts.policy;
    if (epoch !== this.opts.link.epoch || epoch !== this.epoch) {
      this.counts.discarded++;
      this.merger.cancel();
      this.opts.onEvent?.({ kind: "chunk-dropped", reason: "stale-epoch", step: nowStep });
      return "stale-epoch";
    }
    if (chunk.length !== pol.horizon * pol.actionDim) {
      this.counts.inferErrors++;
      this.merger.cancel();
      this.opts.onEvent?.({ kind: "chunk-dropped", reason: "bad-length", step: nowStep });
      return "bad-length";
    }
    if (!this.safety.checkChunk(chunk)) {
      this.merger.clear(nowStep);
      this.opts.onEvent?.({ kind: "chunk-dropped", reason: "non-finite", step: nowStep });
      return "non-finite";
    }
    if (overran && !this.inflightFromRest) {
      // the robot kept executing the old queue past the committed prefix: this chunk does not continue it
      this.counts.discarded++;
      this.merger.cancel();
      this.opts.onEvent?.({ kind: "chunk-dropped", reason: "overrun", step: nowStep });
      return "overrun";
    }
    if (this.merger.merge(ticket, chunk, nowStep) === "stale") {
      this.counts.discarded++;
      this.opts.onEvent?.({ kind: "chunk-dropped", reason: "cleared", step: nowStep });
      return "cleared";
    }
    this.chunkSourceAtS = sourceAtS;
    this.newChunk = true;
    return "merged";
  }

  /** Why there has been no action to execute (see the `starved` event). */
  private whyStarved(now: number, currentState: boolean): string {
    const p = this.opts.profile;
    if (this.safety.estopped) return `e-stop: ${this.safety.stats().estopReason ?? "latched"}`;
    if (this.safety.intervention) return "a person has the robot (intervention)";
    if (!this.opts.link.connected) return "not connected to the robot";
    if (!currentState) {
      const rejected = this.opts.link.rejections?.last(p.ros.joint_states);
      return `no joint state yet on ${p.ros.joint_states}${rejected ? ` (last rejected: ${rejected})` : ""}`;
    }
    if (!this.safety.stateFresh(now))
      return `joint state on ${p.ros.joint_states} stale (watchdog_timeout_s ${p.watchdog_timeout_s})`;
    if (this.blockedBy) return this.blockedBy;
    if (this.inflight) return `waiting for inference (in flight for ${(now - this.inflightT0).toFixed(3)} s)`;
    return "no chunk received yet";
  }

  /** Control steps covering `seconds`: `ceil(seconds / dt)`. */
  private stepsOf(seconds: number): number {
    return Math.max(0, Math.ceil(seconds / this.dt - 1e-9));
  }

  /** `rtc`: counts the inference in flight as an overrun once it is slower than D, and stops on a hung one. */
  private watchInflight(now: number, k: number): void {
    const elapsed = now - this.inflightT0;
    if (!this.inflightOverrun && this.stepsOf(elapsed) > this.merger.maxDelaySteps) {
      this.inflightOverrun = true;
      this.overrun(this.stepsOf(elapsed), k);
    }
    const limit = this.opts.profile.rtc_overrun_timeout_s;
    if (elapsed > limit && !this.safety.estopped)
      this.fail(
        `rtc: an inference has been running for ${elapsed.toFixed(3)} s, over rtc_overrun_timeout_s ${limit} s (the policy can be given at most ${this.merger.maxDelaySteps} control steps, ${(this.merger.maxDelaySteps * this.dt * 1000).toFixed(0)} ms); stopping`,
      );
  }

  /** Counts an overrun of `d` steps, reports it, and stops after `rtc_max_consecutive_overruns` in a row. */
  private overrun(d: number, step: number): void {
    this.counts.rtcOverruns++;
    const streak = (this.overrunStreak ??= { count: 0 });
    streak.count++;
    const max = this.merger.maxDelaySteps;
    this.opts.onEvent?.({ kind: "rtc-overrun", delaySteps: d, maxDelaySteps: max, consecutive: streak.count, step });
    const limit = this.opts.profile.rtc_max_consecutive_overruns;
    if (streak.count >= limit && !this.safety.estopped)
      this.fail(
        `rtc: the inference delay exceeded ${max} control steps (${(max * this.dt * 1000).toFixed(0)} ms, the largest prefix this policy can be given) ${streak.count} times in a row (rtc_max_consecutive_overruns ${limit}), the last by d = ${d}; stopping`,
      );
  }

  /** Latches the e-stop with `message` and reports it as a `loop-error`. */
  private fail(message: string): void {
    this.safety.estop(message);
    this.opts.onEvent?.({ kind: "loop-error", error: message });
  }

  private count(r: SendResult): void {
    if (r === "sent") this.counts.sent++;
    else if (r === "dropped-disconnected") this.counts.droppedDisconnected++;
    else this.counts.droppedStale++;
  }

  private publishDiagnostics(): void {
    const s = this.stats();
    const sf = s.safety;
    const level = sf.estop ? 2 : sf.holding === "watchdog" || sf.holding === "non-finite" || this.overrunStreak ? 1 : 0;
    this.opts.link.diagnostics({
      level,
      message: sf.estop ? `e-stop: ${sf.estopReason}` : sf.holding ? `holding: ${sf.holding}` : "running",
      values: {
        merge: this.merger.mode,
        loop_hz: +s.loopHz.toFixed(2),
        jitter_p99_ms: +s.jitterP99Ms.toFixed(3),
        missed_deadlines: s.missedDeadlines,
        infer_p50_ms: +s.inferP50Ms.toFixed(2),
        queue_depth: this.merger.upcoming(this.step, 10_000).length,
        rtc_delay_steps: this.merger.delaySteps,
        rtc_overruns: s.rtcOverruns,
        rtc_consecutive_overruns: s.rtcConsecutiveOverruns,
        queue_empty_events: s.queueEmptyEvents,
        clamps: s.clamps,
        watchdog_trips: sf.watchdogTrips,
        watchdog: sf.holding === "watchdog" ? "tripped" : "ok",
        estop: sf.estop,
        ...this.opts.link.rejections?.diagnosticValues(),
      },
    });
  }
}
