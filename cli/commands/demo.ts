/**
 * `actionflow demo` (`npm run demo`): the whole system on one simulated task, end to end (collect,
 * train a flow head and a regression baseline, export, evaluate closed loop, drive the simulated
 * robot through a policy server in real time, evaluate offline, write one HTML report). The pipeline
 * and its stage cache are `pipelines/demo.ts`'s {@link runDemo}; this file parses the flags, shows
 * progress and prints the result.
 */
import type { Command } from "commander";
import { DEMO_TASK, runDemo } from "../../pipelines/demo.ts";
import type { DemoOptions, DemoResult } from "../../pipelines/demo.ts";
import { TASK_NAMES } from "../../sim/tasks/index.ts";
import { TRAIN_BACKEND_NAMES } from "../../training/backend/registry.ts";
import { DEFAULT_STEPS } from "../../training/run/settings.ts";
import { choiceOption, list, nonNegativeInt, option, positiveFloat, positiveInt, providerOption } from "../args.ts";
import { log, phasedProgress, printResult } from "../output.ts";

/** The `demo` flags: the pipeline's options, and `--json`. */
type DemoFlags = Omit<DemoOptions, "log" | "onProgress"> & { json?: boolean };

function human(r: DemoResult): string {
  const pad = (s: string, n: number): string => s.padEnd(n);
  const row = (a: string, b: string, c: string): string => `  ${pad(a, 34)}${pad(b, 14)}${c}`;
  const share = (s: [number, number] | null): string => (s ? `${s[0].toFixed(2)}/${s[1].toFixed(2)}` : "-");
  const reused = Object.entries(r.stages)
    .filter(([, s]) => s === "reused")
    .map(([n]) => n);
  return [
    "",
    `actionflow demo: ${r.task}`,
    row("", "flow head", "regression baseline"),
    row(
      `success over ${r.evalEpisodes} seeded episodes`,
      `${r.pcSuccess.toFixed(1)} %`,
      `${r.baselinePcSuccess.toFixed(1)} %`,
    ),
    row("mode share", share(r.modeShare), share(r.baselineModeShare)),
    row("training", `${r.trainS.toFixed(0)} s`, `${r.baselineTrainS.toFixed(0)} s`),
    row(
      "offline MSE (held-out demos)",
      r.offlineMse.toPrecision(3),
      r.baselineOfflineMse !== null ? r.baselineOfflineMse.toPrecision(3) : "-",
    ),
    row("offline best-of-K MSE", r.offlineBestOfKMse.toPrecision(3), ""),
    "",
    `real-time loop via ${r.via}: ${r.loopHz.toFixed(1)} Hz, jitter p99 ${r.jitterP99Ms.toFixed(1)} ms, ${r.missedDeadlines} missed deadlines, inference p50 ${r.inferP50Ms.toFixed(1)} ms, ${r.loopSolved} of ${r.loopEpisodes} episodes solved`,
    ...(reused.length > 0 ? [`reused: ${reused.join(", ")} (--fresh redoes them)`] : []),
    `report ${r.report} (${r.seconds.toFixed(0)} s)`,
  ].join("\n");
}

/** Registers `demo`. */
export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description(
      "end to end on a simulated task: record demonstrations, train the flow head and a regression baseline, export to ONNX, evaluate closed loop, drive the simulated robot through a policy server in real time, evaluate offline, write one HTML report",
    )
    .addOption(choiceOption("--task <name>", "simulated task", TASK_NAMES, DEMO_TASK))
    .addOption(option("--episodes <n>", "expert demonstrations recorded (the last tenth held out)", positiveInt, 200))
    .addOption(option("--steps <n>", "training steps of each head", positiveInt, DEFAULT_STEPS))
    .addOption(option("--eval-episodes <n>", "seeded closed-loop episodes per head", positiveInt, 50))
    .addOption(
      option(
        "--seconds <s>",
        "real-time loop: seconds of control, one episode after another (each ends once solved)",
        positiveFloat,
        10,
      ),
    )
    .option("--out <dir>", "output folder (stages, runs, report)", "runs/demo")
    .addOption(
      choiceOption(
        "--backend <name>",
        "training backend (ort: onnxruntime, the fastest on a CPU; or a tfjs backend)",
        TRAIN_BACKEND_NAMES,
        "ort",
      ),
    )
    .addOption(providerOption())
    .addOption(choiceOption("--via <server>", "policy server of the real-time loop", ["zmq", "openpi"], "zmq"))
    .option("--config <json>", "head and training settings for both heads (as `train --config`)")
    .addOption(
      option(
        "--sweep-steps <list>",
        "offline: Euler step counts of the solver sweep",
        list(positiveInt),
        [1, 2, 4, 10],
      ),
    )
    .addOption(option("--pictures <n>", "rollout pictures per head in the report", nonNegativeInt, 8))
    .option("--fresh", "redo every stage (default: reuse stages finished with the same settings)")
    .addOption(option("--seed <n>", "seed of recording, training and evaluation", nonNegativeInt, 0))
    .option("--json", "print one JSON object as the last stdout line")
    .action(async (o: DemoFlags) => {
      const json = o.json ?? false;
      // Ctrl-C: stop at once; every finished stage is recorded and nothing unfinished is trusted
      process.once("SIGINT", () => {
        log("\ndemo: interrupted; run it again to continue from the last finished stage");
        process.exit(130);
      });
      const progress = phasedProgress({ json });
      const { json: _json, ...options } = o;
      try {
        const r = await runDemo({ ...options, log, onProgress: (p) => progress.report(p) });
        printResult(r, { json }, human);
      } finally {
        progress.stop();
      }
    });
}
