/**
 * Closed-loop evaluation of a chunk policy in simulation, written the way LeRobot's `lerobot-eval`
 * writes it: `eval_info.json` with `per_episode` (episode_ix, sum_reward, max_reward, success, seed)
 * and `aggregated` (avg_sum_reward, avg_max_reward, pc_success, eval_s, eval_ep_s), plus one
 * top-down SVG per episode in `pictures/eval_episode_{i}.svg`.
 *
 * Chunks are executed by the chunk executor (`policy/runtime/executor.ts`), by default in its `sync`
 * mode: the policy is asked for a chunk only when the previous chunk's first `nActionSteps` actions
 * have been executed (receding horizon, as LeRobot's `n_action_steps`), at zero latency unless an
 * inference delay is simulated. `sim eval` as a whole (loading the policy, the report) is
 * `./eval-run.ts`.
 */
import { join } from "node:path";
import { writeFileAtomic, writeJsonAtomic } from "../policy/io/atomic.ts";
import type { ChunkPolicy, ChunkRequest, Observation } from "../policy/chunk-policy.ts";
import { ChunkExecutor, chunkMergeFrom } from "../policy/runtime/executor.ts";
import type { Aggregate, ChunkMerge } from "../policy/runtime/executor.ts";
import { continueEpisode } from "./rollout.ts";
import type { EpisodeResult } from "./rollout.ts";
import type { RobotScene } from "./scene/robot.ts";
import { meanSmoothness, smoothness, type Smoothness } from "./smoothness.ts";
import { episodeSvg } from "./svg.ts";
import type { CameraSpec } from "./camera.ts";
import { createTask, imageKey, taskInfo } from "./tasks/index.ts";
import type { Task, TaskName } from "./tasks/index.ts";

/** One evaluated episode (LeRobot's keys, plus `mode` for multimodal tasks and `length`). */
export interface EvalEpisode {
  episode_ix: number;
  sum_reward: number;
  max_reward: number;
  success: boolean;
  seed: number;
  /** Control steps run. */
  length: number;
  /** Multimodal tasks only (avoid, fork): the way the end effector went ("left", "right", or "none"). */
  mode?: string;
  /** Instructed tasks only (fork-instructed): the mode the episode was told to take, and its prompt. */
  instructed?: string;
  prompt?: string;
  /** How smoothly it moved (see `smoothness.ts`): end-effector path length, joint-command jerk, reversals. */
  smoothness: Smoothness;
}

/** The content of `eval_info.json`. */
export interface EvalInfo {
  per_episode: EvalEpisode[];
  aggregated: {
    avg_sum_reward: number;
    avg_max_reward: number;
    /** Percent of episodes that succeeded (0-100). */
    pc_success: number;
    /** Wall-clock seconds for the whole evaluation. */
    eval_s: number;
    /** Wall-clock seconds per episode. */
    eval_ep_s: number;
    /** Multimodal tasks only (avoid, fork): share of [left, right] among episodes that took either way. */
    mode_share?: [number, number];
    /** Instructed tasks only: share (0-1) of all episodes that went the instructed way. */
    instructed_share?: number;
    /** The episodes' mean smoothness figures. */
    smoothness: Smoothness;
  };
}

