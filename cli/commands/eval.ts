/**
 * `actionflow eval offline`: judges an exported policy on held-out demonstrations (no simulator):
 * sampled-chunk errors, best-of-K, a solver sweep, the validation loss and the likelihood of the
 * demonstrated chunks, with an optional baseline run and an HTML report (the pipeline is
 * `eval/offline.ts`; this file parses the options and prints).
 */
import type { Command } from "commander";
import { SOLVER_NAMES } from "../../policy/flow/solvers.ts";
import type { SolverName } from "../../policy/flow/solvers.ts";
import { evaluateOffline, offlineFigures, SWEEP_STEPS } from "../../eval/offline.ts";
import type { OfflineEvalResult, PolicyMetrics } from "../../eval/offline.ts";
import { writeOfflineReport } from "../../eval/offline-report.ts";
import type { EpisodeRange } from "../args.ts";
import {
  choice,
  choiceOption,
  episodeRange,
  list,
  nonNegativeInt,
  option,
  positiveInt,
  providerOption,
} from "../args.ts";
import type { ExecutionProvider } from "../../policy/runtime/providers.ts";
import { log, printResult, startProgress } from "../output.ts";
import type { Progress } from "../output.ts";

interface OfflineFlags {
  policy: string;
  dataset: string;
  episodes: EpisodeRange;
  report?: string;
  samples: number;
  stride: number;
  baseline?: string;
  seed: number;
  solvers: SolverName[];
  sweepSteps: number[];
  sweepFrames: number;
  llFrames: number;
  probes: number;
  odeSteps: number;
  threads: number;
  provider: ExecutionProvider;
  missingVideo: "error" | "skip";
  json?: boolean;
}

function human(r: OfflineEvalResult & { report?: string }): string {
  const line = (m: PolicyMetrics): string =>
    `${m.objective} ${m.policy}: val loss ${m.valLoss.toPrecision(4)}, MSE ${m.mse.toPrecision(4)}, L1 ${m.l1.toPrecision(4)}, first action L1 ${m.firstActionL1.toPrecision(4)}, best-of-${m.bestOfK.k} MSE ${m.bestOfK.mse.toPrecision(4)}, spread ${m.spread.toPrecision(3)}` +
    (m.likelihood
      ? `, log-likelihood ${m.likelihood.perDim.toFixed(3)} ± ${m.likelihood.stdErr.toFixed(3)} nats/dim`
      : "");
  const best = [...r.metrics.sweep].sort((a, b) => a.mse - b.mse)[0];
  return [
    `${r.frames} frames of episodes ${r.episodes.join(", ")} (stride ${r.stride}), ${r.seconds.toFixed(0)} s`,
    line(r.metrics),
    ...(r.baseline ? [line(r.baseline)] : []),
    ...(best
      ? [
          `sweep: lowest MSE ${best.mse.toPrecision(4)} with ${best.solver} x ${best.steps} (${best.latencyMs.toFixed(1)} ms)`,
        ]
      : []),
    ...(r.report ? [`report ${r.report}`] : []),
  ].join("\n");
}

/** Registers `eval offline`. */
export function registerEval(program: Command): void {
  const ev = program.command("eval").description("evaluate policies offline on demonstration datasets");

  ev.command("offline")
    .description(
      "judge an exported policy on held-out demonstrations: sampled-chunk errors, best-of-K, solver sweep, validation loss, likelihood",
    )
    .requiredOption("--policy <run>", "run folder (its policy.onnx, or its latest checkpoint exported in memory)")
    .requiredOption("--dataset <dir>", "LeRobot dataset folder or robomimic .hdf5 file")
    .addOption(
      option(
        "--episodes <a:b>",
        "episodes evaluated, a half-open range (e.g. the held-out 8:10)",
        episodeRange,
      ).makeOptionMandatory(),
    )
    .option("--report <file>", "write the HTML report here")
    .addOption(
      choiceOption(
        "--missing-video <what>",
        "an episode without its camera video: error or skip",
        ["error", "skip"],
        "error",
      ),
    )
    .addOption(option("--samples <K>", "sampled chunks per frame (best-of-K, spread)", positiveInt, 8))
    .addOption(option("--stride <k>", "every k-th frame of each episode", positiveInt, 5))
    .option("--baseline <run>", "a second run (e.g. the regression head) evaluated on the same frames")
    .addOption(option("--seed <n>", "seed of every noise draw", nonNegativeInt, 0))
    .addOption(
      option("--solvers <list>", "solvers of the sweep (comma-separated)", list(choice(SOLVER_NAMES)), [
        ...SOLVER_NAMES,
      ]),
    )
    .addOption(option("--sweep-steps <list>", "solver steps of the sweep", list(positiveInt), [...SWEEP_STEPS]))
    .addOption(option("--sweep-frames <n>", "frames (evenly spaced) in the sweep", positiveInt, 64))
    .addOption(
      option("--ll-frames <n>", "frames (evenly spaced) whose likelihood is estimated (0: none)", nonNegativeInt, 8),
    )
    .addOption(option("--probes <n>", "Hutchinson probes per frame (chunks above 64 dims)", positiveInt, 4))
    .addOption(option("--ode-steps <n>", "RK4 steps of the likelihood's ODE", positiveInt, 16))
    .addOption(
      option(
        "--threads <n>",
        "onnxruntime intra-op threads of the sample graphs (1 gives the steadiest latencies on a shared machine)",
        positiveInt,
        1,
      ),
    )
    .addOption(providerOption())
    .option("--json", "print one JSON object as the last stdout line")
    .action(async (o: OfflineFlags) => {
      const json = o.json ?? false;
      let bar: Progress | undefined;
      let phase = "";
      const episodes = Array.from({ length: o.episodes.end - o.episodes.start }, (_, i) => o.episodes.start + i);
      const r = await evaluateOffline({
        policy: o.policy,
        dataset: o.dataset,
        episodes,
        stride: o.stride,
        samples: o.samples,
        seed: o.seed,
        sweep: { solvers: o.solvers, steps: o.sweepSteps },
        sweepFrames: o.sweepFrames,
        threads: o.threads,
        executionProviders: [o.provider],
        likelihood: { frames: o.llFrames, probes: o.probes, odeSteps: o.odeSteps },
        ...(o.baseline !== undefined ? { baseline: o.baseline } : {}),
        missingVideo: o.missingVideo,
        onProgress: (p, done, total) => {
          if (p !== phase) {
            bar?.stop();
            phase = p;
            bar = startProgress(total, { json, label: p });
            if (json || !process.stderr.isTTY) log(p);
          }
          bar?.update(done);
        },
      });
      bar?.stop();
      if (o.report) {
        await writeOfflineReport(o.report, r, {
          command: `actionflow ${process.argv.slice(2).join(" ")}`,
          dataset: o.dataset,
          missingVideo: o.missingVideo,
          log,
        });
        if (!json) log(`wrote ${o.report}`);
      }
      const result = { ...offlineFigures(r), ...(o.report ? { report: o.report } : {}), seconds: r.seconds };
      printResult(result, { json }, () => human({ ...r, ...(o.report ? { report: o.report } : {}) }));
    });
}
