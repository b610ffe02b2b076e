/**
 * `actionflow sim replay`: open-loop replay of a recorded episode from its seed in MuJoCo, checking
 * that it reproduces (the pipeline is `sim/replay.ts`).
 */
import type { Command } from "commander";
import { nonNegativeInt, option } from "../args.ts";
import { replay } from "../../sim/replay.ts";
import { userSceneFrom } from "../../sim/scene/user.ts";
import { printResult } from "../output.ts";

/** Registers `sim replay` under `sim`. */
export function registerSimReplay(sim: Command): void {
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
}