/** Options for {@link evaluate}. */
export interface EvaluateOptions {
  task: TaskName;
  /**
   * The policy, or a factory given the live task (for policies that read privileged state, such
   * as {@link ExpertChunkPolicy}).
   */
  policy: ChunkPolicy | ((task: Task) => ChunkPolicy);
  /** Number of episodes; episode i is reset with seed `seed + i`. */
  episodes: number;
  seed: number;
  /**
   * How chunks are executed (see `policy/runtime/executor.ts`; default `sync`): the settings
   * ({@link ChunkMerge}, e.g. from `chunkMergeFrom` for the command-line flags), or a mode name whose
   * settings are `nActionSteps`, `prefixSteps` and `aggregate`, mapped as the flags are. `rtc` takes
   * its inference delay from `delaySteps`.
   */
  merge?: ChunkMerge | ChunkMerge["mode"];
  /**
   * With a mode name: `sync`: actions executed from each chunk before asking for the next
   * (1 <= n <= horizon; default the whole chunk less the prefix); `rtc`: the execution horizon.
   */
  nActionSteps?: number;
  /**
   * With a mode name (`sync`, `rtc`): each request commits at least `prefixSteps` planned actions as
   * the next chunk's prefix (kept as given; the rest sampled to continue them), to keep the
   * successive chunks of a multimodal policy consistent. `sync`: the previous chunk's next
   * `prefixSteps` planned actions, `nActionSteps + prefixSteps <= horizon`; `rtc`: max(delaySteps,
   * prefixSteps). 0 (default) samples every chunk afresh (sync) or commits the delay (rtc). At most
   * the policy's `rtcMaxDelay` when it was prefix-trained.
   */
  prefixSteps?: number;
  /** With a mode name (`sync`, `blend`, `rtc`): smoothing weight λ of each new chunk onto the commands before it (default the executor's; 0 = off). */
  smoothing?: number;
  /** With the mode name `blend`: how overlapping predictions merge (default weighted_average). */
  aggregate?: Aggregate;
  /**
   * Simulated inference delay in control steps (default 0): a chunk requested from the observation of
   * step s arrives at step s + delaySteps, and the arm keeps executing what is queued meanwhile (or
   * holds its last command when nothing is). In `sync` the arm waits for the chunk and then executes
   * it from its start (openpi's broker on a real robot); in `rtc` the actions that execute meanwhile
   * are the committed prefix the new chunk continues.
   */
  delaySteps?: number;
  /** Folder for eval_info.json and pictures/ (created if missing). */
  outDir: string;
  /** Robot scene; default the built-in arm. */
  scene?: RobotScene;
  /** Control rate in Hz; default 30. */
  fps?: number;
  /**
   * Cameras rendered into every observation (`observation.images.<name>`, for an image policy); the
   * first one's image at each chunk request is drawn under the episode's picture.
   */
  camera?: CameraSpec[];
  /**
   * The task prompt of every episode. An instructed task (fork-instructed) is told the mode this
   * prompt names (default: the instruction each episode draws from its seed); a policy conditioned
   * on prompts gets it with every chunk (default: the episode's instruction, else the task's
   * description). A policy without prompts ignores it, but the instructed way is still scored.
   */
  prompt?: string;
  /**
   * The mode an instructed task is told with `prompt` when the prompt is not one of the task's own
   * instructions (a paraphrase, for a policy that takes any prompt through a text encoder); default:
   * the mode `prompt` names (an unknown prompt is then refused).
   */
  instruct?: string;
  /**
   * Changes the prompt mid-episode: at control step `atStep` of every episode the instructed task is
   * told the mode `prompt` names and the policy is given `prompt` (`setPrompt`: it takes effect at
   * the next chunk the executor asks for). The episode's `instructed` (what `instructed_share`
   * scores) is then the new mode.
   */
  promptSwitch?: { prompt: string; atStep: number };
  /** Called after each episode (progress). */
  onEpisode?: (done: number, episode: EvalEpisode) => void;
}

/** The mode an instructed task's prompt names; an unknown prompt's error says how to evaluate a paraphrase. */
function modeOfPrompt(task: { modeOfPrompt(text: string): string }, prompt: string): string {
  try {
    return task.modeOfPrompt(prompt);
  } catch (err) {
    throw new Error(
      `${(err as Error).message}; to evaluate a paraphrase (a policy with a text encoder), give the way it instructs (instruct, --instruct)`,
      { cause: err },
    );
  }
}

