/**
 * The safety layer: every command the bridge sends passes through {@link SafetyLayer.step}, whatever
 * the transport. Pure and clock-free: callers pass the time (seconds on a monotonic clock).
 *
 * Per joint and control step, in this order (each clamp counted per kind and joint):
 * 1. ramp: for `ceil(rampS / dt)` steps after a (re)start the target is blended linearly from the
 *    measured position at the start (`q = start + k/N * (target - start)`), so the first command
 *    never jumps;
 * 2. `relative`: `max_relative_target` against the latest measured position (LeRobot);
 * 3. `velocity`: `|q - q_prev| <= max_velocity * dt`;
 * 4. `acceleration`: `|(q - q_prev)/dt - v_prev| <= max_acceleration * dt` (`max_deceleration` instead
 *    while the change opposes the velocity, as ros2_control's limiter does);
 * 5. `jerk`: with `a = ((q - q_prev)/dt - v_prev)/dt`, `|a - a_prev| <= max_jerk * dt`. The
 *    velocity limit wins over it: a jerk-limited step that would exceed `max_velocity` is brought back
 *    to it (counted as `velocity`);
 * 6. `position`: `min_position <= q <= max_position` (last, so a position limit always wins).
 *
 * Effort limits (`has_effort_limits`) cannot be enforced on position commands: the layer sends
 * positions only and never sees a torque (`profileWarnings` says so at load).
 *
 * Holds (no command computed): no joint state yet, the watchdog (no fresh joint state within the
 * timeout), the e-stop (latched until {@link SafetyLayer.resetEstop}), a person's intervention (while
 * {@link SafetyLayer.setIntervention} says a person has the robot), a non-finite target, and an
 * empty action queue. After any hold but `empty` the next command ramps again from the measured
 * position; after `empty` the velocity restarts from 0.
 */
import type { EffectiveJointLimits } from "./profile.ts";

/** The kinds of clamp the layer applies, in application order. */
export const CLAMP_KINDS = ["relative", "velocity", "acceleration", "jerk", "position"] as const;
/** One kind of clamp. */
export type ClampKind = (typeof CLAMP_KINDS)[number];

/** Why no command was produced this step. */
export type HoldReason = "no-state" | "watchdog" | "estop" | "intervention" | "non-finite" | "empty";

/** What to do this control step. */
export type SafetyDecision =
  | {
      kind: "command";
      /** Safe joint positions `[joints]` (radians/metres), action order. */
      positions: Float64Array;
      /** True while the start ramp is active. */
      ramping: boolean;
    }
  | {
      kind: "hold";
      reason: HoldReason;
      /** True on the first step of this hold (the moment to send one stop message). */
      entered: boolean;
      /** Where to hold: the last command, else the last measured position; absent without either. */
      positions?: Float64Array;
    };

/** Options of {@link SafetyLayer}. */
export interface SafetyOptions {
  /** Limits per joint, action order (from {@link effectiveLimits}). */
  limits: readonly EffectiveJointLimits[];
  /** Control period, seconds. */
  dt: number;
  /** A joint state older than this (seconds) trips the watchdog. */
  watchdogTimeoutS: number;
  /** Ramp duration after a (re)start, seconds (0: no ramp). */
  rampS: number;
}

/** Counters of {@link SafetyLayer}; clamps per kind and joint name. */
export interface SafetyStats {
  clamps: Record<ClampKind, Record<string, number>>;
  clampTotal: number;
  watchdogTrips: number;
  /** Times a person took the robot over. */
  interventions: number;
  nonFiniteTargets: number;
  nonFiniteChunks: number;
  rejectedStates: number;
  estop: boolean;
  estopReason?: string;
  /** Current hold reason, or undefined while commanding. */
  holding?: HoldReason;
}

interface Motion {
  prev?: Float64Array;
  prevVel: Float64Array;
  /** Acceleration of the last step `[joints]` (for the jerk limit). */
  prevAcc: Float64Array;
  rampStart?: Float64Array;
  rampStep: number;
}

