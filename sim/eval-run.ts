/**
 * `sim eval` as a library function ({@link runSimEval}): loads the policy (onnxruntime, or the task's
 * scripted expert), runs the closed-loop evaluation of `./eval.ts` into the output folder and writes
 * its HTML report (`./eval-report.ts`) beside `eval_info.json`.
 */
import { basename, dirname, join } from "node:path";
import { KServeChunkPolicy } from "../bridge/kserve/chunk-policy.ts";
import { writeReport } from "../eval/report.ts";
import type { ChunkPolicy } from "../policy/chunk-policy.ts";
import { mergeFlagsOf, withPolicySteps, type ChunkMerge } from "../policy/runtime/executor.ts";
import { OnnxPolicy } from "../policy/runtime/onnx-policy.ts";
import type { ExecutionProvider } from "../policy/runtime/providers.ts";
import { evaluate, type EvalEpisode, type EvalInfo, type EvaluateOptions } from "./eval.ts";
import { simEvalReport } from "./eval-report.ts";
import { ExpertChunkPolicy } from "./policy.ts";
import type { CameraSpec } from "./camera.ts";
import { policyCameras } from "./camera.ts";
import type { RobotScene } from "./scene/robot.ts";
import type { Task, TaskName } from "./tasks/index.ts";

/** Options of {@link runSimEval} (the `sim eval` flags). */
export interface SimEvalRunOptions {
  task: TaskName;
  /** A run/checkpoint folder or `.onnx` file (run by onnxruntime), or `expert` for the task's scripted expert. */
  policy: string;
  /**
   * How chunks are executed (`chunkMergeFrom` gives it for the flags). A `sync` merge without
   * `nActionSteps` takes the policy's own recommendation (`actionflow.n_action_steps` of an export),
   * else `defaultNActionSteps`, else the whole chunk.
   */
  merge: ChunkMerge;
  /** `sync`'s actions per chunk when neither `merge` nor the policy gives them (`sim eval`: 8). */
  defaultNActionSteps?: number;
  /** Simulated inference delay in control steps (see {@link EvaluateOptions.delaySteps}). */
  delaySteps: number;
  episodes: number;
  /** Seed of episode 0: episode i resets the scene and the policy's noise from seed + i. */
  seed: number;
  /** Chunk length of the scripted expert (`policy: "expert"`). */
  horizon: number;
  /**
   * Output folder (default `<run>/eval/<task>`, `<dir>/eval/<name>/<task>` for `<dir>/<name>.onnx`, or
   * `runs/eval-expert-<task>`).
   */
  out?: string;
  /** Control rate, Hz. */
  fps: number;
  /** Robot scene; default the built-in arm. */
  scene?: RobotScene;
  /** onnxruntime execution provider of an exported policy. */
  provider: ExecutionProvider;
  /** Cameras rendered into every observation (an image policy's `observation.images.<name>`). */
  camera?: CameraSpec[];
  /**
   * Evaluate the policy a KServe v2 / Triton server serves instead (`sim eval --via kserve --server
   * <url> [--model <name>]`); `policy` is then only its label. Default output folder
   * `runs/eval-kserve-<model>-<task>`.
   */
  kserve?: { server: string; model?: string; timeoutMs?: number };
  /** The task prompt of every episode (see {@link EvaluateOptions.prompt}). */
  prompt?: string;
  /** The mode an instructed task is told with a prompt it does not know (see {@link EvaluateOptions.instruct}). */
  instruct?: string;
  /** A prompt given mid-episode (see {@link EvaluateOptions.promptSwitch}). */
  promptSwitch?: { prompt: string; atStep: number };
  /** Called after each episode (progress). */
  onEpisode?: (done: number, episode: EvalEpisode) => void;
}

/** What {@link runSimEval} wrote: the info, its folder and the HTML report. */
export interface SimEvalRunResult {
  info: EvalInfo;
  outDir: string;
  /** The report's path (`<outDir>/report.html`). */
  report: string;
}

/**
 * Runs `sim eval`: loads the policy (onnxruntime, or the scripted expert), runs {@link evaluate} into
 * the output folder, writes `report.html` beside `eval_info.json` and releases the policy.
 */
