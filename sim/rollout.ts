/**
 * One episode of a task driven by an actor (an expert, a policy, recorded actions), recording what a
 * dataset or a picture needs.
 */
import type { Vec3 } from "./env.ts";
import type { Observation, SceneMarkers, Task } from "./tasks/task.ts";

/** Produces the next action (joint position targets, action order) from the current observation. */
export type Actor = (obs: Observation, step: number) => Float32Array | Promise<Float32Array>;

/** What one episode produced. Frame k holds the observation before action k. */
export interface EpisodeResult {
  /** The reset seed. */
  seed: number;
  /** Number of frames (= actions executed). */
  length: number;
  /** `observation.state` per frame, [length, stateDim]. */
  state: Float32Array;
  /** `observation.environment_state` per frame, [length, envDim]. */
  envState: Float32Array;
  /** Actions, [length, actionDim]. */
  action: Float32Array;
  /** Reward after each action, [length]. */
  rewards: Float32Array;
  /** Whether the task succeeded. */
  success: boolean;
  /** End-effector positions, one per frame plus the final one (metres). */
  eeTrace: Vec3[];
  /** Scene objects at the start and at the end (for pictures). */
  markers: { start: SceneMarkers; end: SceneMarkers };
}

/** Options for {@link runEpisode}. */
export interface RunEpisodeOptions {
  /** Stop after this many steps even if the task allows more; default the task's maxSteps. */
  maxSteps?: number;
  /** "done" (default): stop when the task is done; "never": run to the step cap (replay). */
  stopWhen?: "done" | "never";
}

/** Resets `task` with `seed` and runs `actor` until the task is done; returns the recorded episode. */
export async function runEpisode(
  task: Task,
  seed: number,
  actor: Actor,
  opts: RunEpisodeOptions = {},
): Promise<EpisodeResult> {
  task.reset(seed);
  return continueEpisode(task, actor, opts);
}

/** Like {@link runEpisode} for a task already reset (so an expert can be built between reset and run). */
export async function continueEpisode(task: Task, actor: Actor, opts: RunEpisodeOptions = {}): Promise<EpisodeResult> {
  const maxSteps = Math.min(opts.maxSteps ?? task.info.maxSteps, task.info.maxSteps);
  const dim = task.env.dim;
  const envDim = task.info.envStateNames.length;
  const state = new Float32Array(maxSteps * dim);
  const envState = new Float32Array(maxSteps * envDim);
  const action = new Float32Array(maxSteps * dim);
  const rewards = new Float32Array(maxSteps);
  const eeTrace: Vec3[] = [];
  const start = task.markers();
  let k = 0;
  while (k < maxSteps) {
    if (opts.stopWhen !== "never" && task.done) break;
    const obs = task.observe();
    const s = obs["observation.state"] as Float32Array;
    const e = obs["observation.environment_state"] as Float32Array;
    if (e.length !== envDim)
      throw new Error(`sim/${task.info.name}: environment_state has ${e.length} values, expected ${envDim}`);
    eeTrace.push(task.env.eePos());
    const a = await actor(obs, k);
    if (a.length !== dim)
      throw new Error(`sim/${task.info.name}: actor returned ${a.length} action dims, the scene takes ${dim}`);
    state.set(s, k * dim);
    envState.set(e, k * envDim);
    action.set(a, k * dim);
    task.step(a);
    rewards[k] = task.reward();
    k++;
  }
  eeTrace.push(task.env.eePos());
  return {
    seed: task.seed,
    length: k,
    state: state.slice(0, k * dim),
    envState: envState.slice(0, k * envDim),
    action: action.slice(0, k * dim),
    rewards: rewards.slice(0, k),
    success: task.success,
    eeTrace,
    markers: { start, end: task.markers() },
  };
}
