/**
 * `actionflow toy moons|bimodal`: the toy problems (`training/toy/run.ts`): two moons, and a flow
 * head against a regression head on actions with two modes.
 */
import type { Command } from "commander";
import { BACKEND_NAMES, useBackend } from "../../training/backend/registry.ts";
import type { BackendName } from "../../training/backend/registry.ts";
import type { ToyProgress } from "../../training/toy/run.ts";
import { runBimodal, runMoons } from "../../training/toy/run.ts";
import { log, phasedProgress, printResult } from "../output.ts";
import { choiceOption, nonNegativeInt, option, positiveInt } from "../args.ts";

interface ToyCliOptions {
  json?: boolean;
  seed: number;
  steps: number;
  batch: number;
  sampleSteps: number;
  arch: "mlp" | "transformer";
  backend: BackendName;
}

/** The toy runs' progress: a bar per phase, updated every tenth step and at the last. */
function progressReporter(opts: ToyCliOptions): { report: ToyProgress; stop(): void } {
  const phased = phasedProgress(opts);
  return {
    report(phase, step, total, loss) {
      if (step % 10 === 0 || step === total) phased.report({ kind: "count", phase, done: step, total, info: { loss } });
    },
    stop: () => phased.stop(),
  };
}

function common(cmd: Command): Command {
  return cmd
    .addOption(option("--seed <n>", "random seed", nonNegativeInt, 0))
    .addOption(option("--batch <n>", "batch size", positiveInt, 256))
    .addOption(option("--sample-steps <n>", "Euler steps when sampling", positiveInt, 10))
    .addOption(choiceOption("--arch <arch>", "mlp or transformer", ["mlp", "transformer"], "mlp"))
    .addOption(
      choiceOption(
        "--backend <name>",
        "tfjs backend: auto, tensorflow-gpu, tensorflow, wasm, cpu",
        BACKEND_NAMES,
        "auto",
      ),
    )
    .option("--json", "print one JSON object as the last line");
}

/** Registers the `toy` commands: `toy moons` and `toy bimodal`. */
export function registerToy(program: Command): void {
  const toy = program.command("toy").description("the toy problems: two moons and bimodal actions");

  common(toy.command("moons").description("learn two moons; energy distance of 10-step samples vs the noise floor"))
    .addOption(option("--steps <n>", "training steps of the flow", positiveInt, 800))
    .addOption(option("--reflow-steps <n>", "fine-tuning steps of the ReFlow round (0: none)", nonNegativeInt, 400))
    .option("--picture <file>", "SVG of the samples from noise to data", "runs/toy/moons.svg")
    .action(async (o: ToyCliOptions & { reflowSteps: number; picture: string }) => {
      const backend = await useBackend(o.backend);
      log(`backend: ${backend}`);
      const p = progressReporter(o);
      const r = await runMoons({ ...o, batchSize: o.batch, onProgress: p.report });
      p.stop();
      printResult(
        { ...r, backend },
        o,
        (x: typeof r) =>
          `two moons: energy distance ${x.energyDistance.toFixed(5)} (before ReFlow ${x.energyDistanceBeforeReflow.toFixed(5)}), noise floor ${x.noiseFloor.toFixed(5)}, ratio ${x.ratio.toFixed(2)}; picture ${x.picture}; ${x.seconds.toFixed(0)} s`,
      );
    });

  common(toy.command("bimodal").description("flow head vs regression head on actions with two modes"))
    .addOption(option("--steps <n>", "training steps of each head", positiveInt, 600))
    .addOption(option("--horizon <n>", "chunk length", positiveInt, 8))
    .action(async (o: ToyCliOptions & { horizon: number }) => {
      const backend = await useBackend(o.backend);
      log(`backend: ${backend}`);
      const p = progressReporter(o);
      const r = await runBimodal({ ...o, batchSize: o.batch, onProgress: p.report });
      p.stop();
      const fmt = (m: { modeShare: number[]; meanDistToMode: number }): string =>
        `modes ${m.modeShare.map((s) => s.toFixed(2)).join("/")}, mean distance to nearest mode ${m.meanDistToMode.toFixed(3)}`;
      printResult(
        { ...r, backend },
        o,
        (x: typeof r) =>
          `bimodal (mode separation ${x.modeSeparation.toFixed(3)}):\n  flow:       ${fmt(x.flow)}\n  regression: ${fmt(x.regression)}`,
      );
    });
}