/** The safety layer for one robot; one instance per control loop, called from the loop's thread only. */
export class SafetyLayer {
  private readonly n: number;
  private readonly rampSteps: number;
  private measured?: Float64Array;
  private measuredAtS = -Infinity;
  private motion: Motion;
  private needRestart = true;
  private holdReason: HoldReason | undefined;
  private estopReason: string | undefined;
  private intervening = false;
  private interventions = 0;
  private readonly clampCounts: Record<ClampKind, number[]>;
  private watchdogTrips = 0;
  private nonFiniteTargets = 0;
  private nonFiniteChunks = 0;
  private rejectedStates = 0;

  constructor(private readonly opts: SafetyOptions) {
    if (!(opts.dt > 0)) throw new RangeError(`SafetyLayer: dt must be > 0 s (got ${opts.dt})`);
    if (!(opts.watchdogTimeoutS > 0))
      throw new RangeError(`SafetyLayer: watchdogTimeoutS must be > 0 (got ${opts.watchdogTimeoutS})`);
    this.n = opts.limits.length;
    this.rampSteps = opts.rampS > 0 ? Math.ceil(opts.rampS / opts.dt - 1e-9) : 0;
    this.motion = { prevVel: new Float64Array(this.n), prevAcc: new Float64Array(this.n), rampStep: 0 };
    this.clampCounts = { relative: [], velocity: [], acceleration: [], jerk: [], position: [] };
    for (const k of CLAMP_KINDS) this.clampCounts[k] = new Array<number>(this.n).fill(0);
  }

  /**
   * Records a measured joint state `[joints]` received at `nowS`. A state with a wrong length or a
   * non-finite value is rejected (counted, returns false) and does not feed the watchdog.
   */
  observe(positions: ArrayLike<number>, nowS: number): boolean {
    if (positions.length !== this.n) {
      this.rejectedStates++;
      return false;
    }
    for (let i = 0; i < this.n; i++) {
      if (!Number.isFinite(positions[i])) {
        this.rejectedStates++;
        return false;
      }
    }
    this.measured = Float64Array.from(positions);
    this.measuredAtS = nowS;
    return true;
  }

  /**
   * Whether a person has taken the robot over: while true every step holds (`intervention`); once
   * false again the next command ramps from the measured position, as after any other hold.
   */
  setIntervention(active: boolean): void {
    if (active && !this.intervening) this.interventions++;
    this.intervening = active;
  }

  /** True while a person has the robot (see {@link setIntervention}). */
  get intervention(): boolean {
    return this.intervening;
  }

  /** The latest accepted measured state, or undefined. */
  get measuredPositions(): Float64Array | undefined {
    return this.measured;
  }

  /** Whether the latest accepted state is within the watchdog timeout at `nowS`. */
  stateFresh(nowS: number): boolean {
    return this.measured !== undefined && nowS - this.measuredAtS <= this.opts.watchdogTimeoutS;
  }

  /** Latches the e-stop: every later step holds until {@link resetEstop}. */
  estop(reason: string): void {
    this.estopReason ??= reason;
  }

  /** Whether the e-stop is latched. */
  get estopped(): boolean {
    return this.estopReason !== undefined;
  }

  /** Releases the e-stop (an operator's explicit action); the next command ramps from the measured position. */
  resetEstop(): void {
    this.estopReason = undefined;
    this.needRestart = true;
  }

  /**
   * Forces the next command to ramp from the measured position and forgets the last command (after
   * a reconnect, say: a hold then holds at the next measured position, never at an old command).
   */
  restart(): void {
    this.needRestart = true;
    delete this.motion.prev;
    delete this.motion.rampStart;
    this.motion.prevVel.fill(0);
    this.motion.prevAcc.fill(0);
  }

  /**
   * Checks a whole chunk `[horizon * joints]` before it enters the queue: false (and counted) when any
   * value is non-finite. The caller drops such a chunk.
   */
  checkChunk(chunk: ArrayLike<number>): boolean {
    for (let i = 0; i < chunk.length; i++) {
      if (!Number.isFinite(chunk[i])) {
        this.nonFiniteChunks++;
        return false;
      }
    }
    return true;
  }

