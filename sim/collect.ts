/**
 * Records scripted-expert demonstrations as a LeRobot v3.0 dataset: features `observation.state`
 * (joint positions), `observation.environment_state` (task features) and `action` (joint position
 * targets), all float32, plus the task string and fps. With cameras, each camera's image of every
 * frame is rendered (`sim/camera.ts`) and stored as LeRobot v3.0 video `observation.images.<name>`
 * (AV1 by default); `obs` chooses which observation parts are recorded (`["state", "camera"]`
 * leaves the environment state out: the vision-only variant). The per-episode reset seeds (and the
 * expert's mode, for avoid and fork) go to `meta/actionflow.json`, which `sim replay` reads.
 *
 * Attempt j is reset with seed `seed + j`; with `paired` (a task with two modes: avoid, fork),
 * attempts 2k and 2k + 1 both use seed `seed + k`, the first in the task's first mode (left) and the
 * second in its other (right), so every scene is demonstrated both
 * ways round and no observation hints at a side. By default only successful episodes are kept, and
 * attempts continue until `episodes` are recorded (at most 2 * episodes + 20 attempts);
 * `failures: "keep"` records every attempt. `expertSuccess` is over all attempts.
 *
 * Each episode's task string is the task's prompt: for an instructed task (fork-instructed) the
 * instruction the expert followed ("pass through the left gap"), drawn from the seed or, paired,
 * the one of the mode demonstrated; for the others the task's description.
 */
import { join } from "node:path";
import { writeJsonAtomic } from "../policy/io/atomic.ts";
import { LeRobotWriter } from "../datasets/lerobot/writer.ts";
import type { VideoCodec } from "../datasets/video/ffmpeg.ts";
import type { CameraSpec } from "./camera.ts";
import { createExpert } from "./experts/index.ts";
import { continueEpisode } from "./rollout.ts";
import type { RobotScene } from "./scene/robot.ts";
import { TASK_NAMES, createTask, imageKey, taskInfo } from "./tasks/index.ts";
import type { ObsPart, TaskName } from "./tasks/index.ts";
import type { WriterFeature } from "../datasets/lerobot/writer.ts";

/** The name of the sidecar metadata file inside a recorded dataset's `meta/` folder. */
export const ACTIONFLOW_META = "actionflow.json";

/** Where the recorded scene came from, so replay can rebuild it. */
export interface SceneRecord {
  /** "actionflow-arm" for the built-in arm, else the MJCF path given at record time. */
  source: string;
  /** The mapping JSON path (user MJCF only). */
  mapping?: string;
  joints: string[];
  actuators: string[];
}

/** One recorded episode in `meta/actionflow.json`. */
export interface RecordedEpisode {
  episode_index: number;
  /** Reset seed: `task.reset(seed)` rebuilds the episode's scene. */
  seed: number;
  /** The attempt number (seed - base seed). */
  attempt: number;
  success: boolean;
  /** Multimodal tasks only (avoid, fork): the expert's mode ("left" or "right"). */
  mode?: string;
  /** Instructed tasks only: the instruction the episode was told (its task string). */
  prompt?: string;
}

/** Content of `meta/actionflow.json`. */
export interface ActionflowMeta {
  format: "actionflow-sim/1";
  task: TaskName;
  fps: number;
  scene: SceneRecord;
  seed: number;
  attempts: number;
  expertSuccess: number;
  /** The cameras recorded (absent: none), so replay can render them again. */
  cameras?: CameraSpec[];
  /** The observation parts recorded (absent: state and env). */
  obs?: ObsPart[];
  episodes: RecordedEpisode[];
}

/** Options for {@link collect}. */
export interface CollectOptions {
  task: TaskName;
  /** Episodes to record. */
  episodes: number;
  /** Base seed; attempt j uses seed + j. */
  seed: number;
  /** New (or empty) dataset folder. */
  out: string;
  /** "drop" (default): keep successful episodes only; "keep": record every attempt. */
  failures?: "drop" | "keep";
  /** Multimodal tasks only (avoid, fork): demonstrate every scene both ways round (see the module comment). */
  paired?: boolean;
  /** Robot scene; default the built-in arm. */
  scene?: RobotScene;
  /** Mapping path to remember for a user scene (replay rebuilds from it; store absolute paths). */
  mappingPath?: string;
  /** Control rate in Hz; default 30. */
  fps?: number;
  /** Cameras to render every frame and store as video `observation.images.<name>`. */
  cameras?: CameraSpec[];
  /** Observation parts to record (default state and env, plus camera when there are cameras). */
  obs?: ObsPart[];
  /** Video codec of the cameras: "av1" (default, libsvtav1 as LeRobot) or "h264". */
  vcodec?: VideoCodec;
  /** Called after each attempt (progress). */
  onAttempt?: (attempts: number, recorded: number, success: boolean) => void;
}

/** What {@link collect} reports. */
export interface CollectResult {
  /** Episodes written. */
  episodes: number;
  /** Frames written. */
  frames: number;
  /** Expert success rate over all attempts (0-1). */
  expertSuccess: number;
  /** Attempts run. */
  attempts: number;
  /** Multimodal tasks only (avoid, fork): share of [left, right] among recorded episodes; null for other tasks. */
  modeShare: [number, number] | null;
  /** The dataset folder. */
  out: string;
  /** Camera frames rendered (all attempts, all cameras) and the seconds spent rendering them. */
  rendered: { frames: number; seconds: number };
}

