/**
 * `actionflow sim collect|replay|eval`: scripted demonstrations into a LeRobot v3.0 dataset,
 * open-loop replay of a recorded episode, and closed-loop evaluation of a chunk policy, all in
 * MuJoCo (see sim/).
 */
import { basename, dirname, join, resolve } from "node:path";
import type { Command } from "commander";
import { choiceOption, nonNegativeInt, option, positiveFloat, positiveInt, providerOption } from "../args.ts";
import type { ExecutionProvider } from "../../policy/runtime/providers.ts";
import { OnnxPolicy } from "../../policy/runtime/onnx-policy.ts";
import type { Aggregate } from "../../policy/runtime/executor.ts";
import { collect } from "../../sim/collect.ts";
import { evaluate } from "../../sim/eval.ts";
import { simEvalReport } from "../../sim/eval-report.ts";
import { writeReport } from "../../eval/report.ts";
import type { ChunkPolicy } from "../../policy/chunk-policy.ts";
import { ExpertChunkPolicy } from "../../sim/policy.ts";
import { replay } from "../../sim/replay.ts";
import type { RobotScene } from "../../sim/scene/robot.ts";
import { loadUserScene } from "../../sim/scene/user.ts";
import { parseTaskName, TASK_NAMES } from "../../sim/tasks/index.ts";
import type { Task } from "../../sim/tasks/index.ts";
import { log, printResult, startProgress } from "../output.ts";

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
        json?: boolean;
      }) => {
        const task = parseTaskName(o.task);
        const { episodes, seed, fps } = o;
        const scene = await sceneFrom(o);
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
            onAttempt: (attempts, recorded) => bar.update(recorded, { attempts }),
          });
        } finally {
          bar.stop();
        }
        const seconds = (performance.now() - t0) / 1000;
        const result = {
          episodes: r.episodes,
          frames: r.frames,
          expertSuccess: r.expertSuccess,
          modeShare: r.modeShare,
          attempts: r.attempts,
          seconds,
          out: r.out,
        };
        printResult(result, { json }, (x: typeof result) =>
          [
            `recorded ${x.episodes} episodes, ${x.frames} frames -> ${x.out} (${x.seconds.toFixed(1)} s)`,
            `expert success ${(100 * x.expertSuccess).toFixed(1)}% over ${x.attempts} attempts`,
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
    .option("--json", "print one JSON object as the last stdout line")
    .action(async (o: { dataset: string; episode: number; mjcf?: string; mapping?: string; json?: boolean }) => {
      const episode = o.episode;
      const scene = await sceneFrom(o);
      const r = await replay({ dataset: o.dataset, episode, ...(scene ? { scene } : {}) });
      printResult(
        r,
        { json: o.json ?? false },
        (x: typeof r) =>
          `episode ${x.episode} (seed ${x.seed}): ${x.success ? "success" : "FAILURE"}, ${x.frames} frames, mean joint error ${x.trackingErrorRad.toExponential(2)} rad (max ${x.maxErrorRad.toExponential(2)})`,
      );
      if (!r.success) process.exitCode = 1;
    });

  sim
    .command("eval")
    .description("closed-loop evaluation of a policy; writes eval_info.json (LeRobot layout) and one SVG per episode")
    .requiredOption(
      "--policy <run>",
      "a run/checkpoint folder or .onnx file (run by onnxruntime), or 'expert' for the scripted expert as a chunk policy",
    )
    .addOption(choiceOption("--task <name>", `task: ${TASK_NAMES.join(", ")}`, TASK_NAMES).makeOptionMandatory())
    .addOption(option("--episodes <n>", "episodes", positiveInt, 10))
    .addOption(
      option(
        "--seed <n>",
        "seed of episode 0: episode i resets the scene and the policy's noise from seed + i",
        nonNegativeInt,
        1000,
      ),
    )
    .addOption(option("--n-action-steps <n>", "actions executed from each chunk before the next query", positiveInt, 8))
    .addOption(
      option(
        "--prefix-steps <n>",
        "real-time chunking: each new chunk keeps the previous chunk's next n planned actions and continues them (0 = sample every chunk afresh)",
        nonNegativeInt,
        0,
      ),
    )
    .addOption(
      choiceOption(
        "--merge <mode>",
        "how chunks are executed: sync (n actions, then infer), rtc (real-time chunking: the actions executed during inference are the next chunk's prefix), ensemble (ACT), blend (LeRobot async)",
        ["sync", "rtc", "ensemble", "blend"],
        "sync",
      ),
    )
    .addOption(
      option(
        "--delay-steps <n>",
        "simulated inference delay in control steps: a chunk arrives n steps after its observation (sync waits for it, rtc keeps executing its committed prefix)",
        nonNegativeInt,
        0,
      ),
    )
    .addOption(
      choiceOption("--aggregate <fn>", "blend: how overlapping actions merge", [
        "weighted_average",
        "latest_only",
        "average",
        "conservative",
      ]),
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
    .option("--json", "print one JSON object as the last stdout line")
    .action(
      async (o: {
        policy: string;
        task: string;
        provider: ExecutionProvider;
        episodes: number;
        seed: number;
        nActionSteps: number;
        prefixSteps: number;
        merge: "sync" | "rtc" | "ensemble" | "blend";
        delaySteps: number;
        aggregate?: Aggregate;
        horizon: number;
        out?: string;
        fps: number;
        mjcf?: string;
        mapping?: string;
        json?: boolean;
      }) => {
        const task = parseTaskName(o.task);
        const { episodes, seed, nActionSteps, prefixSteps, fps } = o;
        const scene = await sceneFrom(o);
        const json = o.json ?? false;
        let policy: ChunkPolicy | ((t: Task) => ChunkPolicy);
        let outDir: string;
        let onnx: OnnxPolicy | undefined;
        if (o.policy === "expert") {
          const horizon = o.horizon;
          policy = (t) => new ExpertChunkPolicy(t, { horizon });
          outDir = o.out ?? join("runs", `eval-expert-${task}`);
        } else {
          // evaluate() calls reset(seed + i) per episode: the noise restarts from each episode's seed,
          // so episode i of `--episodes N --seed S` replays alone with `--episodes 1 --seed S+i`.
          onnx = await OnnxPolicy.load(o.policy, { seed, executionProviders: [o.provider] });
          policy = onnx;
          // a run folder gets <run>/eval/<task>; an .onnx file <its folder>/eval/<file name>/<task>
          outDir =
            o.out ??
            (o.policy.endsWith(".onnx")
              ? join(dirname(o.policy), "eval", basename(o.policy, ".onnx"), task)
              : join(o.policy, "eval", task));
        }
        const bar = startProgress(episodes, { json, label: `eval ${task}` });
        let info;
        try {
          info = await evaluate({
            task,
            policy,
            episodes,
            seed,
            nActionSteps,
            prefixSteps,
            merge: o.merge,
            delaySteps: o.delaySteps,
            ...(o.aggregate ? { aggregate: o.aggregate } : {}),
            outDir,
            fps,
            ...(scene ? { scene } : {}),
            onEpisode: (done, ep) => bar.update(done, { success: ep.success ? 1 : 0 }),
          });
        } finally {
          bar.stop();
          await onnx?.release();
        }
        const report = join(outDir, "report.html");
        const execution =
          o.merge === "sync"
            ? `sync, ${nActionSteps} action steps${prefixSteps ? `, prefix ${prefixSteps}` : ""}`
            : `${o.merge}, execution horizon ${nActionSteps}`;
        await writeReport(
          report,
          simEvalReport(info, {
            task,
            policy: o.policy,
            execution: `${execution}, inference delay ${o.delaySteps} steps`,
            command: `actionflow sim eval --task ${task} --policy ${o.policy} --episodes ${episodes} --seed ${seed} --n-action-steps ${nActionSteps} --merge ${o.merge} --delay-steps ${o.delaySteps}`,
          }),
        );
        if (!json)
          log(
            `wrote ${join(outDir, "eval_info.json")}, ${report} and ${episodes} pictures in ${join(outDir, "pictures")}`,
          );
        const result = { ...info.aggregated, episodes, outDir, report };
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

/** The user scene from --mjcf/--mapping, or undefined for the built-in arm. */
async function sceneFrom(o: { mjcf?: string; mapping?: string }): Promise<RobotScene | undefined> {
  if (!o.mjcf && !o.mapping) return undefined;
  if (!o.mjcf || !o.mapping)
    throw new Error("--mjcf and --mapping go together: the MJCF file and its joint/actuator mapping JSON");
  return loadUserScene({ mjcf: resolve(o.mjcf), mapping: resolve(o.mapping) });
}
