/**
 * `actionflow sim collect|replay|eval`: scripted demonstrations into a LeRobot v3.0 dataset,
 * open-loop replay of a recorded episode, and closed-loop evaluation of a chunk policy, all in
 * MuJoCo (the pipelines are `sim/collect.ts`, `sim/replay.ts` and `sim/eval.ts`).
 */
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { choiceOption, nonNegativeInt, option, positiveFloat, positiveInt, providerOption } from "../args.ts";
import { addMergeOptions } from "../merge-options.ts";
import { chunkMergeFrom, type MergeFlags } from "../../policy/runtime/executor.ts";
import type { ExecutionProvider } from "../../policy/runtime/providers.ts";
import { collect } from "../../sim/collect.ts";
import { runSimEval } from "../../sim/eval-run.ts";
import { cameraSpecs } from "../../sim/camera.ts";
import { replay } from "../../sim/replay.ts";
import { userSceneFrom } from "../../sim/scene/user.ts";
import { parseObsParts, parseTaskName, TASK_NAMES } from "../../sim/tasks/index.ts";
import { log, printResult, startProgress } from "../output.ts";

/** `sim eval`'s `--n-action-steps` when the mode takes it and it is not given. */
const SIM_EVAL_MERGE_DEFAULTS = { nActionSteps: 8 };