/** Runs the expert and writes a LeRobot v3.0 dataset; see the module comment for the rules. */
export async function collect(opts: CollectOptions): Promise<CollectResult> {
  if (!Number.isInteger(opts.episodes) || opts.episodes < 1)
    throw new RangeError(`sim collect: episodes must be a positive integer, got ${opts.episodes}`);
  const keepFailures = opts.failures === "keep";
  const paired = opts.paired ?? false;
  const modes = taskInfo(opts.task).modes;
  if (paired && !modes)
    throw new Error(
      `sim collect: paired demonstrations need a task with two modes (${TASK_NAMES.filter((n) => taskInfo(n).modes).join(", ")}), not ${opts.task}`,
    );
  const cameras = opts.cameras ?? [];
  const parts: ObsPart[] = opts.obs ?? ["state", "env", ...(cameras.length > 0 ? (["camera"] as const) : [])];
  if (!parts.includes("state"))
    throw new Error(
      `sim collect: the obs selection must include 'state' (the arm's joint positions), got ${parts.join(",")}`,
    );
  if (parts.includes("camera") && cameras.length === 0)
    throw new Error("sim collect: the obs selection has 'camera' but no camera was given (--camera <name>)");
  const recordCams = parts.includes("camera") ? cameras : [];
  const task = await createTask(opts.task, {
    ...(opts.scene ? { scene: opts.scene } : {}),
    ...(opts.fps ? { fps: opts.fps } : {}),
    ...(recordCams.length > 0 ? { camera: recordCams } : {}),
  });
  const recorded: RecordedEpisode[] = [];
  let attempts = 0;
  let successes = 0;
  let frames = 0;
  try {
    const env = task.env;
    const scene = env.scene;
    const features: Record<string, WriterFeature> = {
      "observation.state": { dtype: "float32", shape: [env.dim], names: [...scene.joints] },
    };
    if (parts.includes("env"))
      features["observation.environment_state"] = {
        dtype: "float32",
        shape: [task.info.envStateNames.length],
        names: [...task.info.envStateNames],
      };
    for (const c of recordCams) features[imageKey(c.name)] = { dtype: "video", shape: [c.height, c.width, 3] };
    features.action = { dtype: "float32", shape: [env.dim], names: [...scene.actuators] };
    const writer = await LeRobotWriter.create(opts.out, {
      fps: env.fps,
      robotType: scene.source === "actionflow-arm" ? "actionflow_arm" : "mjcf",
      features,
      ...(opts.vcodec ? { vcodec: opts.vcodec } : {}),
    });
    try {
      const maxAttempts = keepFailures ? opts.episodes : 2 * opts.episodes + 20;
      while (recorded.length < opts.episodes && attempts < maxAttempts) {
        const seed = (opts.seed + (paired ? attempts >> 1 : attempts)) >>> 0;
        task.reset(seed);
        const forced = paired && modes ? modes[attempts % 2] : undefined;
        if (forced !== undefined && task.info.instructions) task.instruct(forced);
        const expert = createExpert(task, forced);
        const images: Record<string, Uint8Array[]> = Object.fromEntries(recordCams.map((c) => [imageKey(c.name), []]));
        let ep;
        try {
          ep = await continueEpisode(task, (obs) => {
            for (const key of Object.keys(images)) images[key]!.push(obs[key] as Uint8Array);
            return expert.act();
          });
        } finally {
          expert.dispose();
        }
        attempts++;
        if (ep.success) successes++;
        if (ep.success || keepFailures) {
          if (ep.length === 0) throw new Error(`sim collect: episode with seed ${seed} has no frames`);
          const columns: Record<string, ArrayLike<number>> = { "observation.state": ep.state, action: ep.action };
          if (parts.includes("env")) columns["observation.environment_state"] = ep.envState;
          for (const [key, list] of Object.entries(images)) columns[key] = concatFrames(list);
          await writer.addEpisode({ task: task.prompt, length: ep.length, frames: columns });
          recorded.push({
            episode_index: recorded.length,
            seed,
            attempt: attempts - 1,
            success: ep.success,
            ...(expert.mode ? { mode: expert.mode } : {}),
            ...(task.instructedMode !== undefined ? { prompt: task.prompt } : {}),
          });
          frames += ep.length;
        }
        opts.onAttempt?.(attempts, recorded.length, ep.success);
      }
      if (recorded.length === 0)
        throw new Error(
          `sim collect: the ${opts.task} expert failed all ${attempts} attempts; nothing to write to ${opts.out}`,
        );
      await writer.finish();
    } catch (err) {
      await writer.abort();
      throw err;
    }
    const meta: ActionflowMeta = {
      format: "actionflow-sim/1",
      task: opts.task,
      fps: env.fps,
      scene: {
        source: scene.source,
        ...(opts.mappingPath ? { mapping: opts.mappingPath } : {}),
        joints: [...scene.joints],
        actuators: [...scene.actuators],
      },
      seed: opts.seed,
      attempts,
      expertSuccess: successes / attempts,
      ...(recordCams.length > 0 ? { cameras: recordCams.map((c) => ({ ...c })) } : {}),
      ...(opts.obs ? { obs: [...parts] } : {}),
      episodes: recorded,
    };
    await writeJsonAtomic(join(opts.out, "meta", ACTIONFLOW_META), meta);
  } finally {
    task.dispose();
  }
  let modeShare: [number, number] | null = null;
  if (modes) {
    const left = recorded.filter((e) => e.mode === modes[0]).length;
    modeShare = [left / recorded.length, (recorded.length - left) / recorded.length];
  }
  return {
    episodes: recorded.length,
    frames,
    expertSuccess: successes / attempts,
    attempts,
    modeShare,
    out: opts.out,
    rendered: { ...task.cameraTime },
  };
}

/** Concatenates per-frame images into one `[n, H, W, 3]` array. */
function concatFrames(list: readonly Uint8Array[]): Uint8Array {
  const per = list[0]?.length ?? 0;
  const out = new Uint8Array(per * list.length);
  list.forEach((f, i) => out.set(f, i * per));
  return out;
}
