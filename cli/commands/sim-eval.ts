/**
 * `actionflow sim eval`: closed-loop evaluation of a chunk policy in MuJoCo, written as LeRobot's
 * eval_info.json plus one SVG per episode (the pipeline is `sim/eval-run.ts`).
 */
import { join } from "node:path";
import type { Command } from "commander";
import { choiceOption, nonNegativeInt, option, positiveFloat, positiveInt, providerOption } from "../args.ts";
import { addMergeOptions } from "../merge-options.ts";
import { chunkMergeFrom, type MergeFlags } from "../../policy/runtime/executor.ts";
import type { ExecutionProvider } from "../../policy/runtime/providers.ts";
import { runSimEval } from "../../sim/eval-run.ts";
import { cameraSpecs } from "../../sim/camera.ts";
import { userSceneFrom } from "../../sim/scene/user.ts";
import { parseTaskName, TASK_NAMES } from "../../sim/tasks/index.ts";
import { log, printResult, startProgress } from "../output.ts";

/** `sim eval`'s `--n-action-steps` when the mode takes it and it is not given. */
const SIM_EVAL_MERGE_DEFAULTS = { nActionSteps: 8 };

/** Registers `sim eval` under `sim`. */
export function registerSimEval(sim: Command): void {
  const evalCmd = sim
    .command("eval")
    .description("closed-loop evaluation of a policy; writes eval_info.json (LeRobot layout) and one SVG per episode")
    .option(
      "--policy <run>",
      "a run/checkpoint folder or .onnx file (run by onnxruntime), or 'expert' for the scripted expert as a chunk policy",
    )
    .addOption(
      choiceOption(
        "--via <where>",
        "local (--policy) or kserve (the policy on --server)",
        ["local", "kserve"],
        "local",
      ),
    )
    .option("--server <url>", "--via kserve: the KServe v2 / Triton server, http://host:8000 or grpc://host:8001")
    .option("--model <name>", "--via kserve: the model's name in the server's repository (default: policy)")
    .addOption(choiceOption("--task <name>", `task: ${TASK_NAMES.join(", ")}`, TASK_NAMES).makeOptionMandatory())
    .addOption(option("--episodes <n>", "episodes", positiveInt, 10))
    .addOption(
      option(
        "--seed <n>",
        "seed of episode 0: episode i resets the scene and the policy's noise from seed + i",
        nonNegativeInt,
        1000,
      ),
    );
  addMergeOptions(evalCmd, "sync", SIM_EVAL_MERGE_DEFAULTS)
    .addOption(
      option(
        "--delay-steps <n>",
        "simulated inference delay in control steps: a chunk arrives n steps after its observation (sync waits for it, rtc keeps executing its committed prefix)",
        nonNegativeInt,
        0,
      ),
    )
    .addOption(option("--horizon <n>", "chunk length of the scripted expert (--policy expert)", positiveInt, 16))
    .option(
      "--out <dir>",
      "output folder (default <run>/eval/<task>, <dir>/eval/<name>/<task> for <dir>/<name>.onnx, or runs/eval-expert-<task>)",
    )
    .addOption(option("--fps <hz>", "control rate", positiveFloat, 30))
    .option("--mjcf <file>", "a user robot MJCF instead of the built-in arm (needs --mapping)")
    .option("--mapping <file>", "its joint/actuator mapping JSON")
    .addOption(providerOption())
    .option(
      "--camera <name...>",
      "render this camera into the observation (an image policy's observation.images.<name>)",
    )
    .option("--camera-size <WxH...>", "camera image size, one for all or one per --camera (default 96x96)")
    .option(
      "--prompt <text>",
      "the task prompt of every episode: an instructed task (fork-instructed) is told the way it names (default: each episode's own instruction), a prompt-conditioned policy is given it",
    )
    .option(
      "--instruct <mode>",
      "with --prompt: the way an instructed task is told when the prompt is not one of its instructions (a paraphrase, for a policy with a text encoder), e.g. left",
    )
    .option(
      "--switch-prompt <text>",
      "change the prompt mid-episode (with --switch-at): the instructed task is told the new way, the policy gets it at its next chunk",
    )
    .addOption(
      option("--switch-at <step>", "control step of every episode at which --switch-prompt applies", nonNegativeInt),
    )
    .option("--json", "print one JSON object as the last stdout line")
    .action(
      async (
        o: MergeFlags & {
          policy?: string;
          via: "local" | "kserve";
          server?: string;
          model?: string;
          task: string;
          camera?: string[];
          cameraSize?: string[];
          provider: ExecutionProvider;
          episodes: number;
          seed: number;
          delaySteps: number;
          horizon: number;
          out?: string;
          fps: number;
          mjcf?: string;
          mapping?: string;
          prompt?: string;
          instruct?: string;
          switchPrompt?: string;
          switchAt?: number;
          json?: boolean;
        },
      ) => {
        const task = parseTaskName(o.task);
        if ((o.switchPrompt === undefined) !== (o.switchAt === undefined))
          throw new Error("sim eval: --switch-prompt and --switch-at go together");
        if ((o.via === "kserve") !== (o.server !== undefined) || (o.via === "kserve") === (o.policy !== undefined))
          throw new Error("sim eval: give --policy <run>, or --via kserve --server <url> [--model <name>]");
        const kserve =
          o.server !== undefined ? { server: o.server, ...(o.model ? { model: o.model } : {}) } : undefined;
        const policy = o.policy ?? `kserve ${o.server} model ${o.model ?? "policy"}`;
        // sync's actions per chunk: the flag, else the policy's recommendation, else 8 (runSimEval)
        // the scripted expert is the reference its demonstrations came from: its commands run as it
        // gives them unless --smoothing says otherwise
        const expertRaw = o.policy === "expert" && o.smoothing === undefined && o.merge !== "ensemble";
        const merge = chunkMergeFrom(
          expertRaw ? { ...o, smoothing: 0 } : o,
          o.merge === "sync" ? {} : SIM_EVAL_MERGE_DEFAULTS,
        );
        const scene = await userSceneFrom(o);
        const json = o.json ?? false;
        const bar = startProgress(o.episodes, { json, label: `eval ${task}` });
        let r;
        try {
          r = await runSimEval({
            task,
            policy,
            ...(kserve ? { kserve } : {}),
            merge,
            defaultNActionSteps: SIM_EVAL_MERGE_DEFAULTS.nActionSteps,
            delaySteps: o.delaySteps,
            episodes: o.episodes,
            seed: o.seed,
            horizon: o.horizon,
            ...(o.out !== undefined ? { out: o.out } : {}),
            fps: o.fps,
            ...(scene ? { scene } : {}),
            provider: o.provider,
            camera: cameraSpecs(o.camera ?? [], o.cameraSize ?? []),
            ...(o.prompt !== undefined ? { prompt: o.prompt } : {}),
            ...(o.instruct !== undefined ? { instruct: o.instruct } : {}),
            ...(o.switchPrompt !== undefined && o.switchAt !== undefined
              ? { promptSwitch: { prompt: o.switchPrompt, atStep: o.switchAt } }
              : {}),
            onEpisode: (done, ep) => bar.update(done, { success: ep.success ? 1 : 0 }),
          });
        } finally {
          bar.stop();
        }
        const { info, outDir, report } = r;
        if (!json)
          log(
            `wrote ${join(outDir, "eval_info.json")}, ${report} and ${o.episodes} pictures in ${join(outDir, "pictures")}`,
          );
        const result = { ...info.aggregated, episodes: o.episodes, outDir, report };
        printResult(result, { json }, (x: typeof result) =>
          [
            `success ${x.pc_success.toFixed(1)}% over ${x.episodes} episodes, avg max reward ${x.avg_max_reward.toFixed(3)}, avg sum reward ${x.avg_sum_reward.toFixed(2)}`,
            ...(x.mode_share ? [`mode share left/right ${x.mode_share.map((v) => v.toFixed(2)).join(" / ")}`] : []),
            ...(x.instructed_share !== undefined
              ? [`went the instructed way in ${(100 * x.instructed_share).toFixed(1)}% of the episodes`]
              : []),
            `${x.eval_s.toFixed(1)} s (${x.eval_ep_s.toFixed(2)} s per episode)`,
          ].join("\n"),
        );
      },
    );
}
