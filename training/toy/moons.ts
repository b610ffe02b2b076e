/**
 * The two-moons toy problem: an unconditional 2-D distribution, learned as a chunk of one action
 * of dimension 2 conditioned on a constant observation.
 */
import type { Rng } from "../../policy/random.ts";
import type { Batch, BatchSource } from "../batch.ts";

/** Draws `n` points `[n, 2]` of scikit-learn-style two moons with Gaussian `noise`, scaled to about [-1, 1]. */
export function sampleMoons(n: number, rng: Rng, noise = 0.05): Float32Array {
  const out = new Float32Array(n * 2);
  for (let i = 0; i < n; i++) {
    const upper = rng.uniform() < 0.5;
    const a = Math.PI * rng.uniform();
    const x = upper ? Math.cos(a) : 1 - Math.cos(a);
    const y = upper ? Math.sin(a) : 0.5 - Math.sin(a);
    out[2 * i] = (x - 0.5) * 1.0 + noise * rng.normal();
    out[2 * i + 1] = (y - 0.25) * 1.4 + noise * rng.normal();
  }
  return out;
}

/** Batches of moons points as `[size, 1, 2]` chunks with a constant observation `state = [0]`. */
export function moonsSource(noise = 0.05): BatchSource {
  return {
    next(size: number, rng: Rng): Batch {
      return {
        size,
        obs: { state: new Float32Array(size) },
        actions: sampleMoons(size, rng, noise),
        isPad: new Uint8Array(size),
      };
    },
  };
}
