/**
 * Log-likelihood of a data point under a flow-matching model, by the continuous-normalising-flow
 * change of variables (Chen et al. 2018; Grathwohl et al. 2019, FFJORD):
 *
 *   log p1(x1) = log p0(x0) - integral_0^1 div v(x_t, t) dt,
 *
 * where x_t solves dx/dt = v(x, t) backwards from x1 at t = 1 to x0 at t = 0 (our convention:
 * t = 0 noise N(0, I), t = 1 data). The ODE for (x, integral of div v) is integrated with RK4 on a
 * uniform grid. The divergence is either exact (the trace of the Jacobian by central differences
 * along every axis: 1 + 2D evaluations per stage, for small D) or Hutchinson's estimator with P
 * Rademacher probes fixed along the path (E[e^T J e] = tr J; 1 + 2P evaluations per stage); each
 * probe gives one unbiased estimate of log p1, and their spread gives the standard error.
 *
 * The velocity is any batched function ({@link VelocityField}): a closed-form field in tests, the
 * exported velocity graph in `eval/offline.ts`. Everything is float64 here; the field may compute
 * in float32 (the finite-difference step {@link LogLikelihoodOptions.fdStep} is sized for that).
 */
import { Rng } from "../policy/random.ts";

/**
 * A velocity field evaluated on a batch of points at one time: `xs[i]` `[D]` -> `v(xs[i], t)` `[D]`.
 * May be synchronous (a formula) or asynchronous (onnxruntime).
 */
export type VelocityField = (xs: readonly Float64Array[], t: number) => Float64Array[] | Promise<Float64Array[]>;

/** How the divergence is computed: see the module doc. `auto`: exact when D <= `exactMaxDim`. */
export type TraceMethod = "exact" | "hutchinson" | "auto";

/** Options of {@link flowLogLikelihood}. */
export interface LogLikelihoodOptions {
  /** RK4 steps from t = 1 to t = 0 (default 32). */
  steps?: number;
  /** Divergence method (default `auto`). */
  trace?: TraceMethod;
  /** Largest D for which `auto` takes the exact trace (default 64). */
  exactMaxDim?: number;
  /** Hutchinson probes (default 8; at least 2, for a standard error). */
  probes?: number;
  /** Seed of the Hutchinson probes (default 0). */
  seed?: number;
  /** Central-difference step in x (default 1e-2: accurate to ~1e-5 for float32 fields of unit scale). */
  fdStep?: number;
  /** Points per call of the velocity field at most (default 256); larger stages are split. */
  maxBatch?: number;
}

/** The estimate for one point. */
export interface LogLikelihood {
  /** log p1(x1) in nats (total over the D dims). */
  logLikelihood: number;
  /** `logLikelihood / D`. */
  perDim: number;
  /** Standard error of `logLikelihood` over the probes (0 for the exact trace). */
  stdErr: number;
  method: "exact" | "hutchinson";
  /** Points evaluated by the velocity field. */
  nfe: number;
  /** The noise point x0 the path reached at t = 0. */
  x0: Float64Array;
}

const LOG_2PI = Math.log(2 * Math.PI);

/**
 * Estimates log p1(x1) of `x1` `[D]` under the flow of `velocity` (see the module doc). Throws when a
 * velocity is not finite, naming the time.
 */
