/**
 * Scripted fork expert: first a shared approach, the same whichever gap it takes: forward to a split
 * point 6 cm in front of the wall, at a lateral offset drawn in a ±{@link FORK_APPROACH_SPREAD} band
 * about the wall's centre (independent of the gap, so an offset during the approach says nothing
 * about the way). There it picks the left (+y) or right (-y) gap 50/50 and commits: a quick sideways
 * move to the front of the chosen gap (barely forward), straight through it, then to the target
 * behind the wall, and holds there. Each leg is a minimum-jerk line (random timing, height and aim
 * within the gap).
 */
import type { Rng } from "../../policy/random.ts";
import type { Vec3 } from "../env.ts";
import type { ForkTask } from "../tasks/fork.ts";
import { FORK_WALL } from "../tasks/fork.ts";
import { uniform } from "../tasks/task.ts";
import type { Expert, TimedCurve } from "./plan.ts";
import { IkDriver, pathAt, pathExpert, pickSide } from "./plan.ts";

/** Half width (metres) of the band of lateral offsets of the shared approach, about the wall's centre. */
export const FORK_APPROACH_SPREAD = 0.02;

/**
 * Creates the fork expert for the task's current episode (call right after `task.reset`); `mode`
 * forces the gap (the coin is still drawn, so the rest of the variation stays the same).
 */
export function forkExpert(task: ForkTask, rng: Rng, mode?: "left" | "right"): Expert {
  const closed = task.env.scene.gripper?.closed;
  const driver = new IkDriver(task, rng, closed === undefined ? {} : { gripper: closed });
  const { mode: chosen, side } = pickSide(rng, mode);
  const start = task.env.eePos();
  const wall = task.wall;
  const gapY = wall[1] + side * FORK_WALL.gapOffset;
  const z = uniform(rng, 0.045, 0.055);
  // The shared approach: the same in both modes (drawn before the gap is used), its lateral offset
  // hides nothing about the mode.
  const split: Vec3 = [
    wall[0] - uniform(rng, 0.057, 0.063),
    wall[1] + uniform(rng, -FORK_APPROACH_SPREAD, FORK_APPROACH_SPREAD),
    z,
  ];
  const approach = uniform(rng, 0.7, 1.0);
  const p1: Vec3 = [split[0] + uniform(rng, 0.015, 0.025), gapY + 0.002 * rng.normal(), z];
  const p2: Vec3 = [wall[0] + uniform(rng, 0.035, 0.045), gapY + 0.002 * rng.normal(), z];
  const legs: TimedCurve[] = [
    { points: [start, split], duration: approach },
    { points: [split, p1], duration: uniform(rng, 0.4, 0.55) },
    { points: [p1, p2], duration: uniform(rng, 0.45, 0.6) },
    { points: [p2, task.target], duration: uniform(rng, 0.5, 0.7) },
  ];
  return pathExpert(task, driver, (t) => pathAt(legs, t), chosen);
}
