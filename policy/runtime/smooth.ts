/**
 * Smoothing a new chunk onto the commands that ran before it: the chunk executor's `smoothing`
 * (`--smoothing λ`). A chunk sampled afresh starts where its own noise put it, not where the
 * previous chunk left the arm, so each chunk boundary is a small jump in position, velocity and
 * acceleration: measured on `fork`, those jumps carry almost all of a flow head's squared jerk
 * (the actions inside a chunk are far smoother). The new actions x are the solution of
 *
 *   min_x  sum_i |x_i - a_i|^2 + λ sum_k |Δ³ y_k|^2,   y = [anchor, x]
 *
 * with a the chunk's actions and the anchor the (up to 3) commands just before them, held fixed:
 * a discrete smoothing spline (Whittaker) whose third differences run across the boundary, so the
 * join is as smooth as the inside and the chunk is bent onto the arm's motion over a few steps
 * (the spline's cut-off period is about 2π λ^(1/6) steps: 14 at λ = 100) instead of jumping.
 * Each joint is smoothed on its own with the same system. A motion whose third difference is zero
 * (standing still, constant velocity, constant acceleration) passes unchanged, and the output is
 * finite when the chunk and the anchor are.
 */

/** Cholesky factors of (I + λ DᵀD) for one (length, anchor length, λ), reused across chunks. */
interface Factor {
  /** Lower-triangular factor L, row-major `[m * m]`. */
  l: Float64Array;
  /** The anchor's coupling: `c[i * k + j]` = (λ DᵀD)[x_i, anchor_j]. */
  coupling: Float64Array;
}

const D3 = [-1, 3, -3, 1] as const;
/** The half-bandwidth of DᵀD for third differences. */
const BAND = D3.length - 1;
/** The most commands a chunk is smoothed onto (`smoothOnto`'s anchor): one third difference's reach back. */
export const SMOOTHING_ANCHOR_STEPS = BAND;

function factor(m: number, k: number, lambda: number): Factor {
  const n = k + m;
  // G = DᵀD over the joined sequence, banded (bandwidth 3).
  const g = new Float64Array(n * n);
  for (let r = 0; r + BAND < n; r++)
    for (let a = 0; a <= BAND; a++) for (let b = 0; b <= BAND; b++) g[(r + a) * n + r + b]! += D3[a]! * D3[b]!;
  const q = new Float64Array(m * m);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < m; j++) q[i * m + j] = lambda * g[(k + i) * n + k + j]!;
    q[i * m + i]! += 1;
  }
  const coupling = new Float64Array(m * k);
  for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) coupling[i * k + j] = lambda * g[(k + i) * n + j]!;
  // Cholesky: q = L Lᵀ (q is symmetric positive definite: I plus a positive semi-definite term).
  const l = new Float64Array(m * m);
  for (let i = 0; i < m; i++)
    for (let j = 0; j <= i; j++) {
      let s = q[i * m + j]!;
      for (let p = 0; p < j; p++) s -= l[i * m + p]! * l[j * m + p]!;
      l[i * m + j] = i === j ? Math.sqrt(s) : s / l[j * m + j]!;
    }
  return { l, coupling };
}

const cache = new Map<string, Factor>();

function cached(m: number, k: number, lambda: number): Factor {
  const key = `${m}/${k}/${lambda}`;
  let f = cache.get(key);
  if (!f) {
    if (cache.size > 64) cache.clear();
    f = factor(m, k, lambda);
    cache.set(key, f);
  }
  return f;
}

/**
 * The smoothed actions `[m * actionDim]` of `actions` (`[m * actionDim]`, m steps) continuing
 * `anchor` (`[k * actionDim]`, the k <= 3 commands just before, oldest first; k = 0 smooths the
 * chunk alone), with smoothing weight `lambda` >= 0 (0 returns a copy).
 */
export function smoothOnto(
  actions: Float32Array,
  anchor: Float32Array,
  actionDim: number,
  lambda: number,
): Float32Array {
  if (!(Number.isFinite(lambda) && lambda >= 0))
    throw new RangeError(`smoothing: λ must be finite and >= 0, got ${lambda}`);
  const A = actionDim;
  const m = actions.length / A;
  const k = anchor.length / A;
  if (!Number.isInteger(m) || !Number.isInteger(k) || k > SMOOTHING_ANCHOR_STEPS)
    throw new RangeError(
      `smoothing: ${actions.length} actions and ${anchor.length} anchor values do not make whole steps of ${A} (at most ${SMOOTHING_ANCHOR_STEPS} anchor steps)`,
    );
  if (lambda === 0 || m + k < 4) return actions.slice();
  const { l, coupling } = cached(m, k, lambda);
  const out = new Float32Array(actions.length);
  const y = new Float64Array(m);
  // L keeps the band of the system (3 below the diagonal: a Cholesky factor has no fill-in outside
  // it) and the anchor couples to the first 3 actions only, so each joint is O(m): the solve runs
  // on the control loop's thread at every chunk.
  for (let d = 0; d < A; d++) {
    // Right side: a - coupling · anchor, then forward and back substitution.
    for (let i = 0; i < m; i++) {
      let s = actions[i * A + d]!;
      if (i < BAND) for (let j = 0; j < k; j++) s -= coupling[i * k + j]! * anchor[j * A + d]!;
      for (let p = Math.max(0, i - BAND); p < i; p++) s -= l[i * m + p]! * y[p]!;
      y[i] = s / l[i * m + i]!;
    }
    for (let i = m - 1; i >= 0; i--) {
      let s = y[i]!;
      for (let p = i + 1; p <= Math.min(m - 1, i + BAND); p++) s -= l[p * m + i]! * y[p]!;
      y[i] = s / l[i * m + i]!;
    }
    for (let i = 0; i < m; i++) out[i * A + d] = y[i]!;
  }
  return out;
}