  /**
   * Turns this step's target `[joints]` (or undefined when the queue is empty) into a safe command or
   * a hold, and advances the layer's state. Call exactly once per control step.
   */
  step(target: ArrayLike<number> | undefined, nowS: number): SafetyDecision {
    const reason = this.holdCause(target, nowS);
    if (reason !== undefined) return this.hold(reason);
    const q = this.filter(this.motion, target as ArrayLike<number>, { commit: true });
    this.holdReason = undefined;
    return { kind: "command", positions: q, ramping: this.motion.rampStart !== undefined };
  }

  /**
   * What {@link step} would command for the targets of the next steps, without changing state or
   * counters (to publish a whole chunk as one trajectory). `max_relative_target` checks the first
   * point against the measured position and each later one against the point before it. Stops
   * before the first target that would hold; `[k][joints]`.
   */
  preview(targets: readonly ArrayLike<number>[], nowS: number): Float64Array[] {
    const motion: Motion = {
      prevVel: Float64Array.from(this.motion.prevVel),
      prevAcc: Float64Array.from(this.motion.prevAcc),
      rampStep: this.motion.rampStep,
      ...(this.motion.prev ? { prev: Float64Array.from(this.motion.prev) } : {}),
      ...(this.motion.rampStart ? { rampStart: Float64Array.from(this.motion.rampStart) } : {}),
    };
    const saved = this.needRestart;
    const out: Float64Array[] = [];
    try {
      for (const t of targets) {
        if (this.holdCause(t, nowS, { count: false }) !== undefined) break;
        // later points are checked against the point before them, as if the robot tracked perfectly
        const relativeTo = out[out.length - 1];
        out.push(this.filter(motion, t, { commit: false, ...(relativeTo ? { relativeTo } : {}) }));
        this.needRestart = false;
      }
    } finally {
      this.needRestart = saved;
    }
    return out;
  }

  /** Counters since construction. */
  stats(): SafetyStats {
    const clamps = { relative: {}, velocity: {}, acceleration: {}, jerk: {}, position: {} } as SafetyStats["clamps"];
    let clampTotal = 0;
    for (const k of CLAMP_KINDS) {
      this.opts.limits.forEach((l, i) => {
        const c = this.clampCounts[k][i] ?? 0;
        clamps[k][l.name] = c;
        clampTotal += c;
      });
    }
    return {
      clamps,
      clampTotal,
      watchdogTrips: this.watchdogTrips,
      interventions: this.interventions,
      nonFiniteTargets: this.nonFiniteTargets,
      nonFiniteChunks: this.nonFiniteChunks,
      rejectedStates: this.rejectedStates,
      estop: this.estopReason !== undefined,
      ...(this.estopReason !== undefined ? { estopReason: this.estopReason } : {}),
      ...(this.holdReason !== undefined ? { holding: this.holdReason } : {}),
    };
  }

  private holdCause(
    target: ArrayLike<number> | undefined,
    nowS: number,
    opts = { count: true },
  ): HoldReason | undefined {
    if (this.estopReason !== undefined) return "estop";
    if (this.intervening) return "intervention";
    if (this.measured === undefined) return "no-state";
    if (!this.stateFresh(nowS)) {
      if (opts.count && this.holdReason !== "watchdog") this.watchdogTrips++;
      return "watchdog";
    }
    if (target === undefined) return "empty";
    if (target.length !== this.n)
      throw new RangeError(`SafetyLayer.step: target has ${target.length} values, expected ${this.n} joints`);
    for (let i = 0; i < this.n; i++) {
      if (!Number.isFinite(target[i])) {
        if (opts.count) this.nonFiniteTargets++;
        return "non-finite";
      }
    }
    return undefined;
  }

  private hold(reason: HoldReason): SafetyDecision {
    const entered = this.holdReason !== reason;
    this.holdReason = reason;
    if (reason === "empty") {
      this.motion.prevVel.fill(0);
      this.motion.prevAcc.fill(0);
    } else this.needRestart = true;
    const at = this.motion.prev ?? this.measured;
    return { kind: "hold", reason, entered, ...(at ? { positions: Float64Array.from(at) } : {}) };
  }

