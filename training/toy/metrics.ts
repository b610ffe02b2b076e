/**
 * Sample-quality metrics for toy problems.
 */

/**
 * Energy distance between samples X `[n, d]` and Y `[m, d]` (flat):
 * `2 E|X - Y| - E|X - X'| - E|Y - Y'|` with Euclidean norms (Szekely & Rizzo); 0 iff equal laws.
 * This is the V-statistic (means over all pairs, diagonal included), which is never negative, so
 * the distance between two samples of one law is a positive noise floor of order E|X - X'| / n.
 */
export function energyDistance(x: Float32Array, y: Float32Array, d: number): number {
  const n = x.length / d;
  const m = y.length / d;
  const meanDist = (a: Float32Array, na: number, b: Float32Array, nb: number, same: boolean): number => {
    let s = 0;
    for (let i = 0; i < na; i++) {
      for (let j = same ? i + 1 : 0; j < nb; j++) {
        let q = 0;
        for (let k = 0; k < d; k++) {
          const diff = a[i * d + k]! - b[j * d + k]!;
          q += diff * diff;
        }
        s += Math.sqrt(q);
      }
    }
    // Off-diagonal pairs counted twice when `same`; the diagonal adds zeros.
    return same ? (2 * s) / (na * nb) : s / (na * nb);
  };
  return 2 * meanDist(x, n, y, m, false) - meanDist(x, n, x, n, true) - meanDist(y, m, y, m, true);
}