/** Runs closed-loop episodes and writes `eval_info.json` and one SVG per episode; returns the info. */
export async function evaluate(opts: EvaluateOptions): Promise<EvalInfo> {
  if (!Number.isInteger(opts.episodes) || opts.episodes < 1)
    throw new RangeError(`sim eval: episodes must be a positive integer, got ${opts.episodes}`);
  const task = await createTask(opts.task, {
    ...(opts.scene ? { scene: opts.scene } : {}),
    ...(opts.fps ? { fps: opts.fps } : {}),
    ...(opts.camera && opts.camera.length > 0 ? { camera: opts.camera } : {}),
  });
  const firstCam = opts.camera?.[0];
  const seen: Uint8Array[] = [];
  const t0 = performance.now();
  const perEpisode: EvalEpisode[] = [];
  try {
    const inner = typeof opts.policy === "function" ? opts.policy(task) : opts.policy;
    if (opts.instruct !== undefined && opts.prompt === undefined)
      throw new Error("sim eval: instruct (--instruct) tells the mode of a prompt: give the prompt (--prompt)");
    // the mode every episode is told (an unknown prompt or mode is refused here, before any episode)
    const promptMode =
      opts.prompt === undefined || !task.info.instructions
        ? undefined
        : (opts.instruct ?? modeOfPrompt(task, opts.prompt));
    if (promptMode !== undefined && !(promptMode in task.info.instructions!))
      throw new Error(
        `sim eval: instruct must be one of the task's modes ${Object.keys(task.info.instructions!).join(", ")}, got '${promptMode}'`,
      );
    const sw = opts.promptSwitch;
    if (sw !== undefined) {
      if (!Number.isInteger(sw.atStep) || sw.atStep < 0)
        throw new RangeError(`sim eval: the prompt switch step must be an integer >= 0, got ${sw.atStep}`);
      if (task.info.instructions) task.modeOfPrompt(sw.prompt);
    }
    const onStep =
      sw === undefined
        ? undefined
        : (step: number): void => {
            if (step !== sw.atStep) return;
            if (task.info.instructions) task.instruct(task.modeOfPrompt(sw.prompt));
            if (inner.prompts !== undefined) inner.setPrompt?.(sw.prompt);
          };
    // the images the policy was given at each chunk request, for the picture
    const policy: ChunkPolicy = firstCam
      ? {
          horizon: inner.horizon,
          actionDim: inner.actionDim,
          ...(inner.fps !== undefined ? { fps: inner.fps } : {}),
          ...(inner.nActionSteps !== undefined ? { nActionSteps: inner.nActionSteps } : {}),
          ...(inner.rtcMaxDelay !== undefined ? { rtcMaxDelay: inner.rtcMaxDelay } : {}),
          sampleChunk: (obs: Observation, req?: ChunkRequest) => {
            const img = obs[imageKey(firstCam.name)];
            if (img instanceof Uint8Array) seen.push(img);
            return inner.sampleChunk(obs, req);
          },
          reset: (s: number) => inner.reset(s),
        }
      : inner;
    if (policy.actionDim !== task.env.dim) {
      throw new Error(
        `sim eval: the policy predicts ${policy.actionDim} action dims but the ${task.env.scene.source} scene takes ${task.env.dim}`,
      );
    }
    const merge = mergeOf(opts); // sync without nActionSteps takes the policy's own in ChunkExecutor.forPolicy
    const n = merge.mode === "sync" ? merge.nActionSteps : merge.mode === "rtc" ? merge.executionHorizon : undefined;
    if (n !== undefined && (!Number.isInteger(n) || n < 1 || n > policy.horizon)) {
      throw new RangeError(`sim eval: nActionSteps must be an integer in [1, horizon=${policy.horizon}], got ${n}`);
    }
    const d = merge.mode === "sync" || merge.mode === "rtc" ? (merge.prefixSteps ?? 0) : 0;
    if (!Number.isInteger(d) || d < 0 || (n ?? 0) + d > policy.horizon) {
      throw new RangeError(
        `sim eval: prefixSteps must be an integer >= 0 with nActionSteps + prefixSteps <= horizon (${n ?? 0} + ${d} > ${policy.horizon})`,
      );
    }
    const delay = opts.delaySteps ?? 0;
    if (!Number.isInteger(delay) || delay < 0)
      throw new RangeError(`sim eval: delaySteps must be an integer >= 0, got ${delay}`);
    // the actions each request commits (as the executor counts them)
    const committed = merge.mode === "rtc" ? Math.max(delay, d) : d;
    if (policy.rtcMaxDelay && committed > policy.rtcMaxDelay)
      throw new RangeError(
        `sim eval: a committed prefix of ${committed} steps (${merge.mode === "rtc" ? `inference delay ${delay}, ` : ""}prefixSteps ${d}) exceeds the ${policy.rtcMaxDelay} the policy was trained to continue (rtcMaxDelay)`,
      );
    const executor = ChunkExecutor.forPolicy(policy, merge, { delaySteps: delay });
    for (let i = 0; i < opts.episodes; i++) {
      const seed = (opts.seed + i) >>> 0;
      task.reset(seed);
      if (promptMode !== undefined) task.instruct(promptMode);
      if (inner.prompts !== undefined) inner.setPrompt?.(opts.prompt ?? task.prompt);
      policy.reset(seed);
      executor.reset();
      seen.length = 0;
      const chunkStarts: number[] = [];
      const result = await runChunked(task, policy, executor, delay, onStep, chunkStarts);
      const ep: EvalEpisode = {
        episode_ix: i,
        sum_reward: sum(result.rewards),
        max_reward: result.rewards.length > 0 ? Math.max(...result.rewards) : 0,
        success: result.success,
        seed,
        length: result.length,
        smoothness: smoothness(result.eeTrace, result.action, task.env.dim, 1 / task.env.fps, undefined, chunkStarts),
      };
      const way = task.modeOf(result.eeTrace);
      if (way !== undefined) ep.mode = way;
      if (task.instructedMode !== undefined) {
        ep.instructed = task.instructedMode;
        // a paraphrase told with instruct is reported as given
        ep.prompt =
          opts.instruct !== undefined && opts.prompt !== undefined && sw === undefined ? opts.prompt : task.prompt;
      }
      perEpisode.push(ep);
      const told = ep.instructed ? `, told ${ep.instructed}` : "";
      const title = `${opts.task} seed ${seed}: ${result.success ? "success" : "failure"}${ep.mode ? ` (${ep.mode}${told})` : ""}, ${result.length} steps`;
      const svg = episodeSvg({
        title,
        trace: result.eeTrace,
        markers: result.markers,
        outcome: result.success ? "success" : "failure",
        ...(firstCam && seen.length > 0
          ? { camera: { frames: [...seen], width: firstCam.width, height: firstCam.height, name: firstCam.name } }
          : {}),
      });
      await writeFileAtomic(join(opts.outDir, "pictures", `eval_episode_${i}.svg`), svg);
      opts.onEpisode?.(i + 1, ep);
    }
  } finally {
    task.dispose();
  }
  const evalS = (performance.now() - t0) / 1000;
  const m = perEpisode.length;
  const info: EvalInfo = {
    per_episode: perEpisode,
    aggregated: {
      avg_sum_reward: sum(perEpisode.map((e) => e.sum_reward)) / m,
      avg_max_reward: sum(perEpisode.map((e) => e.max_reward)) / m,
      pc_success: (100 * perEpisode.filter((e) => e.success).length) / m,
      eval_s: evalS,
      eval_ep_s: evalS / m,
      smoothness: meanSmoothness(perEpisode.map((e) => e.smoothness)),
    },
  };
  const modes = taskInfo(opts.task).modes;
  if (modes) {
    const left = perEpisode.filter((e) => e.mode === modes[0]).length;
    const right = perEpisode.filter((e) => e.mode === modes[1]).length;
    const total = left + right;
    info.aggregated.mode_share = total > 0 ? [left / total, right / total] : [0, 0];
  }
  if (taskInfo(opts.task).instructions)
    info.aggregated.instructed_share = perEpisode.filter((e) => e.mode === e.instructed).length / m;
  await writeJsonAtomic(join(opts.outDir, "eval_info.json"), info);
  return info;
}

