/**
 * `actionflow sim teleop`: the scripted expert teleoperates the simulated arm over ROS as a person
 * at a leader arm would (see sim/teleop.ts), framing each episode with `start`/`stop` on the
 * recording control topic, so `actionflow record` can be tried, tested and measured end to end.
 */
import type { Command } from "commander";
import { loadRobotProfile } from "../../bridge/profile.ts";
import { runTeleop, type TeleopResult } from "../../sim/teleop.ts";
import { TASK_NAMES, type TaskName } from "../../sim/tasks/index.ts";
import { choiceOption, nonNegativeInt, option, positiveInt } from "../args.ts";
import { log, printResult } from "../output.ts";

/** Registers `sim teleop` under `sim`. */
export function registerSimTeleop(sim: Command): void {
  sim
    .command("teleop")
    .description(
      "the scripted expert as a person at a leader arm: drives the simulated arm over rosbridge and frames episodes for `record`",
    )
    .addOption(choiceOption("--task <name>", "task", TASK_NAMES, "reach" as TaskName))
    .requiredOption("--ros <url>", "rosbridge URL, e.g. ws://127.0.0.1:9090")
    .option(
      "--robot <profile>",
      "robot profile JSON with a leader action source",
      "examples/robots/sim-arm-teleop.json",
    )
    .addOption(option("--episodes <n>", "episodes to demonstrate", positiveInt, 10))
    .addOption(option("--seed <n>", "episode k resets the scene with seed + k", nonNegativeInt, 0))
    .option("--keep-failures", "send stop (keep) for failed episodes too, not discard")
    .option("--no-quit", "do not send quit after the last episode")
    .option("--json", "print one JSON object as the last stdout line")
    .action(
      async (o: {
        task: TaskName;
        ros: string;
        robot: string;
        episodes: number;
        seed: number;
        keepFailures?: boolean;
        quit: boolean;
        json?: boolean;
      }) => {
        const profile = await loadRobotProfile(o.robot, { warn: log });
        const r = await runTeleop({
          task: o.task,
          profile,
          profilePath: o.robot,
          url: o.ros,
          episodes: o.episodes,
          seed: o.seed,
          keepFailures: o.keepFailures ?? false,
          quit: o.quit,
          onEpisode: (e) =>
            o.json
              ? undefined
              : log(
                  `sim teleop: episode ${e.episode} (seed ${e.seed}) ${e.success ? "succeeded" : "failed"} in ${e.steps} steps`,
                ),
        });
        printResult(
          r,
          { json: o.json ?? false },
          (x: TeleopResult) =>
            `sim teleop: ${x.episodes} ${x.task} episodes, ${x.successes} succeeded, ${x.seconds.toFixed(1)} s`,
        );
      },
    );
}
