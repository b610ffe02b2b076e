/**
 * Scripted experts for every task. Each expert draws its own variation (speed, via points, noise,
 * and for avoid and fork the side) from an Rng derived from the episode seed, so an episode is reproducible
 * from its seed alone.
 */
import { Rng } from "../../policy/random.ts";
import { AvoidTask } from "../tasks/avoid.ts";
import { ForkTask } from "../tasks/fork.ts";
import { PushTask } from "../tasks/push.ts";
import { ReachTask } from "../tasks/reach.ts";
import type { Task } from "../tasks/task.ts";
import { avoidExpert } from "./avoid.ts";
import { forkExpert } from "./fork.ts";
import type { Expert } from "./plan.ts";
import { pushExpert } from "./push.ts";
import { reachExpert } from "./reach.ts";

export type { Expert } from "./plan.ts";

/** The expert's seed for an episode seed (distinct stream from the scene's). */
export function expertSeed(episodeSeed: number): number {
  return (Math.imul(episodeSeed ^ 0x5bd1e995, 0x27d4eb2d) ^ 0x165667b1) >>> 0;
}

/**
 * Creates the scripted expert for `task`'s current episode (call right after `task.reset(seed)`).
 * `mode` forces the solution mode of a multimodal task (avoid, fork: "left" or "right"); an
 * instructed task's expert follows the episode's instruction (`task.instructedMode`) unless forced.
 */
export function createExpert(task: Task, forced?: string): Expert {
  const mode = forced ?? task.instructedMode;
  const rng = new Rng(expertSeed(task.seed));
  const modes = task.info.modes;
  if (mode !== undefined && !modes)
    throw new Error(`sim/experts: the ${task.info.name} expert has no modes to force (got '${mode}')`);
  if (mode !== undefined && modes && !modes.includes(mode))
    throw new Error(
      `sim/experts: ${task.info.name} mode must be ${modes.map((m) => `'${m}'`).join(" or ")}, got '${mode}'`,
    );
  const side = mode as "left" | "right" | undefined;
  if (task instanceof ReachTask) return reachExpert(task, rng);
  if (task instanceof PushTask) return pushExpert(task, rng);
  if (task instanceof AvoidTask) return avoidExpert(task, rng, side);
  if (task instanceof ForkTask) return forkExpert(task, rng, side);
  throw new Error(`sim/experts: no expert for task '${task.info.name}'`);
}