/** The merge settings `evaluate` runs with: `opts.merge` itself, or the flat settings mapped as the flags are. */
function mergeOf(opts: EvaluateOptions): ChunkMerge {
  const m = opts.merge ?? "sync";
  if (typeof m === "object") {
    const flat = (["nActionSteps", "prefixSteps", "aggregate", "smoothing"] as const).filter(
      (k) => opts[k] !== undefined,
    );
    if (flat.length > 0)
      throw new Error(
        `sim eval: ${flat.join(", ")} given beside merge settings; give them in merge (or merge as a mode name)`,
      );
    return m;
  }
  const { nActionSteps, prefixSteps, aggregate, smoothing } = opts;
  return chunkMergeFrom({
    merge: m,
    ...(nActionSteps !== undefined ? { nActionSteps } : {}),
    ...(prefixSteps !== undefined ? { prefixSteps } : {}),
    ...(smoothing !== undefined ? { smoothing } : {}),
    ...(aggregate !== undefined ? { aggregate } : {}),
  });
}

/**
 * One episode on an already reset task, driving the policy through the chunk executor. With a
 * simulated delay, a chunk requested at step s is merged at step s + delay (`sync`: as starting then,
 * the arm having waited; other modes: as computed at s); until it arrives the arm executes what is
 * queued, or holds its last command (its measured position before the first).
 */
