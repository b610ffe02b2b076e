/**
 * `actionflow sim collect`: the task's scripted expert, recorded as a LeRobot v3.0 dataset in MuJoCo
 * (the pipeline is `sim/collect.ts`).
 */
import { resolve } from "node:path";
import type { Command } from "commander";
import { choiceOption, nonNegativeInt, option, positiveFloat, positiveInt } from "../args.ts";
import { collect } from "../../sim/collect.ts";
import { cameraSpecs } from "../../sim/camera.ts";
import { userSceneFrom } from "../../sim/scene/user.ts";
import { parseObsParts, parseTaskName, TASK_NAMES } from "../../sim/tasks/index.ts";
import { printResult, startProgress } from "../output.ts";

/** Registers `sim collect` under `sim`. */
export function registerSimCollect(sim: Command): void {
  sim
    .command("collect")
    .description("run the scripted expert and record a LeRobot v3.0 dataset")
    .addOption(choiceOption("--task <name>", `task: ${TASK_NAMES.join(", ")}`, TASK_NAMES).makeOptionMandatory())
    .addOption(option("--episodes <n>", "episodes to record", positiveInt, 50))
    .addOption(option("--seed <n>", "base seed (attempt j is reset with seed + j)", nonNegativeInt, 0))
    .requiredOption("--out <dir>", "new or empty dataset folder")
    .option("--keep-failures", "also record episodes the expert failed (default: successes only)")
    .option(
      "--paired",
      "avoid, fork, fork-instructed: demonstrate every scene both ways round (attempts 2k, 2k+1 share seed + k; fork-instructed: each told its way)",
    )
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
}
