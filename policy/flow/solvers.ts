/**
 * Explicit ODE solvers for sampling a flow: integrate dx/dt = v(x, t) from noise (t = 0) to data (t = 1).
 *
 * The solvers are generic over the value type T and touch values only through `VectorSpace.axpy`
 * and the velocity function, so one implementation runs on Float64Array (tests), tfjs tensors
 * (training-time sampling) and symbolic ONNX values (the exporter unrolls the steps into a graph).
 * No step mutates its input. Grids are arbitrary: any strictly monotone list of times, so
 * integrating from 1 to 0 runs the flow backwards (data to noise).
 */

/** The one operation a solver needs on values: y + alpha * x, returned as a new value. */
export interface VectorSpace<T> {
  /** Returns y + alpha * x; must not modify y or x. */
  axpy(y: T, alpha: number, x: T): T;
}

/** The velocity field v(x, t) of the flow; t is a scalar time shared by the whole value. */
export type VelocityFn<T> = (x: T, t: number) => T;

/** Names of the built-in solvers. */
export type SolverName = "euler" | "midpoint" | "heun" | "rk4";

/** A one-step explicit Runge-Kutta method. */
export interface OdeSolver {
  readonly name: SolverName;
  /** Global order of accuracy: error O(h^order). */
  readonly order: number;
  /** Velocity evaluations (NFE) per step. */
  readonly evalsPerStep: number;
  /** Advances x from time t0 to t1 (t1 < t0 is allowed); returns a new value. */
  step<T>(space: VectorSpace<T>, f: VelocityFn<T>, x: T, t0: number, t1: number): T;
}

/** Forward Euler: x + h v(x, t0). Order 1, 1 evaluation. */
export const euler: OdeSolver = {
  name: "euler",
  order: 1,
  evalsPerStep: 1,
  step(space, f, x, t0, t1) {
    return space.axpy(x, t1 - t0, f(x, t0));
  },
};

/** Explicit midpoint: x + h v(x + h/2 v(x, t0), t0 + h/2). Order 2, 2 evaluations. */
export const midpoint: OdeSolver = {
  name: "midpoint",
  order: 2,
  evalsPerStep: 2,
  step(space, f, x, t0, t1) {
    const h = t1 - t0;
    const k1 = f(x, t0);
    const k2 = f(space.axpy(x, h / 2, k1), t0 + h / 2);
    return space.axpy(x, h, k2);
  },
};

/** Heun (explicit trapezoid): x + h/2 (k1 + k2), k2 = v(x + h k1, t1). Order 2, 2 evaluations. */
export const heun: OdeSolver = {
  name: "heun",
  order: 2,
  evalsPerStep: 2,
  step(space, f, x, t0, t1) {
    const h = t1 - t0;
    const k1 = f(x, t0);
    const k2 = f(space.axpy(x, h, k1), t1);
    return space.axpy(space.axpy(x, h / 2, k1), h / 2, k2);
  },
};

/** The classic fourth-order Runge-Kutta method. Order 4, 4 evaluations. */
export const rk4: OdeSolver = {
  name: "rk4",
  order: 4,
  evalsPerStep: 4,
  step(space, f, x, t0, t1) {
    const h = t1 - t0;
    const tm = t0 + h / 2;
    const k1 = f(x, t0);
    const k2 = f(space.axpy(x, h / 2, k1), tm);
    const k3 = f(space.axpy(x, h / 2, k2), tm);
    const k4 = f(space.axpy(x, h, k3), t1);
    let out = space.axpy(x, h / 6, k1);
    out = space.axpy(out, h / 3, k2);
    out = space.axpy(out, h / 3, k3);
    return space.axpy(out, h / 6, k4);
  },
};

const SOLVERS: Readonly<Record<SolverName, OdeSolver>> = { euler, midpoint, heun, rk4 };

/** Every solver name, in order of increasing order of accuracy (what `--solver` accepts). */
export const SOLVER_NAMES: readonly SolverName[] = ["euler", "midpoint", "heun", "rk4"];

