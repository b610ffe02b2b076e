import { describe, expect, it } from "vitest";
import { float32Space, float64Space, integrate, solverByName, uniformGrid } from "../../../policy/flow/solvers.ts";
import type { SolverName, VectorSpace } from "../../../policy/flow/solvers.ts";

// Riccati test problem: dx/dt = cos(t) x^2, x(t) = 1 / (1/x0 - sin t). Nonlinear and time-dependent,
// so no solver gets lucky cancellations.
const riccati = (x: Float64Array, t: number): Float64Array => x.map((v) => Math.cos(t) * v * v);
const X0 = new Float64Array([0.6, -0.7, 0.3]);
const exactAt = (t: number): Float64Array => X0.map((v) => 1 / (1 / v - Math.sin(t)));

function maxError(x: Float64Array, exact: Float64Array): number {
  let e = 0;
  for (let i = 0; i < x.length; i++) e = Math.max(e, Math.abs(x[i]! - exact[i]!));
  return e;
}

/** A smooth non-uniform grid on [0, 1], dense at both ends: t_i = sin^2(pi i / (2N)). */
const sineGrid = (steps: number): number[] =>
  Array.from({ length: steps + 1 }, (_, i) => Math.sin((Math.PI / 2) * (i / steps)) ** 2);

const EXPECTED_ORDER: Record<SolverName, number> = { euler: 1, midpoint: 2, heun: 2, rk4: 4 };

describe("ODE solvers", () => {
  for (const name of Object.keys(EXPECTED_ORDER) as SolverName[]) {
    it(`${name}: observed order log2(e_N / e_2N) is ${EXPECTED_ORDER[name]} +- 0.3 on uniform and non-uniform grids`, () => {
      const solver = solverByName(name);
      expect(solver.order).toBe(EXPECTED_ORDER[name]);
      const exact = exactAt(1);
      for (const grid of [uniformGrid, sineGrid]) {
        const eN = maxError(integrate(solver, float64Space, riccati, X0, grid(32)).x, exact);
        const e2N = maxError(integrate(solver, float64Space, riccati, X0, grid(64)).x, exact);
        expect(Math.abs(Math.log2(eN / e2N) - solver.order)).toBeLessThan(0.3);
      }
    });
  }

  it("nfe = steps * evalsPerStep, and f is called exactly that often", () => {
    for (const [name, evals] of [
      ["euler", 1],
      ["midpoint", 2],
      ["heun", 2],
      ["rk4", 4],
    ] as const) {
      let calls = 0;
      const counted = (x: Float64Array, t: number): Float64Array => {
        calls++;
        return riccati(x, t);
      };
      const { nfe } = integrate(solverByName(name), float64Space, counted, X0, [0, 0.1, 0.5, 0.55, 1]);
      expect(solverByName(name).evalsPerStep).toBe(evals);
      expect(nfe).toBe(4 * evals);
      expect(calls).toBe(nfe);
    }
  });

  it("runs backwards on a decreasing grid (1 -> 0 inverts 0 -> 1)", () => {
    const rk4 = solverByName("rk4");
    const forward = integrate(rk4, float64Space, riccati, X0, uniformGrid(40)).x;
    const back = integrate(rk4, float64Space, riccati, forward, uniformGrid(40, 1, 0)).x;
    expect(maxError(back, X0)).toBeLessThan(1e-7);
  });

  it("never mutates its inputs and reports every step", () => {
    const x0 = Float64Array.from(X0);
    const seen: number[] = [];
    for (const name of ["euler", "midpoint", "heun", "rk4"]) {
      seen.length = 0;
      integrate(solverByName(name), float64Space, riccati, x0, [0, 0.25, 1], { onStep: (_x, t, i) => seen.push(i, t) });
      expect(Array.from(x0)).toEqual(Array.from(X0));
      expect(seen).toEqual([0, 0.25, 1, 1]);
    }
  });

  it("is generic over the value type: plain numbers, float32 arrays and a symbolic trace", () => {
    const scalar: VectorSpace<number> = { axpy: (y, a, x) => y + a * x };
    const { x } = integrate(solverByName("rk4"), scalar, (v, t) => Math.cos(t) * v * v, 0.6, uniformGrid(32));
    expect(x).toBeCloseTo(exactAt(1)[0]!, 7);

    const f32 = integrate(
      solverByName("heun"),
      float32Space,
      (v, t) => v.map((u) => Math.cos(t) * u * u),
      new Float32Array(X0),
      uniformGrid(64),
    ).x;
    expect(f32).toBeInstanceOf(Float32Array);
    expect(maxError(Float64Array.from(f32), exactAt(1))).toBeLessThan(1e-3);

    // Symbolic values, as the ONNX exporter uses them: the solver only combines them through axpy and f.
    const symbolic: VectorSpace<string> = { axpy: (y, a, x) => `(${y}+${a}*${x})` };
    const trace = integrate(solverByName("euler"), symbolic, (v, t) => `v(${v},${t})`, "x", [0, 0.5, 1]).x;
    expect(trace).toBe("((x+0.5*v(x,0))+0.5*v((x+0.5*v(x,0)),0.5))");
  });

  it("uniformGrid, grid checks and solver names", () => {
    expect(uniformGrid(4)).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect(uniformGrid(3, 1, 0).at(-1)).toBe(0);
    expect(uniformGrid(10).at(-1)).toBe(1);
    expect(() => uniformGrid(0)).toThrow(/positive integer/);
    expect(() => integrate(solverByName("euler"), float64Space, riccati, X0, [0])).toThrow(/at least 2/);
    expect(() => integrate(solverByName("euler"), float64Space, riccati, X0, [0, 0.5, 0.5, 1])).toThrow(
      /strictly monotone/,
    );
    expect(() => integrate(solverByName("euler"), float64Space, riccati, X0, [0, 0.5, 0.2])).toThrow(
      /grid\[1\]=0.5 and grid\[2\]=0.2/,
    );
    expect(() => solverByName("dopri5")).toThrow(
      "unknown ODE solver 'dopri5'; valid solvers: euler, midpoint, heun, rk4",
    );
    expect(() => solverByName("toString")).toThrow(/valid solvers/);
    expect(() => float64Space.axpy(new Float64Array(2), 1, new Float64Array(3))).toThrow(/length mismatch/);
  });
});