export async function runSimEval(o: SimEvalRunOptions): Promise<SimEvalRunResult> {
  const { task, episodes, seed, delaySteps } = o;
  let policy: ChunkPolicy | ((t: Task) => ChunkPolicy);
  let outDir: string;
  let onnx: OnnxPolicy | undefined;
  let remote: KServeChunkPolicy | undefined;
  if (o.kserve) {
    const model = o.kserve.model ?? "policy";
    remote = await KServeChunkPolicy.connect({
      url: o.kserve.server,
      model,
      seed,
      ...(o.kserve.timeoutMs !== undefined ? { timeoutMs: o.kserve.timeoutMs } : {}),
    });
    policy = remote;
    outDir = o.out ?? join("runs", `eval-kserve-${model}-${task}`);
  } else if (o.policy === "expert") {
    const horizon = o.horizon;
    policy = (t) => new ExpertChunkPolicy(t, { horizon });
    outDir = o.out ?? join("runs", `eval-expert-${task}`);
  } else {
    // evaluate() calls reset(seed + i) per episode: the noise restarts from each episode's seed,
    // so episode i of `--episodes N --seed S` replays alone with `--episodes 1 --seed S+i`.
    onnx = await OnnxPolicy.load(o.policy, { seed, executionProviders: [o.provider] });
    policy = onnx;
    // An image policy sees its cameras at the size it was trained on, unless --camera says otherwise.
    if (!o.camera || o.camera.length === 0) {
      const cams = policyCameras(onnx.features);
      if (cams.length > 0) o = { ...o, camera: cams };
    }
    // a run folder gets <run>/eval/<task>; an .onnx file <its folder>/eval/<file name>/<task>
    outDir =
      o.out ??
      (o.policy.endsWith(".onnx")
        ? join(dirname(o.policy), "eval", basename(o.policy, ".onnx"), task)
        : join(o.policy, "eval", task));
  }
  const merge = executionOf(o.merge, onnx ?? remote, o.defaultNActionSteps);
  let info: EvalInfo;
  try {
    info = await evaluate({
      task,
      policy,
      episodes,
      seed,
      merge,
      delaySteps,
      outDir,
      fps: o.fps,
      ...(o.scene ? { scene: o.scene } : {}),
      ...(o.camera && o.camera.length > 0 ? { camera: o.camera } : {}),
      ...(o.prompt !== undefined ? { prompt: o.prompt } : {}),
      ...(o.instruct !== undefined ? { instruct: o.instruct } : {}),
      ...(o.promptSwitch !== undefined ? { promptSwitch: o.promptSwitch } : {}),
      ...(o.onEpisode ? { onEpisode: o.onEpisode } : {}),
    });
  } finally {
    await onnx?.release();
    remote?.close();
  }
  const report = join(outDir, "report.html");
  const command = [
    "actionflow sim eval",
    ...["--task", task],
    ...(o.kserve
      ? ["--via", "kserve", "--server", o.kserve.server, "--model", o.kserve.model ?? "policy"]
      : ["--policy", o.policy]),
    ...["--episodes", episodes, "--seed", seed],
    ...mergeFlagsOf(merge),
    ...["--delay-steps", delaySteps, "--fps", o.fps],
    ...(o.policy === "expert" ? ["--horizon", o.horizon] : []),
    ...(o.prompt !== undefined ? ["--prompt", JSON.stringify(o.prompt)] : []),
    ...(o.instruct !== undefined ? ["--instruct", o.instruct] : []),
    ...(o.promptSwitch !== undefined
      ? ["--switch-prompt", JSON.stringify(o.promptSwitch.prompt), "--switch-at", o.promptSwitch.atStep]
      : []),
    ...(o.camera && o.camera.length > 0
      ? ["--camera", ...o.camera.map((c) => c.name), "--camera-size", ...o.camera.map((c) => `${c.width}x${c.height}`)]
      : []),
  ].join(" ");
  await writeReport(
    report,
    simEvalReport(info, {
      task,
      policy: o.policy,
      execution: `${mergeLabel(merge)}, inference delay ${delaySteps} steps`,
      command,
    }),
  );
  return { info, outDir, report };
}

/**
 * `merge` with sync's actions per chunk filled in when it leaves them open: the policy's
 * recommendation, else `fallback`.
 */
function executionOf(
  merge: ChunkMerge,
  policy: Pick<ChunkPolicy, "horizon" | "nActionSteps"> | undefined,
  fallback: number | undefined,
): ChunkMerge {
  const m = policy ? withPolicySteps(policy, merge) : merge;
  return m.mode === "sync" && m.nActionSteps === undefined && fallback !== undefined
    ? { ...m, nActionSteps: fallback }
    : m;
}

/** How chunks were executed, for the report: e.g. `sync, 8 action steps, prefix 2`. */
function mergeLabel(m: ChunkMerge): string {
  const prefix = (p: number | undefined): string => (p ? `, prefix ${p}` : "");
  switch (m.mode) {
    case "sync":
      return `sync, ${m.nActionSteps ?? "all"} action steps${prefix(m.prefixSteps)}`;
    case "rtc":
      return `rtc, execution horizon ${m.executionHorizon ?? "H/2"}${prefix(m.prefixSteps)}`;
    case "blend":
      return `blend (${m.aggregate ?? "weighted_average"})`;
    case "ensemble":
      return "ensemble";
  }
}