  private filter(
    m: Motion,
    target: ArrayLike<number>,
    opts: { commit: boolean; relativeTo?: Float64Array },
  ): Float64Array {
    const measured = this.measured as Float64Array;
    const rel = opts.relativeTo ?? measured;
    if (this.needRestart) {
      m.prev = Float64Array.from(measured);
      m.prevVel.fill(0);
      m.prevAcc.fill(0);
      m.rampStep = 0;
      if (this.rampSteps > 0) m.rampStart = Float64Array.from(measured);
      else delete m.rampStart;
      if (opts.commit) this.needRestart = false;
    }
    const prev = m.prev as Float64Array;
    const dt = this.opts.dt;
    const q = new Float64Array(this.n);
    let alpha = 1;
    if (m.rampStart) {
      m.rampStep++;
      alpha = m.rampStep / this.rampSteps;
    }
    const count = (k: ClampKind, i: number): void => {
      if (opts.commit) this.clampCounts[k][i] = (this.clampCounts[k][i] ?? 0) + 1;
    };
    for (let i = 0; i < this.n; i++) {
      const lim = this.opts.limits[i] as EffectiveJointLimits;
      const p = prev[i] as number;
      let x = target[i] as number;
      if (m.rampStart) {
        const s = m.rampStart[i] as number;
        x = s + alpha * (x - s);
      }
      if (lim.maxRelativeTarget !== undefined) {
        const c = clamp(x, (rel[i] as number) - lim.maxRelativeTarget, (rel[i] as number) + lim.maxRelativeTarget);
        if (c !== x) count("relative", i);
        x = c;
      }
      if (lim.maxVelocity !== undefined) {
        const c = clamp(x, p - lim.maxVelocity * dt, p + lim.maxVelocity * dt);
        if (c !== x) count("velocity", i);
        x = c;
      }
      if (lim.maxAcceleration !== undefined || lim.maxDeceleration !== undefined) {
        const v0 = m.prevVel[i] as number;
        const v = (x - p) / dt;
        // ros2_control's rule: the deceleration limit applies while the change opposes the velocity
        const slowing = (v - v0) * v0 < 0;
        const a = slowing ? (lim.maxDeceleration ?? lim.maxAcceleration) : lim.maxAcceleration;
        const vc = a === undefined ? v : clamp(v, v0 - a * dt, v0 + a * dt);
        if (vc !== v) {
          count("acceleration", i);
          x = p + vc * dt;
        }
      }
      if (lim.maxJerk !== undefined) {
        const v0 = m.prevVel[i] as number;
        const a0 = m.prevAcc[i] as number;
        const a = ((x - p) / dt - v0) / dt;
        const ac = clamp(a, a0 - lim.maxJerk * dt, a0 + lim.maxJerk * dt);
        if (ac !== a) {
          count("jerk", i);
          x = p + (v0 + ac * dt) * dt;
          if (lim.maxVelocity !== undefined) {
            // the velocity limit wins: a jerk limit must never push a joint past its top speed
            const c = clamp(x, p - lim.maxVelocity * dt, p + lim.maxVelocity * dt);
            if (c !== x) count("velocity", i);
            x = c;
          }
        }
      }
      const lo = lim.minPosition ?? -Infinity;
      const hi = lim.maxPosition ?? Infinity;
      const c = clamp(x, lo, hi);
      if (c !== x) count("position", i);
      q[i] = c;
    }
    for (let i = 0; i < this.n; i++) {
      const v = ((q[i] as number) - (prev[i] as number)) / dt;
      m.prevAcc[i] = (v - (m.prevVel[i] as number)) / dt;
      m.prevVel[i] = v;
    }
    m.prev = q;
    if (m.rampStart && m.rampStep >= this.rampSteps) delete m.rampStart;
    return Float64Array.from(q);
  }
}

function clamp(x: number, lo: number, hi: number): number {
  return x < lo ? lo : x > hi ? hi : x;
}