/** The solver called `name`; throws listing the valid names otherwise. */
export function solverByName(name: string): OdeSolver {
  const solver = Object.hasOwn(SOLVERS, name) ? SOLVERS[name as SolverName] : undefined;
  if (solver === undefined) {
    throw new Error(`unknown ODE solver '${name}'; valid solvers: ${Object.keys(SOLVERS).join(", ")}`);
  }
  return solver;
}

/** Options of `integrate`. */
export interface IntegrateOptions<T> {
  /** Called after every step with the new value, its time and the step index (0-based). */
  onStep?: (x: T, t: number, index: number) => void;
}

/**
 * Integrates dx/dt = f(x, t) over `grid` (strictly increasing or strictly decreasing times, at
 * least two), one solver step per interval. Returns the final value and the number of velocity
 * evaluations nfe = (grid.length - 1) * solver.evalsPerStep.
 */
export function integrate<T>(
  solver: OdeSolver,
  space: VectorSpace<T>,
  f: VelocityFn<T>,
  x0: T,
  grid: readonly number[],
  opts: IntegrateOptions<T> = {},
): { x: T; nfe: number } {
  checkGrid(grid);
  let x = x0;
  for (let i = 0; i + 1 < grid.length; i++) {
    const t1 = grid[i + 1]!;
    x = solver.step(space, f, x, grid[i]!, t1);
    opts.onStep?.(x, t1, i);
  }
  return { x, nfe: (grid.length - 1) * solver.evalsPerStep };
}

/** `steps + 1` equally spaced times from t0 to t1 (default 0 to 1); the last is exactly t1. */
export function uniformGrid(steps: number, t0 = 0, t1 = 1): number[] {
  if (!Number.isInteger(steps) || steps <= 0)
    throw new RangeError(`uniformGrid: steps must be a positive integer, got ${steps}`);
  if (!Number.isFinite(t0) || !Number.isFinite(t1) || t0 === t1) {
    throw new RangeError(`uniformGrid: need finite t0 != t1, got t0=${t0}, t1=${t1}`);
  }
  const grid = new Array<number>(steps + 1);
  for (let i = 0; i < steps; i++) grid[i] = t0 + ((t1 - t0) * i) / steps;
  grid[steps] = t1;
  return grid;
}

function checkGrid(grid: readonly number[]): void {
  if (grid.length < 2) throw new RangeError(`integrate: the time grid needs at least 2 points, got ${grid.length}`);
  const direction = Math.sign(grid[1]! - grid[0]!);
  for (let i = 0; i < grid.length; i++) {
    const t = grid[i]!;
    if (!Number.isFinite(t)) throw new RangeError(`integrate: grid[${i}] is not finite: ${t}`);
    if (i > 0 && !(Math.sign(t - grid[i - 1]!) === direction && direction !== 0)) {
      throw new RangeError(
        `integrate: the time grid must be strictly monotone, but grid[${i - 1}]=${grid[i - 1]} and grid[${i}]=${t}`,
      );
    }
  }
}

/** Float64Array vector space (new array per axpy); lengths must match. */
export const float64Space: VectorSpace<Float64Array> = {
  axpy(y, alpha, x) {
    checkLengths(y, x);
    const out = new Float64Array(y.length);
    for (let i = 0; i < y.length; i++) out[i] = y[i]! + alpha * x[i]!;
    return out;
  },
};

/** Float32Array vector space (new array per axpy, float32 storage); lengths must match. */
export const float32Space: VectorSpace<Float32Array> = {
  axpy(y, alpha, x) {
    checkLengths(y, x);
    const out = new Float32Array(y.length);
    for (let i = 0; i < y.length; i++) out[i] = y[i]! + alpha * x[i]!;
    return out;
  },
};

function checkLengths(y: ArrayLike<number>, x: ArrayLike<number>): void {
  if (y.length !== x.length)
    throw new RangeError(`axpy: length mismatch, y has ${y.length} values and x has ${x.length}`);
}
