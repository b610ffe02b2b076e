/**
 * How smoothly an episode moved, from what a robot would see: the end effector's path and the joint
 * commands sent. Reported per episode and aggregated by `sim eval`, for a policy and for the
 * scripted expert on the same seeds (`--policy expert`), so a zig-zagging head shows against a
 * smooth one.
 *
 * - `path_length_m`: the end effector's path length, metres.
 * - `mean_sq_jerk`: the mean over steps and joints of the squared third difference of the joint
 *   position commands divided by dt^3 (rad^2/s^6): large for commands that change direction or
 *   speed abruptly.
 * - `reversals`: how often the end effector turned back: consecutive moves (each at least
 *   `minMoveM` long, shorter ones merged into the next) whose directions differ by more than 90
 *   degrees.
 * - `boundary_jerk_share` (when the steps where chunks began are given): the share of the squared
 *   jerk in third differences that span a chunk boundary (a command from the old chunk and one
 *   from the new). Chunks of n actions put 3 of every n differences across a boundary: a share far
 *   above 3/n says the jerk comes from the joins, not from inside the chunks.
 */
import type { Vec3 } from "./env.ts";

/** The smoothness figures of one episode. */
export interface Smoothness {
  path_length_m: number;
  mean_sq_jerk: number;
  reversals: number;
  boundary_jerk_share?: number;
}

/**
 * The figures of one episode: `trace` the end effector's positions (one per step, plus the start),
 * `actions` the joint commands `[steps, actionDim]`, `dtS` the control period, `chunkStarts` the
 * steps whose command was the first from a new chunk (adds `boundary_jerk_share`).
 */
export function smoothness(
  trace: readonly Vec3[],
  actions: Float32Array,
  actionDim: number,
  dtS: number,
  minMoveM = 0.002,
  chunkStarts?: readonly number[],
): Smoothness {
  const starts = new Set(chunkStarts ?? []);
  let length = 0;
  for (let i = 1; i < trace.length; i++) length += dist(trace[i]!, trace[i - 1]!);
  const steps = Math.floor(actions.length / actionDim);
  let jerk = 0;
  let atBoundary = 0;
  let n = 0;
  for (let k = 3; k < steps; k++) {
    const spans = starts.has(k) || starts.has(k - 1) || starts.has(k - 2);
    for (let j = 0; j < actionDim; j++) {
      const a = (i: number): number => actions[i * actionDim + j]!;
      const d3 = (a(k) - 3 * a(k - 1) + 3 * a(k - 2) - a(k - 3)) / dtS ** 3;
      jerk += d3 * d3;
      if (spans) atBoundary += d3 * d3;
      n++;
    }
  }
  let reversals = 0;
  let anchor = trace[0];
  let prev: Vec3 | undefined;
  for (let i = 1; i < trace.length && anchor; i++) {
    const p = trace[i]!;
    if (dist(p, anchor) < minMoveM) continue;
    const move: Vec3 = [p[0] - anchor[0], p[1] - anchor[1], p[2] - anchor[2]];
    if (prev && move[0] * prev[0] + move[1] * prev[1] + move[2] * prev[2] < 0) reversals++;
    prev = move;
    anchor = p;
  }
  const out: Smoothness = { path_length_m: length, mean_sq_jerk: n > 0 ? jerk / n : 0, reversals };
  if (chunkStarts) out.boundary_jerk_share = jerk > 0 ? atBoundary / jerk : 0;
  return out;
}

/** The mean of each figure over episodes. */
export function meanSmoothness(all: readonly Smoothness[]): Smoothness {
  const m = Math.max(1, all.length);
  const sum = (f: (s: Smoothness) => number): number => all.reduce((a, s) => a + f(s), 0) / m;
  const out: Smoothness = {
    path_length_m: sum((s) => s.path_length_m),
    mean_sq_jerk: sum((s) => s.mean_sq_jerk),
    reversals: sum((s) => s.reversals),
  };
  // the share of all the episodes' squared jerk (not a mean of shares): where the jerk is
  const withShare = all.filter((s) => s.boundary_jerk_share !== undefined);
  if (withShare.length > 0 && withShare.length === all.length) {
    const total = all.reduce((a, s) => a + s.mean_sq_jerk, 0);
    out.boundary_jerk_share =
      total > 0 ? all.reduce((a, s) => a + s.mean_sq_jerk * s.boundary_jerk_share!, 0) / total : 0;
  }
  return out;
}

function dist(a: Vec3, b: Vec3): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
}
