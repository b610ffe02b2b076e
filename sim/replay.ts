/**
 * Open-loop replay of a recorded episode: rebuild the scene from the episode's seed (from
 * `meta/actionflow.json`), feed the recorded actions, and compare the simulated joint positions with
 * the recorded `observation.state`. The simulation is deterministic, so a replay of an episode
 * recorded on the same scene reproduces it exactly (tracking error 0). A dataset recorded with
 * cameras has them rendered again: each replayed image is compared with the recorded video (mean
 * absolute difference per pixel value, 0-255: the codec's error), and `framesSvg` gets a strip of
 * them.
 */
import { join } from "node:path";
import { z } from "zod";
import { readJsonFile } from "../policy/io/json.ts";
import { openLeRobot } from "../datasets/lerobot/reader.ts";
import { loadEpisodeFrames } from "../datasets/video/frames.ts";
import { framesStripSvg } from "../eval/frames.ts";
import { writeFileAtomic } from "../policy/io/atomic.ts";
import { ACTIONFLOW_META } from "./collect.ts";
import type { ActionflowMeta } from "./collect.ts";
import { continueEpisode } from "./rollout.ts";
import { armScene } from "./scene/arm.ts";
import type { RobotScene } from "./scene/robot.ts";
import { loadUserScene } from "./scene/user.ts";
import { OBS_PARTS, TASK_NAMES, createTask, imageKey, parseTaskName } from "./tasks/index.ts";
import type { TaskName } from "./tasks/index.ts";

/** Options for {@link replay}. */
export interface ReplayOptions {
  /** Dataset folder written by `sim collect`. */
  dataset: string;
  /** Episode index. */
  episode: number;
  /**
   * Scene override (a user MJCF); default: the recorded scene (built-in arm, or the user MJCF and mapping paths in
   * meta).
   */
  scene?: RobotScene;
  /** Write a strip of the replayed camera images (every 10th frame) to this SVG file. */
  framesSvg?: string;
}

/** What {@link replay} reports. */
export interface ReplayResult {
  episode: number;
  /** Whether the replayed episode met the task's success condition. */
  success: boolean;
  /** Mean absolute joint position error, replayed vs recorded `observation.state` (radians; metres for slides). */
  trackingErrorRad: number;
  /** Largest absolute joint error over the episode. */
  maxErrorRad: number;
  frames: number;
  seed: number;
  /** Per recorded camera: mean absolute difference (0-255) between the replayed images and the decoded video. */
  cameras: Record<string, { meanAbsError: number }>;
}

/**
 * `meta/actionflow.json` as `sim collect` writes it (`ActionflowMeta`); the annotation keeps the
 * schema and the interface in step.
 */
const ActionflowMetaSchema: z.ZodType<ActionflowMeta> = z.object({
  format: z.literal("actionflow-sim/1"),
  task: z.enum(TASK_NAMES as [TaskName, ...TaskName[]]),
  fps: z.number().positive(),
  scene: z.object({
    source: z.string(),
    mapping: z.string().optional(),
    joints: z.array(z.string()),
    actuators: z.array(z.string()),
  }),
  seed: z.number().int(),
  attempts: z.number().int().nonnegative(),
  expertSuccess: z.number(),
  cameras: z
    .array(
      z.object({
        name: z.string(),
        width: z.number().int().positive(),
        height: z.number().int().positive(),
        pos: z.tuple([z.number(), z.number(), z.number()]).optional(),
        lookAt: z.tuple([z.number(), z.number(), z.number()]).optional(),
        fovy: z.number().optional(),
        light: z.tuple([z.number(), z.number(), z.number()]).optional(),
        shadows: z.boolean().optional(),
      }),
    )
    .optional(),
  obs: z.array(z.enum(OBS_PARTS as ["state", "env", "camera"])).optional(),
  episodes: z.array(
    z.object({
      episode_index: z.number().int().nonnegative(),
      seed: z.number().int(),
      attempt: z.number().int().nonnegative(),
      success: z.boolean(),
      mode: z.string().optional(),
    }),
  ),
});

/** Reads `meta/actionflow.json` of a recorded dataset; throws naming the file and the field at fault. */
export async function readActionflowMeta(dataset: string): Promise<ActionflowMeta> {
  return readJsonFile(join(dataset, "meta", ACTIONFLOW_META), ActionflowMetaSchema, {
    missing: "replay needs a dataset recorded by 'actionflow sim collect' (it stores the reset seeds there)",
    invalid: "not an actionflow-sim/1 file",
  });
}

