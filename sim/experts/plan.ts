/**
 * Cartesian paths for the scripted experts: Bézier curves timed by a minimum-jerk profile, and the
 * shared machinery turning a desired end-effector point into noisy joint targets through IK.
 */
import type { Rng } from "../../policy/random.ts";
import type { Vec3 } from "../env.ts";
import type { Task } from "../tasks/task.ts";
import { SiteIk } from "./ik.ts";

/** Minimum-jerk time scaling: s(0) = 0, s(1) = 1, zero velocity and acceleration at both ends. */
export function minJerk(u: number): number {
  const x = Math.min(1, Math.max(0, u));
  return x * x * x * (10 - 15 * x + 6 * x * x);
}

/** A point on the Bézier curve with control points `pts` at parameter `t` in [0, 1] (de Casteljau). */
export function bezier(pts: Vec3[], t: number): Vec3 {
  let level = pts.map((p) => [...p] as Vec3);
  while (level.length > 1) {
    const next: Vec3[] = [];
    for (let i = 0; i + 1 < level.length; i++) {
      const a = level[i] as Vec3;
      const b = level[i + 1] as Vec3;
      next.push([a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), a[2] + t * (b[2] - a[2])]);
    }
    level = next;
  }
  return level[0] ?? [0, 0, 0];
}

/** A timed path: control points and a duration (seconds); position at time t via minimum jerk. */
export interface TimedCurve {
  points: Vec3[];
  duration: number;
}

/** Position on a timed curve at time `t` seconds after its start (held at the end afterwards). */
export function curveAt(curve: TimedCurve, t: number): Vec3 {
  return bezier(curve.points, minJerk(t / curve.duration));
}

/**
 * Position on a sequence of timed curves run one after the other (each starts where the previous
 * ended, at rest), at time `t` seconds after the first starts; held at the last curve's end afterwards.
 */
export function pathAt(curves: readonly TimedCurve[], t: number): Vec3 {
  let t0 = 0;
  for (const c of curves) {
    if (t < t0 + c.duration) return curveAt(c, Math.max(0, t - t0));
    t0 += c.duration;
  }
  const last = curves[curves.length - 1];
  if (!last) throw new RangeError("pathAt: no curves");
  return curveAt(last, last.duration);
}

/** Moves `from` towards `to` by at most `maxStep` metres. */
export function stepToward(from: Vec3, to: Vec3, maxStep: number): Vec3 {
  const d: Vec3 = [to[0] - from[0], to[1] - from[1], to[2] - from[2]];
  const n = Math.hypot(d[0], d[1], d[2]);
  if (n <= maxStep || n === 0) return [...to];
  const k = maxStep / n;
  return [from[0] + k * d[0], from[1] + k * d[1], from[2] + k * d[2]];
}

/** A scripted expert: one action (joint position targets, float32, action order) per control step. */
export interface Expert {
  /** The next action, given the task's current state. */
  act(): Float32Array;
  /**
   * The next `steps` actions, flat [steps, actionDim], for experts that follow a timed path (open
   * loop); absent for closed-loop experts. Does not advance the task.
   */
  plan?(steps: number): Float32Array;
  /** The solution mode this episode ("left"/"right" for avoid); undefined for single-mode tasks. */
  readonly mode?: string;
  /** Frees the IK solver. */
  dispose(): void;
}

/**
 * An open-loop expert that moves the end effector along `path` (position, metres, at time t seconds after the
 * reset): the action of control step k places it at path((k + 1) / fps). It owns `driver` and frees it.
 */
export function pathExpert(task: Task, driver: IkDriver, path: (t: number) => Vec3, mode?: string): Expert {
  const fps = task.env.fps;
  const at = (step: number): Float32Array => driver.targetFor(path((step + 1) / fps));
  return {
    ...(mode !== undefined ? { mode } : {}),
    act: () => at(task.stepsTaken),
    plan: (steps) => planSteps(at, task.stepsTaken, steps, task.env.dim),
    dispose: () => driver.dispose(),
  };
}

/**
 * The way a two-mode expert goes (avoid, fork): `mode` when forced, else a fair coin. The coin is drawn either way,
 * so forcing the mode leaves the rest of the episode's variation unchanged. `side` is +1 for left (+y), -1 for right.
 */
export function pickSide(rng: Rng, mode?: "left" | "right"): { mode: "left" | "right"; side: 1 | -1 } {
  const coin = rng.uniform() < 0.5 ? "left" : "right";
  const chosen = mode ?? coin;
  return { mode: chosen, side: chosen === "left" ? 1 : -1 };
}

/** Options for {@link IkDriver}. */
export interface IkDriverOptions {
  /** Gripper target (joint units); default: keep the current gripper position. */
  gripper?: number;
  /** Standard deviation of Gaussian noise added to the arm joint targets (radians); default 0.002. */
  actionNoise?: number;
}

/** Turns desired end-effector points into joint targets by warm-started IK, adding action noise. */
export class IkDriver {
  private readonly ik: SiteIk;
  private q: number[];
  private readonly gripper: number | undefined;
  private readonly noise: number;

  /** Starts from the task's current joint positions. */
  constructor(
    private readonly task: Task,
    private readonly rng: Rng,
    opts: IkDriverOptions = {},
  ) {
    this.ik = new SiteIk(task.env);
    this.q = task.env.jointPositions64();
    const gi = task.env.scene.gripper?.index;
    this.gripper = opts.gripper ?? (gi === undefined ? undefined : this.q[gi]);
    this.noise = opts.actionNoise ?? 0.002;
  }

  /** Joint targets (float32, rounded as stored in datasets) placing the end effector at `p`. */
  targetFor(p: Vec3): Float32Array {
    this.q = this.ik.solve(p, this.q).q;
    const env = this.task.env;
    const gi = env.scene.gripper?.index;
    const out = new Float32Array(env.dim);
    for (let i = 0; i < env.dim; i++) {
      if (i === gi) {
        out[i] = this.gripper ?? this.q[i] ?? 0;
        continue;
      }
      const [lo, hi] = env.ranges[i] ?? [-Infinity, Infinity];
      out[i] = Math.min(hi, Math.max(lo, (this.q[i] ?? 0) + this.noise * this.rng.normal()));
    }
    return out;
  }

  /** Frees the IK solver. */
  dispose(): void {
    this.ik.dispose();
  }
}

/** Actions [steps, dim] from a per-step action function, starting at step `from`. */
export function planSteps(at: (step: number) => Float32Array, from: number, steps: number, dim: number): Float32Array {
  const out = new Float32Array(steps * dim);
  for (let i = 0; i < steps; i++) out.set(at(from + i), i * dim);
  return out;
}
