/**
 * Probability paths between noise and data: the interpolant flow matching regresses along.
 *
 * Convention (Lipman et al. 2023, Liu et al. 2023): t = 0 is noise x0 ~ N(0, I), t = 1 is data x1.
 * A path is affine in (x1, x0):
 *
 *   x_t = alpha(t) x1 + sigma(t) x0,        u_t = dAlpha(t) x1 + dSigma(t) x0  (= d x_t / dt)
 *
 * and the network is trained to predict u_t at (x_t, t). openpi and LeRobot use the opposite time
 * direction (t = 1 noise): convert with t_ours = 1 - t_theirs, u_ours = -u_theirs.
 */
import { z } from "zod";

/** The serialisable description of a path: `linear`, or `sigma_min` with sigmaMin in [0, 1). Unknown keys are refused. */
export const PathSchema = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("linear") }),
  z.strictObject({ kind: z.literal("sigma_min"), sigmaMin: z.number().min(0).lt(1) }),
]);
/** A path's description (see {@link PathSchema}); {@link pathFromConfig} builds it. */
export type PathConfig = z.infer<typeof PathSchema>;

/** An affine conditional probability path x_t = alpha(t) x1 + sigma(t) x0, t in [0, 1]. */
export interface ProbPath {
  /** Short name for logs and checkpoints, e.g. `linear` or `sigma_min(0.001)`. */
  readonly name: string;
  /** Coefficient of the data x1; alpha(0) = 0, alpha(1) = 1. */
  alpha(t: number): number;
  /** Coefficient of the noise x0; sigma(0) = 1. */
  sigma(t: number): number;
  /** d alpha / dt. */
  dAlpha(t: number): number;
  /** d sigma / dt. */
  dSigma(t: number): number;
}

/** The straight (rectified-flow / optimal-transport) path: x_t = t x1 + (1 - t) x0, u = x1 - x0. */
export function linearPath(): ProbPath {
  return {
    name: "linear",
    alpha: (t) => t,
    sigma: (t) => 1 - t,
    dAlpha: () => 1,
    dSigma: () => -1,
  };
}

/**
 * Lipman's OT path with a noise floor: x_t = t x1 + (1 - (1 - s) t) x0, u = x1 - (1 - s) x0,
 * so x_1 ~ data blurred by N(0, s^2 I). `sigmaMin` = s must lie in [0, 1); s = 0 is `linearPath`.
 */
export function sigmaMinPath(sigmaMin: number): ProbPath {
  if (!(sigmaMin >= 0 && sigmaMin < 1)) {
    throw new RangeError(`sigmaMinPath: sigmaMin must be in [0, 1), got ${sigmaMin}`);
  }
  const k = 1 - sigmaMin;
  return {
    name: `sigma_min(${sigmaMin})`,
    alpha: (t) => t,
    sigma: (t) => 1 - k * t,
    dAlpha: () => 1,
    dSigma: () => -k,
  };
}

/** Builds the path a config describes (as `timeSamplerFromConfig` builds a time sampler). */
export function pathFromConfig(config: PathConfig): ProbPath {
  switch (config.kind) {
    case "linear":
      return linearPath();
    case "sigma_min":
      return sigmaMinPath(config.sigmaMin);
    default: {
      const kind: unknown = (config as { kind?: unknown }).kind;
      throw new Error(`path config: unknown kind ${JSON.stringify(kind)}; valid kinds: linear, sigma_min`);
    }
  }
}

/** Options of `samplePath`. */
export interface SamplePathOptions {
  /** Values per row (the token width, e.g. actionDim); x0 and x1 hold `t.length * dim` values. */
  dim: number;
}

/** A point on the path and the target velocity there, laid out like the inputs. */
export interface PathSample<A extends Float32Array | Float64Array> {
  /** x_t, length n * dim. */
  xt: A;
  /** u_t = dAlpha x1 + dSigma x0, length n * dim. */
  ut: A;
}

/**
 * Evaluates the path row by row: row i (values [i*dim, (i+1)*dim)) uses time t[i].
 *
 * `x0` (noise) and `x1` (data) are flat row-major `[n, dim]` arrays of the same type; the trainer
 * passes n = batch * horizon tokens and dim = actionDim, so every token may have its own time.
 * Returns new arrays of the type of `x0`; arithmetic is float64.
 */
export function samplePath<A extends Float32Array | Float64Array>(
  path: ProbPath,
  x0: A,
  x1: A,
  t: ArrayLike<number>,
  opts: SamplePathOptions,
): PathSample<A> {
  const { dim } = opts;
  if (!Number.isInteger(dim) || dim <= 0)
    throw new RangeError(`samplePath: dim must be a positive integer, got ${dim}`);
  const n = t.length;
  if (x0.length !== n * dim) {
    throw new RangeError(
      `samplePath: x0 has length ${x0.length}, expected t.length * dim = ${n} * ${dim} = ${n * dim}`,
    );
  }
  if (x1.length !== x0.length) {
    throw new RangeError(`samplePath: x1 has length ${x1.length} but x0 has length ${x0.length}`);
  }
  const xt = newLike(x0);
  const ut = newLike(x0);
  for (let i = 0; i < n; i++) {
    const ti = t[i]!;
    if (!Number.isFinite(ti)) throw new RangeError(`samplePath: t[${i}] is not finite: ${ti}`);
    const a = path.alpha(ti);
    const s = path.sigma(ti);
    const da = path.dAlpha(ti);
    const ds = path.dSigma(ti);
    for (let j = i * dim, end = j + dim; j < end; j++) {
      const noise = x0[j]!;
      const data = x1[j]!;
      xt[j] = a * data + s * noise;
      ut[j] = da * data + ds * noise;
    }
  }
  return { xt, ut };
}

function newLike<A extends Float32Array | Float64Array>(like: A): A {
  return (like instanceof Float32Array ? new Float32Array(like.length) : new Float64Array(like.length)) as A;
}
