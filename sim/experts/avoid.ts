/**
 * Scripted avoid expert: picks the left (+y) or right (-y) way round the pillar 50/50, then follows a
 * cubic Bézier from the start to the target whose middle control points sit beside the pillar
 * (random clearance, height, timing), and holds at the target.
 */
import type { Rng } from "../../policy/random.ts";
import type { Vec3 } from "../env.ts";
import type { AvoidTask } from "../tasks/avoid.ts";
import { uniform } from "../tasks/task.ts";
import type { Expert, TimedCurve } from "./plan.ts";
import { IkDriver, curveAt, pathExpert, pickSide } from "./plan.ts";

/**
 * Creates the avoid expert for the task's current episode (call right after `task.reset`); `mode`
 * forces the side (the coin is still drawn, so the rest of the variation stays the same).
 */
export function avoidExpert(task: AvoidTask, rng: Rng, mode?: "left" | "right"): Expert {
  const closed = task.env.scene.gripper?.closed;
  const driver = new IkDriver(task, rng, closed === undefined ? {} : { gripper: closed });
  const { mode: chosen, side } = pickSide(rng, mode);
  const start = task.env.eePos();
  const target = task.target;
  const ob = task.obstacle;
  // The curve's sideways offset at its middle is 3/4 of the control points' offset.
  const clearance = uniform(rng, 0.06, 0.075);
  const lateral = clearance / 0.75;
  const z = uniform(rng, 0.045, 0.06);
  const spread = uniform(rng, 0.015, 0.035);
  const p1: Vec3 = [ob[0] - spread + 0.005 * rng.normal(), ob[1] + side * lateral, z];
  const p2: Vec3 = [ob[0] + spread + 0.005 * rng.normal(), ob[1] + side * lateral, z];
  const curve: TimedCurve = { points: [start, p1, p2, target], duration: uniform(rng, 2.0, 3.0) };
  return pathExpert(task, driver, (t) => curveAt(curve, t), chosen);
}
