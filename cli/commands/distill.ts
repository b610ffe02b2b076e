/**
 * `actionflow distill reflow`: distils a trained flow policy run into a student that samples well
 * in 1 or 2 steps (ReFlow). See `training/distill/reflow.ts`.
 */
import type { Command } from "commander";
import { SOLVER_NAMES } from "../../policy/flow/solvers.ts";
import type { SolverName } from "../../policy/flow/solvers.ts";
import { TRAIN_BACKEND_NAMES } from "../../training/backend/registry.ts";
import type { TrainBackendName } from "../../training/backend/registry.ts";
import type { ReflowRunResult } from "../../training/distill/reflow.ts";
import { reflowRun } from "../../training/distill/reflow.ts";
import { choiceOption, defined, nonNegativeInt, option, positiveFloat, positiveInt } from "../args.ts";
import { log, printResult, startProgress, trainingProgress } from "../output.ts";
import type { Progress } from "../output.ts";

interface ReflowFlags {
  teacher?: string;
  dataset?: string;
  out: string;
  pairs?: number;
  valPairs?: number;
  teacherSteps?: number;
  teacherSolver?: SolverName;
  steps?: number;
  lr?: number;
  seed?: number;
  backend: TrainBackendName;
  workers?: number;
  checkpointEvery?: number;
  threads?: number;
  resume?: boolean;
  json?: boolean;
}

function human(r: ReflowRunResult): string {
  return [
    `distilled ${r.teacher} (${r.teacherSolver}, ${r.teacherSteps} steps) on ${r.pairs} pairs (+${r.valPairs} validation)${r.pairSeconds > 0 ? `, made in ${r.pairSeconds.toFixed(1)} s` : ", from the cache"}`,
    `trained ${r.steps} steps (from ${r.resumedFrom}) on ${r.backend}, ${r.samplesPerSec.toFixed(1)} samples/s, ${r.seconds.toFixed(1)} s`,
    `train loss ${r.trainLoss.toPrecision(4)}, validation pair loss ${r.valLossAtStart.toPrecision(4)} -> ${r.valLoss.toPrecision(4)}`,
    `checkpoint ${r.checkpoint}  (next: actionflow export ${r.run} --steps 1)`,
  ].join("\n");
}

/** Registers `distill` and its `reflow` subcommand. */
export function registerDistill(program: Command): void {
  const distill = program.command("distill").description("distil a trained policy into a few-step one");
  distill
    .command("reflow")
    .description(
      "ReFlow: pair fresh noise with the teacher's many-step chunks on the dataset's observations, then fine-tune a student on the straight paths between them",
    )
    .option("--teacher <run>", "teacher run folder (run.json, checkpoints/); optional with --resume")
    .option("--dataset <dir>", "the teacher's dataset (default: the one in its run.json; another is refused)")
    .requiredOption("--out <run>", "student run folder (distill.json, the pair cache, checkpoints/)")
    .addOption(option("--pairs <n>", "training pairs (default: one per training window)", positiveInt))
    .addOption(option("--val-pairs <n>", "validation pairs (default min(256, validation windows))", positiveInt))
    .addOption(option("--teacher-steps <n>", "solver steps of the teacher's flow (default 20)", positiveInt))
    .addOption(choiceOption("--teacher-solver <name>", "teacher ODE solver (default euler)", SOLVER_NAMES))
    .addOption(option("--steps <n>", "student optimisation steps (default 1000)", positiveInt))
    .addOption(option("--lr <x>", "peak learning rate (default: a tenth of the teacher's)", positiveFloat))
    .addOption(
      option("--seed <n>", "seed of the pairs' noise and the batches (default: the teacher's)", nonNegativeInt),
    )
    .addOption(
      choiceOption(
        "--backend <name>",
        "what trains the student, as in train: auto (tfjs-node-gpu or tfjs-node when installed, else ort) | ort | tensorflow-gpu | tensorflow | wasm | cpu",
        TRAIN_BACKEND_NAMES,
        "auto",
      ),
    )
    .addOption(option("--workers <n>", "tfjs gradient threads (default as in train); not with ort", positiveInt))
    .addOption(
      option(
        "--checkpoint-every <n>",
        "steps between checkpoints (default: the teacher's; always one at the end)",
        positiveInt,
      ),
    )
    .addOption(option("--threads <n>", "onnxruntime threads of the teacher while making pairs", positiveInt))
    .option("--resume", "continue the distillation in --out (pairs from its cache, weights from its latest checkpoint)")
    .option("--json", "print one JSON object as the last stdout line")
    .action(async (o: ReflowFlags) => {
      const json = o.json ?? false;
      const progress = trainingProgress({ json, label: "distill" });
      let pairBar: Progress | undefined;
      let pairsLogged = 0;
      const result = await reflowRun({
        out: o.out,
        mode: o.resume ? "resume" : "new",
        backend: o.backend,
        ...defined({
          teacher: o.teacher,
          dataset: o.dataset,
          pairs: o.pairs,
          valPairs: o.valPairs,
          teacherSteps: o.teacherSteps,
          teacherSolver: o.teacherSolver,
          steps: o.steps,
          lr: o.lr,
          seed: o.seed,
          workers: o.workers,
          checkpointEvery: o.checkpointEvery,
          threads: o.threads,
        }),
        onPairs: (p) => {
          if (p.phase === "cached") {
            log(`pairs: ${p.total} from the cache`);
            return;
          }
          pairBar ??= startProgress(p.total, { json, label: "pairs" });
          pairBar.update(p.done, { s: p.seconds });
          // Without a bar (not a TTY, or --json) a line now and then shows the teacher is working.
          if ((json || !process.stderr.isTTY) && p.done - pairsLogged >= Math.max(1, Math.round(p.total / 20))) {
            pairsLogged = p.done;
            log(`pairs ${p.done}/${p.total} ${p.seconds.toFixed(1)} s`);
          }
          if (p.done === p.total) {
            pairBar.stop();
            log(`pairs: ${p.total} made in ${p.seconds.toFixed(1)} s`);
          }
        },
        onStart: (s) =>
          log(
            `${s.params} parameters; ${s.trainFrames} training windows, ${s.valFrames} validation windows` +
              (s.fromStep > 0 ? `; resuming at step ${s.fromStep}` : ""),
          ),
        onProgress: (p) => progress.report(p),
      });
      progress.stop();
      printResult(result, { json }, human);
    });
}
