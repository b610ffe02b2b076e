/**
 * The bimodal toy problem: given an observation x ~ U(-1, 1), the right action chunk is one of two
 * distinct trajectories (pass left or right), each with probability 1/2. Averaging them, as a
 * regression head does, gives an action that is neither.
 *
 * Chunk `[horizon, 2]`: step k of mode m in {-1, +1} is `(x + (k+1)/H * 0.5, m * sin(pi (k+1) / (H+1)) * AMPLITUDE)`.
 */
import type { Rng } from "../../policy/random.ts";
import type { Batch, BatchSource } from "../batch.ts";

const AMPLITUDE = 0.8;

/** The two mode chunks `[2, horizon, 2]` for observation x (mode -1 first). */
export function bimodalModes(x: number, horizon: number): [Float32Array, Float32Array] {
  const modes: [Float32Array, Float32Array] = [new Float32Array(horizon * 2), new Float32Array(horizon * 2)];
  for (let m = 0; m < 2; m++) {
    const sign = m === 0 ? -1 : 1;
    for (let k = 0; k < horizon; k++) {
      modes[m]![2 * k] = x + ((k + 1) / horizon) * 0.5;
      modes[m]![2 * k + 1] = sign * Math.sin((Math.PI * (k + 1)) / (horizon + 1)) * AMPLITUDE;
    }
  }
  return modes;
}

/** Euclidean distance between the two modes (the same for every x). */
export function bimodalSeparation(horizon: number): number {
  const [a, b] = bimodalModes(0, horizon);
  return distance(a, b);
}

/** Euclidean distance between two flat chunks. */
export function distance(a: ArrayLike<number>, b: ArrayLike<number>, offset = 0): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[offset + i]!;
    s += d * d;
  }
  return Math.sqrt(s);
}

/** Batches: observation `state = [x]`, actions `[size, horizon, 2]`, mode chosen 50/50, jitter `noise`. */
export function bimodalSource(horizon: number, noise = 0.02): BatchSource {
  return {
    next(size: number, rng: Rng): Batch {
      const state = new Float32Array(size);
      const actions = new Float32Array(size * horizon * 2);
      for (let i = 0; i < size; i++) {
        const x = 2 * rng.uniform() - 1;
        state[i] = x;
        const mode = bimodalModes(x, horizon)[rng.uniform() < 0.5 ? 0 : 1];
        for (let j = 0; j < horizon * 2; j++) actions[i * horizon * 2 + j] = mode[j]! + noise * rng.normal();
      }
      return { size, obs: { state }, actions, isPad: new Uint8Array(size * horizon) };
    },
  };
}
