/**
 * Scripted reach expert: a curved minimum-jerk path to the target (random speed, random sideways
 * and upwards bow of the path), then hold at the target until success.
 */
import type { Rng } from "../../policy/random.ts";
import type { Vec3 } from "../env.ts";
import type { ReachTask } from "../tasks/reach.ts";
import { uniform } from "../tasks/task.ts";
import type { Expert, TimedCurve } from "./plan.ts";
import { IkDriver, curveAt, pathExpert } from "./plan.ts";

/** Creates the reach expert for the task's current episode (call right after `task.reset`). */
export function reachExpert(task: ReachTask, rng: Rng): Expert {
  const driver = new IkDriver(task, rng);
  const start = task.env.eePos();
  const target = task.target;
  const d = Math.hypot(target[0] - start[0], target[1] - start[1], target[2] - start[2]);
  const speed = uniform(rng, 0.1, 0.2);
  const mid: Vec3 = [
    (start[0] + target[0]) / 2 + 0.015 * rng.normal(),
    (start[1] + target[1]) / 2 + 0.015 * rng.normal(),
    (start[2] + target[2]) / 2 + uniform(rng, 0, 0.03),
  ];
  // A quadratic Bézier through `mid` at t = 0.5 has its control point at 2*mid - (start+target)/2.
  const ctrl: Vec3 = [
    2 * mid[0] - (start[0] + target[0]) / 2,
    2 * mid[1] - (start[1] + target[1]) / 2,
    2 * mid[2] - (start[2] + target[2]) / 2,
  ];
  const curve: TimedCurve = { points: [start, ctrl, target], duration: Math.max(0.8, d / speed) };
  return pathExpert(task, driver, (t) => curveAt(curve, t));
}
