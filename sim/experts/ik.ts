/**
 * Inverse kinematics of the end-effector site by damped least squares on MuJoCo's site Jacobian
 * (`mj_jacSite`), solved on a private `MjData` so the simulation state is never touched.
 *
 * Objective: site position = target (metres), and optionally the site's z axis pointing along a
 * given direction (the gripper pointing down), weighted by `pointWeight`. Step:
 * `dq = J^T (J J^T + lambda^2 I)^-1 e`, clamped to the joint ranges; the gripper joint is left alone.
 */
import type { MjData } from "../mujoco.ts";
import { f64 } from "../mujoco.ts";
import type { SimEnv, Vec3 } from "../env.ts";

/** Options for {@link SiteIk.solve}. */
export interface IkSolveOptions {
  /**
   * Desired direction of the site's z axis (unit vector); default [0, 0, -1] (pointing down). Null to ignore
   * orientation.
   */
  pointAlong?: Vec3 | null;
  /** Weight of the pointing error (radians) against the position error (metres); default 0.1. */
  pointWeight?: number;
  /** Damping lambda; default 0.01. */
  damping?: number;
  /** Iteration cap; default 60. */
  maxIters?: number;
  /** Stop when the position error is below this (metres); default 1e-4. */
  tol?: number;
}

/** Result of an IK solve. */
export interface IkResult {
  /** Joint values in the environment's state order (gripper copied from the start pose). */
  q: number[];
  /** Remaining position error (metres). */
  error: number;
}

/** Damped-least-squares IK for an environment's end-effector site. Free it with {@link SiteIk.dispose}. */
export class SiteIk {
  private readonly data: MjData;
  private readonly jacp;
  private readonly jacr;
  /** Indices (state order) of the joints IK may move. */
  private readonly active: number[];

  /** Creates an IK solver for `env`'s site over every mapped joint except the gripper. */
  constructor(private readonly env: SimEnv) {
    this.data = new env.mj.MjData(env.model);
    this.jacp = new env.mj.DoubleBuffer(3 * env.model.nv);
    this.jacr = new env.mj.DoubleBuffer(3 * env.model.nv);
    this.active = [];
    for (let i = 0; i < env.dim; i++) if (i !== env.scene.gripper?.index) this.active.push(i);
  }

  /** Site position for joint values `q` (state order). */
  forward(q: ArrayLike<number>): Vec3 {
    this.setQ(q);
    const { mj, model } = this.env;
    mj.mj_kinematics(model, this.data);
    const p = f64(this.data.site_xpos);
    const s = this.env.eeSiteId;
    return [p[3 * s] ?? 0, p[3 * s + 1] ?? 0, p[3 * s + 2] ?? 0];
  }

