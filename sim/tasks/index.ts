/**
 * The task registry: name -> static info, the task objects' MJCF, and a constructor.
 */
import { SimEnv } from "../env.ts";
import { armScene } from "../scene/arm.ts";
import type { CameraSpec } from "../camera.ts";
import type { RobotScene } from "../scene/robot.ts";
import { AVOID_INFO, AVOID_WORLDBODY, AvoidTask } from "./avoid.ts";
import { FORK_INFO, FORK_INSTRUCTED_INFO, FORK_WORLDBODY, ForkTask } from "./fork.ts";
import { PUSH_INFO, PUSH_WORLDBODY, PushTask } from "./push.ts";
import { REACH_INFO, REACH_WORLDBODY, ReachTask } from "./reach.ts";
import type { Task, TaskInfo, TaskName } from "./task.ts";

export type { ObsPart, Observation, Task, TaskInfo, TaskName } from "./task.ts";
export { OBS_PARTS, imageKey, parseObsParts, selectObservation } from "./task.ts";

interface TaskEntry {
  info: TaskInfo;
  worldbody: string;
  make(env: SimEnv): Task;
}

const TASKS: Record<TaskName, TaskEntry> = {
  reach: { info: REACH_INFO, worldbody: REACH_WORLDBODY, make: (env) => new ReachTask(env) },
  push: { info: PUSH_INFO, worldbody: PUSH_WORLDBODY, make: (env) => new PushTask(env) },
  avoid: { info: AVOID_INFO, worldbody: AVOID_WORLDBODY, make: (env) => new AvoidTask(env) },
  fork: { info: FORK_INFO, worldbody: FORK_WORLDBODY, make: (env) => new ForkTask(env) },
  "fork-instructed": {
    info: FORK_INSTRUCTED_INFO,
    worldbody: FORK_WORLDBODY,
    make: (env) => new ForkTask(env, FORK_INSTRUCTED_INFO),
  },
};

/** Names of all tasks. */
export const TASK_NAMES = Object.keys(TASKS) as TaskName[];

/** Checks a task name from user input, with an error listing the valid ones. */
export function parseTaskName(name: string): TaskName {
  if (name in TASKS) return name as TaskName;
  throw new Error(`sim: unknown task '${name}' (known: ${TASK_NAMES.join(", ")})`);
}

/** Static description of a task. */
export function taskInfo(name: TaskName): TaskInfo {
  return TASKS[name].info;
}

/** Options for {@link createTask}. */
export interface CreateTaskOptions {
  /** The robot; default the built-in arm. */
  scene?: RobotScene;
  /** Control rate in Hz; default 30. */
  fps?: number;
  /** Cameras rendered into every observation (`observation.images.<name>`, uint8 `[H, W, 3]`). */
  camera?: CameraSpec | readonly CameraSpec[];
}

/** Compiles the robot with the task's objects and returns the task (call `reset(seed)` next; `dispose()` when done). */
export async function createTask(name: TaskName, opts: CreateTaskOptions = {}): Promise<Task> {
  const entry = TASKS[name];
  const env = await SimEnv.create({ scene: opts.scene ?? armScene(), worldbodyExtras: entry.worldbody, fps: opts.fps });
  try {
    const task = entry.make(env);
    const cams = opts.camera === undefined ? [] : Array.isArray(opts.camera) ? opts.camera : [opts.camera];
    try {
      task.attachCameras(cams as readonly CameraSpec[]);
    } catch (err) {
      task.dispose();
      throw err;
    }
    return task;
  } catch (err) {
    env.dispose();
    throw err;
  }
}