async function runChunked(
  task: Task,
  policy: ChunkPolicy,
  executor: ChunkExecutor,
  delay: number,
  onStep?: (step: number) => void,
  chunkStarts: number[] = [],
): Promise<EpisodeResult> {
  const mode = executor.settings;
  let pending: { s0: number; arrive: number; chunk: Float32Array; prefixLen: number } | undefined;
  let last: Float32Array | undefined;
  const fail = (step: number, err: unknown): Error =>
    new Error(`sim eval (${task.info.name}, seed ${task.seed}, step ${step}): ${(err as Error).message}`, {
      cause: err,
    });
  return continueEpisode(task, async (obs, step) => {
    onStep?.(step);
    if (executor.step !== step) throw new Error(`sim eval: executor at step ${executor.step}, episode at ${step}`);
    if (pending && step >= pending.arrive) {
      const { s0, chunk, prefixLen } = pending;
      pending = undefined;
      try {
        executor.merge(mode.mode === "sync" ? step : s0, chunk);
        // the first command from the new chunk: after its prefix (sync starts it now, rtc at s0)
        chunkStarts.push(mode.mode === "sync" ? step + prefixLen : Math.max(step, s0 + prefixLen));
      } catch (err) {
        throw fail(step, err);
      }
    }
    if (!pending && executor.wantsChunk()) {
      const ticket = executor.request();
      try {
        const req = ticket.prefix ? { prefix: ticket.prefix, prefixLen: ticket.prefixLen } : {};
        const chunk = await policy.sampleChunk(obs, req);
        if (delay === 0) {
          executor.merge(ticket.s0, chunk);
          chunkStarts.push(ticket.s0 + ticket.prefixLen);
        } else pending = { s0: ticket.s0, arrive: step + delay, chunk, prefixLen: ticket.prefixLen };
      } catch (err) {
        executor.cancel();
        throw fail(step, err);
      }
    }
    const action = executor.next() ?? last ?? task.env.jointPositions();
    last = action;
    return action;
  });
}

function sum(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i] ?? 0;
  return s;
}