export async function flowLogLikelihood(
  velocity: VelocityField,
  x1: Float64Array,
  opts: LogLikelihoodOptions = {},
): Promise<LogLikelihood> {
  const D = x1.length;
  if (D < 1) throw new RangeError("flowLogLikelihood: x1 is empty");
  const steps = opts.steps ?? 32;
  if (!Number.isInteger(steps) || steps < 1)
    throw new RangeError(`flowLogLikelihood: steps must be a positive integer, got ${steps}`);
  const h = opts.fdStep ?? 1e-2;
  if (!(h > 0)) throw new RangeError(`flowLogLikelihood: fdStep must be > 0, got ${h}`);
  const requested = opts.trace ?? "auto";
  const method: "exact" | "hutchinson" =
    requested === "auto" ? (D <= (opts.exactMaxDim ?? 64) ? "exact" : "hutchinson") : requested;
  const P = method === "exact" ? 1 : (opts.probes ?? 8);
  if (method === "hutchinson" && (!Number.isInteger(P) || P < 2))
    throw new RangeError(`flowLogLikelihood: probes must be an integer >= 2, got ${P}`);
  const maxBatch = opts.maxBatch ?? 256;

  // Rademacher probes, fixed along the path (FFJORD).
  const rng = new Rng(opts.seed ?? 0);
  const probes: Float64Array[] = [];
  if (method === "hutchinson")
    for (let p = 0; p < P; p++) probes.push(Float64Array.from({ length: D }, () => (rng.uniform() < 0.5 ? -1 : 1)));

  let nfe = 0;
  const evaluate = async (xs: Float64Array[], t: number): Promise<Float64Array[]> => {
    const out: Float64Array[] = [];
    for (let i = 0; i < xs.length; i += maxBatch) {
      const part = xs.slice(i, i + maxBatch);
      const v = await velocity(part, t);
      if (v.length !== part.length)
        throw new Error(`velocity field returned ${v.length} points for ${part.length} at t=${t}`);
      out.push(...v);
    }
    nfe += xs.length;
    for (const v of out) {
      if (v.length !== D) throw new Error(`velocity field returned ${v.length} values, expected ${D} at t=${t}`);
      for (let j = 0; j < D; j++)
        if (!Number.isFinite(v[j]!)) throw new Error(`velocity field is not finite (${v[j]}) at t=${t}, dim ${j}`);
    }
    return out;
  };

  /** v(x, t) and the divergence per probe (one entry for the exact trace). */
  const field = async (x: Float64Array, t: number): Promise<{ v: Float64Array; div: Float64Array }> => {
    const pts: Float64Array[] = [x];
    if (method === "exact") {
      for (let j = 0; j < D; j++) {
        const plus = x.slice();
        const minus = x.slice();
        plus[j] = plus[j]! + h;
        minus[j] = minus[j]! - h;
        pts.push(plus, minus);
      }
    } else {
      for (const e of probes) {
        const plus = new Float64Array(D);
        const minus = new Float64Array(D);
        for (let j = 0; j < D; j++) {
          plus[j] = x[j]! + h * e[j]!;
          minus[j] = x[j]! - h * e[j]!;
        }
        pts.push(plus, minus);
      }
    }
    const vs = await evaluate(pts, t);
    const div = new Float64Array(P);
    if (method === "exact") {
      let s = 0;
      for (let j = 0; j < D; j++) s += (vs[1 + 2 * j]![j]! - vs[2 + 2 * j]![j]!) / (2 * h);
      div[0] = s;
    } else {
      for (let p = 0; p < P; p++) {
        const plus = vs[1 + 2 * p]!;
        const minus = vs[2 + 2 * p]!;
        const e = probes[p]!;
        let s = 0;
        for (let j = 0; j < D; j++) s += (e[j]! * (plus[j]! - minus[j]!)) / (2 * h);
        div[p] = s;
      }
    }
    return { v: vs[0]!, div };
  };

  // RK4 from t = 1 to t = 0 on (x, c_p), dc_p/dt = div_p; c(1) = 0, so log p1 = log p0(x0) + c(0).
  let x = Float64Array.from(x1);
  const c = new Float64Array(P);
  const dt = -1 / steps;
  const axpy = (a: Float64Array, s: number, b: Float64Array): Float64Array => {
    const out = new Float64Array(a.length);
    for (let j = 0; j < a.length; j++) out[j] = a[j]! + s * b[j]!;
    return out;
  };
  for (let i = 0; i < steps; i++) {
    const t = 1 + i * dt;
    const k1 = await field(x, t);
    const k2 = await field(axpy(x, dt / 2, k1.v), t + dt / 2);
    const k3 = await field(axpy(x, dt / 2, k2.v), t + dt / 2);
    const k4 = await field(axpy(x, dt, k3.v), t + dt);
    const next = new Float64Array(D);
    for (let j = 0; j < D; j++) next[j] = x[j]! + (dt / 6) * (k1.v[j]! + 2 * k2.v[j]! + 2 * k3.v[j]! + k4.v[j]!);
    for (let p = 0; p < P; p++) c[p] = c[p]! + (dt / 6) * (k1.div[p]! + 2 * k2.div[p]! + 2 * k3.div[p]! + k4.div[p]!);
    x = next;
  }
  let sq = 0;
  for (let j = 0; j < D; j++) sq += x[j]! * x[j]!;
  const logP0 = -0.5 * sq - 0.5 * D * LOG_2PI;
  const estimates = Array.from(c, (cp) => logP0 + cp);
  const mean = estimates.reduce((a, b) => a + b, 0) / P;
  const stdErr = P > 1 ? Math.sqrt(estimates.reduce((a, b) => a + (b - mean) * (b - mean), 0) / (P - 1) / P) : 0;
  return { logLikelihood: mean, perDim: mean / D, stdErr, method, nfe, x0: x };
}