/** Replays episode `episode` of a recorded dataset; see the module comment. */
export async function replay(opts: ReplayOptions): Promise<ReplayResult> {
  const meta = await readActionflowMeta(opts.dataset);
  const rec = meta.episodes.find((e) => e.episode_index === opts.episode);
  if (!rec)
    throw new RangeError(
      `${opts.dataset}: no episode ${opts.episode} in meta/${ACTIONFLOW_META} (episodes 0..${meta.episodes.length - 1})`,
    );
  let scene = opts.scene;
  if (!scene) {
    if (meta.scene.source === "actionflow-arm") {
      scene = armScene();
    } else {
      if (!meta.scene.mapping)
        throw new Error(
          `${opts.dataset}: recorded on the user MJCF ${meta.scene.source} without a mapping path; pass --mjcf and --mapping`,
        );
      try {
        scene = await loadUserScene({ mjcf: meta.scene.source, mapping: meta.scene.mapping });
      } catch (err) {
        throw new Error(
          `${opts.dataset}: cannot reload the recorded user MJCF ${meta.scene.source}; pass --mjcf and --mapping`,
          { cause: err },
        );
      }
    }
  }
  const ds = await openLeRobot(opts.dataset);
  const actionFeature = ds.features["action"];
  const stateFeature = ds.features["observation.state"];
  if (!actionFeature || !stateFeature)
    throw new Error(`${opts.dataset}: needs 'action' and 'observation.state' features`);
  const actionDim = actionFeature.shape.reduce((a, b) => a * b, 1);
  const stateDim = stateFeature.shape.reduce((a, b) => a * b, 1);
  const cameras = meta.cameras ?? [];
  const task = await createTask(parseTaskName(meta.task), {
    scene,
    fps: ds.fps,
    ...(cameras.length > 0 ? { camera: cameras } : {}),
  });
  try {
    const env = task.env;
    if (actionDim !== env.dim || stateDim !== env.dim) {
      throw new Error(
        `${opts.dataset}: dataset has ${actionDim} action dims and ${stateDim} state dims but the ${env.scene.source} scene takes ${env.dim} (${env.scene.actuators.join(", ")})`,
      );
    }
    const cols = await ds.readEpisode(opts.episode, ["action", "observation.state"]);
    const actions = cols["action"] as Float32Array;
    const states = cols["observation.state"] as Float32Array;
    const length = ds.episode(opts.episode).length;
    let sumErr = 0;
    let maxErr = 0;
    const recordedVideo = new Map<string, Uint8Array>();
    for (const c of cameras) {
      const f = await loadEpisodeFrames({ format: "lerobot", dataset: ds }, opts.episode, imageKey(c.name), c);
      recordedVideo.set(c.name, f!.data);
    }
    const imageErr = new Map<string, number>();
    const strip: Uint8Array[] = [];
    const labels: string[] = [];
    task.reset(rec.seed);
    const result = await continueEpisode(
      task,
      (obs, k) => {
        const s = obs["observation.state"] as Float32Array;
        for (const c of cameras) {
          const img = obs[imageKey(c.name)] as Uint8Array;
          const video = recordedVideo.get(c.name)!;
          let e = 0;
          for (let i = 0; i < img.length; i++) e += Math.abs(img[i]! - video[k * img.length + i]!);
          imageErr.set(c.name, (imageErr.get(c.name) ?? 0) + e / img.length);
          if (c === cameras[0] && k % 10 === 0) {
            strip.push(img);
            labels.push(String(k));
          }
        }
        for (let i = 0; i < env.dim; i++) {
          const e = Math.abs((s[i] ?? 0) - (states[k * env.dim + i] ?? 0));
          sumErr += e;
          if (e > maxErr) maxErr = e;
        }
        return actions.subarray(k * env.dim, (k + 1) * env.dim);
      },
      { maxSteps: length, stopWhen: "never" },
    );
    if (result.length !== length) {
      throw new Error(
        `${opts.dataset}: episode ${opts.episode} has ${length} frames, more than the ${meta.task} task's ${task.info.maxSteps} steps`,
      );
    }
    const first = cameras[0];
    if (opts.framesSvg && first)
      await writeFileAtomic(
        opts.framesSvg,
        framesStripSvg(strip, {
          width: first.width,
          height: first.height,
          title: `${imageKey(first.name)}, episode ${opts.episode} replayed (frame index under each)`,
          labels,
        }),
      );
    return {
      episode: opts.episode,
      success: result.success,
      trackingErrorRad: sumErr / (length * env.dim),
      maxErrorRad: maxErr,
      frames: length,
      seed: rec.seed,
      cameras: Object.fromEntries(
        cameras.map((c) => [imageKey(c.name), { meanAbsError: (imageErr.get(c.name) ?? 0) / length }]),
      ),
    };
  } finally {
    task.dispose();
  }
}