/** Registers `sim collect`, `sim replay` and `sim eval`. */
export function registerSim(program: Command): void {
  const sim = program
    .command("sim")
    .description("MuJoCo simulation: record expert demonstrations, replay them, evaluate policies");

  sim
    .command("collect")
    .description("run the scripted expert and record a LeRobot v3.0 dataset")
    .addOption(choiceOption("--task <name>", `task: ${TASK_NAMES.join(", ")}`, TASK_NAMES).makeOptionMandatory())
    .addOption(option("--episodes <n>", "episodes to record", positiveInt, 50))
    .addOption(option("--seed <n>", "base seed (attempt j is reset with seed + j)", nonNegativeInt, 0))
    .requiredOption("--out <dir>", "new or empty dataset folder")
    .option("--keep-failures", "also record episodes the expert failed (default: successes only)")
    .option("--paired", "avoid, fork: demonstrate every scene both ways round (attempts 2k, 2k+1 share seed + k)")
    .addOption(option("--fps <hz>", "control rate", positiveFloat, 30))
    .option("--mjcf <file>", "a user robot MJCF instead of the built-in arm (needs --mapping)")
    .option("--mapping <file>", "JSON mapping of the user MJCF's joints/actuators/site to state and action dims")
    .option("--camera <name...>", "render this camera every frame and record it as video observation.images.<name>")
    .option("--camera-size <WxH...>", "camera image size, one for all or one per --camera (default 96x96)")
    .option("--obs <parts>", "observation parts to record: state,env,camera (state,camera = vision only)")
    .addOption(choiceOption("--vcodec <codec>", "camera video codec", ["av1", "h264"], "av1"))
    .option("--json", "print one JSON object as the last stdout line")
    .action(
      async (o: {
        task: string;
        episodes: number;
        seed: number;
        out: string;
        keepFailures?: boolean;
        paired?: boolean;
        fps: number;
        mjcf?: string;
        mapping?: string;
        camera?: string[];
        cameraSize?: string[];
        obs?: string;
        vcodec: "av1" | "h264";
        json?: boolean;
      }) => {
        const task = parseTaskName(o.task);
        const { episodes, seed, fps } = o;
        const scene = await userSceneFrom(o);
        const json = o.json ?? false;
        const bar = startProgress(episodes, { json, label: `collect ${task}` });
        const t0 = performance.now();
        let r;
        try {
          r = await collect({
            task,
            episodes,
            seed,
            out: o.out,
            failures: o.keepFailures ? "keep" : "drop",
            ...(o.paired ? { paired: true } : {}),
            fps,
            ...(scene ? { scene } : {}),
            ...(o.mapping ? { mappingPath: resolve(o.mapping) } : {}),
            cameras: cameraSpecs(o.camera ?? [], o.cameraSize ?? []),
            ...(o.obs ? { obs: parseObsParts(o.obs) } : {}),
            vcodec: o.vcodec,
            onAttempt: (attempts, recorded) => bar.update(recorded, { attempts }),
          });
        } finally {
          bar.stop();
        }
        const seconds = (performance.now() - t0) / 1000;
        const { frames, expertSuccess, modeShare, attempts, out } = r;
        const cameraFps = r.rendered.seconds > 0 ? r.rendered.frames / r.rendered.seconds : null;
        const result = { episodes: r.episodes, frames, expertSuccess, modeShare, attempts, seconds, cameraFps, out };
        printResult(result, { json }, (x: typeof result) =>
          [
            `recorded ${x.episodes} episodes, ${x.frames} frames -> ${x.out} (${x.seconds.toFixed(1)} s)`,
            `expert success ${(100 * x.expertSuccess).toFixed(1)}% over ${x.attempts} attempts`,
            ...(x.cameraFps ? [`camera rendering ${x.cameraFps.toFixed(0)} frames/s`] : []),
            ...(x.modeShare ? [`mode share left/right ${x.modeShare.map((v) => v.toFixed(2)).join(" / ")}`] : []),
          ].join("\n"),
        );
      },
    );

  sim
    .command("replay")
    .description("replay a recorded episode open loop from its seed and check it reproduces")
    .requiredOption("--dataset <dir>", "dataset recorded by 'sim collect'")
    .addOption(option("--episode <k>", "episode index", nonNegativeInt, 0))
    .option("--mjcf <file>", "the user MJCF the dataset was recorded on (needs --mapping)")
    .option("--mapping <file>", "its joint/actuator mapping JSON")
    .addOption(
      option("--seed <n>", "accepted for uniformity; the replay uses the episode's recorded seed", nonNegativeInt, 0),
    )
    .option("--frames <file.svg>", "a dataset with cameras: write a strip of the replayed camera images")
    .option("--json", "print one JSON object as the last stdout line")
    .action(
      async (o: {
        dataset: string;
        episode: number;
        mjcf?: string;
        mapping?: string;
        frames?: string;
        json?: boolean;
      }) => {
        const scene = await userSceneFrom(o);
        const r = await replay({
          dataset: o.dataset,
          episode: o.episode,
          ...(scene ? { scene } : {}),
          ...(o.frames ? { framesSvg: o.frames } : {}),
        });
        printResult(
          r,
          { json: o.json ?? false },
          (x: typeof r) =>
            `episode ${x.episode} (seed ${x.seed}): ${x.success ? "success" : "FAILURE"}, ${x.frames} frames, mean joint error ${x.trackingErrorRad.toExponential(2)} rad (max ${x.maxErrorRad.toExponential(2)})` +
            Object.entries(x.cameras)
              .map(
                ([k, c]) =>
                  `\n${k}: replayed vs recorded video, mean abs difference ${c.meanAbsError.toFixed(2)} / 255`,
              )
              .join(""),
        );
        if (!r.success) process.exitCode = 1;
      },
    );

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
          json?: boolean;
        },
      ) => {
        const task = parseTaskName(o.task);
        if ((o.via === "kserve") !== (o.server !== undefined) || (o.via === "kserve") === (o.policy !== undefined))
          throw new Error("sim eval: give --policy <run>, or --via kserve --server <url> [--model <name>]");
        const kserve =
          o.server !== undefined ? { server: o.server, ...(o.model ? { model: o.model } : {}) } : undefined;
        const policy = o.policy ?? `kserve ${o.server} model ${o.model ?? "policy"}`;
        const merge = chunkMergeFrom(o, SIM_EVAL_MERGE_DEFAULTS);
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
            delaySteps: o.delaySteps,
            episodes: o.episodes,
            seed: o.seed,
            horizon: o.horizon,
            ...(o.out !== undefined ? { out: o.out } : {}),
            fps: o.fps,
            ...(scene ? { scene } : {}),
            provider: o.provider,
            camera: cameraSpecs(o.camera ?? [], o.cameraSize ?? []),
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
            `${x.eval_s.toFixed(1)} s (${x.eval_ep_s.toFixed(2)} s per episode)`,
          ].join("\n"),
        );
      },
    );
}