  /** Solves for joint values putting the site at `target`, starting from `q0` (state order). */
  solve(target: Vec3, q0: ArrayLike<number>, opts: IkSolveOptions = {}): IkResult {
    const { mj, model } = this.env;
    const pointAlong = opts.pointAlong === undefined ? ([0, 0, -1] as Vec3) : opts.pointAlong;
    const w = opts.pointWeight ?? 0.1;
    const lambda2 = (opts.damping ?? 0.01) ** 2;
    const maxIters = opts.maxIters ?? 60;
    const tol = opts.tol ?? 1e-4;
    const q = Array.from(q0, Number);
    const n = this.active.length;
    // Pointing rows are the error and Jacobian projected on the site's x and y axes: turning about
    // the site's own z axis (wrist roll) does not change where it points, so IK leaves it alone.
    const rows = pointAlong ? 5 : 3;
    const J = new Float64Array(rows * n);
    const e = new Float64Array(rows);
    const s = this.env.eeSiteId;
    const nv = model.nv;
    let err = Infinity;
    for (let it = 0; it <= maxIters; it++) {
      this.setQ(q);
      mj.mj_kinematics(model, this.data);
      mj.mj_comPos(model, this.data);
      const p = f64(this.data.site_xpos);
      e[0] = target[0] - (p[3 * s] ?? 0);
      e[1] = target[1] - (p[3 * s + 1] ?? 0);
      e[2] = target[2] - (p[3 * s + 2] ?? 0);
      err = Math.hypot(e[0], e[1], e[2]);
      let rotErr = 0;
      const R = f64(this.data.site_xmat);
      // Columns of the site's rotation matrix (row-major 3x3) are its axes in world coordinates.
      const ax: Vec3 = [R[9 * s] ?? 0, R[9 * s + 3] ?? 0, R[9 * s + 6] ?? 0];
      const ay: Vec3 = [R[9 * s + 1] ?? 0, R[9 * s + 4] ?? 0, R[9 * s + 7] ?? 0];
      if (pointAlong) {
        const az: Vec3 = [R[9 * s + 2] ?? 0, R[9 * s + 5] ?? 0, R[9 * s + 8] ?? 0];
        const c = cross(az, pointAlong);
        e[3] = w * dot(ax, c);
        e[4] = w * dot(ay, c);
        rotErr = Math.hypot(c[0], c[1], c[2]);
      }
      if ((err < tol && rotErr < 1e-3) || it === maxIters) break;
      mj.mj_jacSite(model, this.data, this.jacp, pointAlong ? this.jacr : null, s);
      const jp = this.jacp.GetView() as Float64Array;
      const jr = this.jacr.GetView() as Float64Array;
      for (let k = 0; k < n; k++) {
        const dof = this.env.dofAdr[this.active[k] ?? 0] ?? 0;
        for (let r = 0; r < 3; r++) J[r * n + k] = jp[r * nv + dof] ?? 0;
        if (pointAlong) {
          const om: Vec3 = [jr[dof] ?? 0, jr[nv + dof] ?? 0, jr[2 * nv + dof] ?? 0];
          J[3 * n + k] = w * dot(ax, om);
          J[4 * n + k] = w * dot(ay, om);
        }
      }
      const dq = dlsStep(J, e, rows, n, lambda2);
      let norm = 0;
      for (const v of dq) norm = Math.max(norm, Math.abs(v));
      const scale = norm > 0.3 ? 0.3 / norm : 1;
      for (let k = 0; k < n; k++) {
        const i = this.active[k] ?? 0;
        const [lo, hi] = this.env.ranges[i] ?? [-Infinity, Infinity];
        q[i] = Math.min(hi, Math.max(lo, (q[i] ?? 0) + scale * (dq[k] ?? 0)));
      }
    }
    return { q, error: err };
  }

  /** Frees the private data and Jacobian buffers. */
  dispose(): void {
    this.data.delete();
    this.jacp.delete();
    this.jacr.delete();
  }

  private setQ(q: ArrayLike<number>): void {
    const qpos = f64(this.data.qpos);
    for (let i = 0; i < this.env.dim; i++) qpos[this.env.qposAdr[i] ?? 0] = Number(q[i] ?? 0);
  }
}

function dot(a: Vec3, b: Vec3): number {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

function cross(a: Vec3, b: Vec3): Vec3 {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

/** dq = J^T (J J^T + lambda2 I)^-1 e for a rows x n Jacobian (row-major), by Cholesky. */
function dlsStep(J: Float64Array, e: Float64Array, rows: number, n: number, lambda2: number): Float64Array {
  const A = new Float64Array(rows * rows);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += (J[i * n + k] ?? 0) * (J[j * n + k] ?? 0);
      if (i === j) s += lambda2;
      A[i * rows + j] = s;
      A[j * rows + i] = s;
    }
  }
  // Cholesky A = L L^T in place (lower triangle).
  for (let j = 0; j < rows; j++) {
    let d = A[j * rows + j] ?? 0;
    for (let k = 0; k < j; k++) d -= (A[j * rows + k] ?? 0) ** 2;
    const ljj = Math.sqrt(Math.max(d, 1e-300));
    A[j * rows + j] = ljj;
    for (let i = j + 1; i < rows; i++) {
      let s = A[i * rows + j] ?? 0;
      for (let k = 0; k < j; k++) s -= (A[i * rows + k] ?? 0) * (A[j * rows + k] ?? 0);
      A[i * rows + j] = s / ljj;
    }
  }
  const y = Float64Array.from(e);
  for (let i = 0; i < rows; i++) {
    let s = y[i] ?? 0;
    for (let k = 0; k < i; k++) s -= (A[i * rows + k] ?? 0) * (y[k] ?? 0);
    y[i] = s / (A[i * rows + i] ?? 1);
  }
  for (let i = rows - 1; i >= 0; i--) {
    let s = y[i] ?? 0;
    for (let k = i + 1; k < rows; k++) s -= (A[k * rows + i] ?? 0) * (y[k] ?? 0);
    y[i] = s / (A[i * rows + i] ?? 1);
  }
  const dq = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    let s = 0;
    for (let r = 0; r < rows; r++) s += (J[r * n + k] ?? 0) * (y[r] ?? 0);
    dq[k] = s;
  }
  return dq;
}
