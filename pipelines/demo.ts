/**
 * The demo (`actionflow demo`, `npm run demo`): the whole system on one simulated task, end to end,
 * with the library functions every other command uses:
 *
 * ```
 * collect           expert demonstrations in MuJoCo (sim/collect.ts)        -> <out>/data
 * train-flow        the default flow head (training/run.ts)                  -> <out>/flow
 * train-regression  the same head and settings, objective regression        -> <out>/regression
 * export            both to ONNX (policy/onnx/export.ts)                     -> <run>/policy.onnx
 * eval-flow         closed loop over seeded episodes (sim/eval.ts)            -> <out>/eval/flow
 * eval-regression   the same episodes for the baseline                        -> <out>/eval/regression
 * loop              the real-time loop drives the simulated robot, the flow head behind a ZeroMQ
 *                   (or openpi WebSocket) server on 127.0.0.1 (`sim run`'s runSim; ./demo-loop.ts)
 * offline           held-out demonstrations, flow against the baseline (eval/offline.ts)
 * report            <out>/report.html (eval/demo-report.ts) and <out>/summary.json
 * ```
 *
 * Each stage records its completion in `<out>/stages/<stage>.json` (./stages.ts) with the settings it
 * ran with, including the stamps of the stages it used; a re-run reuses what matches and redoes the
 * rest, `fresh` redoes every stage. Folders are built with `writeDirAtomic` (under a temporary
 * sibling name, renamed into place once complete), so a run interrupted anywhere (Ctrl-C) leaves
 * nothing a re-run trusts. Progress and log lines go to the caller's callbacks.
 */
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { writeDirAtomic, writeJsonAtomic } from "../policy/io/atomic.ts";
import { exportOnnx } from "../policy/onnx/export.ts";
import { OnnxPolicy } from "../policy/runtime/onnx-policy.ts";
import { DEFAULT_SMOOTHING } from "../policy/runtime/executor.ts";
import type { ExecutionProvider } from "../policy/runtime/providers.ts";
import { demoReport } from "../eval/demo-report.ts";
import type { DemoPolicyFigures } from "../eval/demo-report.ts";
import { evaluateOffline } from "../eval/offline.ts";
import type { OfflineEvalResult } from "../eval/offline.ts";
import { readTrainingCurves } from "../eval/offline-report.ts";
import { writeReport } from "../eval/report.ts";
import { collect } from "../sim/collect.ts";
import type { CollectResult } from "../sim/collect.ts";
import { evaluate } from "../sim/eval.ts";
import type { EvalInfo } from "../sim/eval.ts";
import { parseTaskName, taskInfo } from "../sim/tasks/index.ts";
import type { TaskName } from "../sim/tasks/index.ts";
import type { TrainBackendName } from "../training/backend/registry.ts";
import type { RunProgress, TrainRunResult } from "../training/run.ts";
import { trainRun } from "../training/run.ts";
import type { RunConfig } from "../training/run/settings.ts";
import { readRunConfig } from "../training/run/settings.ts";
import { runDemoLoop } from "./demo-loop.ts";
import type { DemoLoopSummary } from "./demo-loop.ts";
import { Stages } from "./stages.ts";
import type { StageDone } from "./stages.ts";

/** The default task of the demo; meant to be a two-mode task where averaging the modes fails. */
export const DEMO_TASK: TaskName = "fork";

/**
 * Progress of the demo's work, one phase at a time (a phase's reports run from its first to its
 * `end`; the next phase starts after): `count` reports `done` of `total` units (episodes, frames)
 * with figures to show beside them; `training` reports a training run's step, loss and speed.
 */
export type DemoProgress =
  | { kind: "count"; phase: string; done: number; total: number; info?: Record<string, number> }
  | { kind: "training"; phase: string; progress: RunProgress }
  | { kind: "end"; phase: string };

/** Options of {@link runDemo} (the `demo` flags). */
export interface DemoOptions {
  /** Task name (see `TASK_NAMES`); refused naming the choices otherwise. */
  task: string;
  /** Expert demonstrations recorded; the last tenth (at least one) is held out. At least 2. */
  episodes: number;
  /** Training steps of each head. */
  steps: number;
  /** Seeded closed-loop episodes per head. */
  evalEpisodes: number;
  /** Seconds of real-time control in the loop stage. */
  seconds: number;
  /** Output folder: stages, data, runs, evaluations, report. */
  out: string;
  backend: TrainBackendName;
  /** onnxruntime execution provider of every inference stage. */
  provider: ExecutionProvider;
  /** The policy server of the loop stage. */
  via: "zmq" | "openpi";
  /** A `train --config` file for both heads. */
  config?: string;
  /** Rollout pictures per head in the report. */
  pictures: number;
  /** Euler step counts of the offline solver sweep. */
  sweepSteps: number[];
  /** Redo every stage (default: reuse stages finished with the same settings). */
  fresh?: boolean;
  /** Seed of recording, training and evaluation (the evaluations use `1000 + seed`). */
  seed: number;
  /** Log lines (stages starting, reused, finished; training and loop notes); default: none. */
  log?: (line: string) => void;
  /** Progress of the current phase; default: none. */
  onProgress?: (p: DemoProgress) => void;
}

/** The demo's result (`--json` prints it as the last stdout line; `<out>/summary.json` holds it). */
export interface DemoResult {
  task: TaskName;
  /** Closed-loop success of the flow head, percent over `evalEpisodes` seeded episodes. */
  pcSuccess: number;
  baselinePcSuccess: number;
  /** Share of [first, second] mode among the episodes that took one (two-mode tasks), else null. */
  modeShare: [number, number] | null;
  baselineModeShare: [number, number] | null;
  evalEpisodes: number;
  /** Training wall time of the flow head and of the baseline, seconds. */
  trainS: number;
  baselineTrainS: number;
  /** Real-time loop: median chunk round trip through the server (ms), worst p99 jitter (ms), rate (Hz). */
  inferP50Ms: number;
  jitterP99Ms: number;
  loopHz: number;
  missedDeadlines: number;
  /** Real-time loop: episodes run one after another, and how many were solved. */
  loopEpisodes: number;
  loopSolved: number;
  via: string;
  /** Offline, held-out demonstrations, dataset units: sampled-chunk MSE, best-of-K MSE, the baseline's MSE. */
  offlineMse: number;
  offlineBestOfKMse: number;
  baselineOfflineMse: number | null;
  /** The HTML report's path. */
  report: string;
  /** The output folder, resolved. */
  out: string;
  stages: Record<string, "ran" | "reused">;
  /** Wall time of this run, seconds. */
  seconds: number;
}

type TrainSummary = Pick<TrainRunResult, "steps" | "trainLoss" | "valLoss" | "seconds" | "samplesPerSec" | "backend">;

/** The held-out episodes: the last tenth (at least one; none when there is only one episode). */
function heldOut(episodes: number): { start: number; end: number } {
  const n = episodes > 1 ? Math.max(1, Math.round(episodes / 10)) : 0;
  return { start: episodes - n, end: episodes };
}

/** The rollout pictures of an evaluation folder: the first `n` episodes' SVGs (each titled by sim/svg.ts). */
async function pictures(evalDir: string, n: number): Promise<{ svg: string }[]> {
  const info = JSON.parse(await readFile(join(evalDir, "eval_info.json"), "utf8")) as EvalInfo;
  return Promise.all(
    info.per_episode.slice(0, n).map(async (e) => ({
      svg: await readFile(join(evalDir, "pictures", `eval_episode_${e.episode_ix}.svg`), "utf8"),
    })),
  );
}

/** Runs the demo (see the module comment) and returns its result. */
export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const t0 = performance.now();
  const task = parseTaskName(o.task);
  const log = o.log ?? ((): void => {});
  const progress = o.onProgress ?? ((): void => {});
  const out = resolve(o.out);
  const { episodes, steps, evalEpisodes, seconds, seed, backend } = o;
  const config: RunConfig | undefined = o.config ? await readRunConfig(o.config) : undefined;
  const stages = new Stages({ out, mode: o.fresh ? "redo" : "reuse", log, label: "demo" });
  const dataDir = join(out, "data");
  const val = heldOut(episodes);
  if (val.end - val.start < 1) throw new Error(`--episodes: the demo needs at least 2 episodes, got ${episodes}`);

  // a two-mode task is recorded both ways round from every scene, so no observation hints at the mode
  const paired = taskInfo(task).modes !== undefined;
  const collected = await stages.run<CollectResult>("collect", { task, episodes, seed, paired }, [dataDir], () => {
    const phase = `collect ${task}`;
    progress({ kind: "count", phase, done: 0, total: episodes });
    return writeDirAtomic(dataDir, async (tmp) => ({
      ...(await collect({
        task,
        episodes,
        seed,
        paired,
        out: tmp,
        onAttempt: (attempts, rec) =>
          progress({ kind: "count", phase, done: rec, total: episodes, info: { attempts } }),
      })),
      out: dataDir,
    })).finally(() => progress({ kind: "end", phase }));
  });

  const train = async (objective: "flow" | "regression"): Promise<StageDone<TrainSummary>> => {
    const dir = join(out, objective);
    const settings = {
      data: collected.stamp,
      objective,
      steps,
      backend,
      seed,
      valEpisodes: `${val.start}:${val.end}`,
      config: config ?? null,
    };
    const phase = `train ${objective}`;
    return stages.run<TrainSummary>(`train-${objective}`, settings, [dir], () =>
      writeDirAtomic(dir, async (tmp) => {
        try {
          const r = await trainRun({
            out: tmp,
            mode: "new",
            dataset: dataDir,
            ...(config ? { config } : {}),
            steps,
            seed,
            objective,
            valEpisodes: settings.valEpisodes,
            backend,
            onStart: (s) =>
              log(
                `  ${objective}: ${s.backend}, ${s.params} parameters, ${s.trainEpisodes.length} train / ${s.valEpisodes.length} held-out episodes`,
              ),
            onProgress: (p) => progress({ kind: "training", phase, progress: p }),
          });
          return {
            steps: r.steps,
            trainLoss: r.trainLoss,
            valLoss: r.valLoss,
            seconds: r.seconds,
            samplesPerSec: r.samplesPerSec,
            backend: r.backend,
          };
        } finally {
          progress({ kind: "end", phase });
        }
      }),
    );
  };
  const flowRun = await train("flow");
  const regRun = await train("regression");
  const runs = { flow: join(out, "flow"), regression: join(out, "regression") };

  const exported = await stages.run(
    "export",
    { flow: flowRun.stamp, regression: regRun.stamp, steps: 10, solver: "euler" },
    [join(runs.flow, "policy.onnx"), join(runs.regression, "policy.onnx")],
    async () => {
      const r = [];
      for (const run of [runs.flow, runs.regression]) {
        const e = await exportOnnx(run, { steps: 10, solver: "euler" });
        r.push({ onnx: e.onnx, bytes: e.bytes, nfe: e.nfe });
      }
      return r;
    },
  );

  const evalSeed = 1000 + seed;
  const simEval = async (objective: "flow" | "regression"): Promise<StageDone<EvalInfo["aggregated"]>> => {
    const dir = join(out, "eval", objective);
    const phase = `eval ${objective}`;
    return stages.run(
      `eval-${objective}`,
      { export: exported.stamp, episodes: evalEpisodes, seed: evalSeed, nActionSteps: 8, smoothing: DEFAULT_SMOOTHING },
      [dir],
      () =>
        writeDirAtomic(dir, async (tmp) => {
          const policy = await OnnxPolicy.load(runs[objective], { seed: evalSeed, executionProviders: [o.provider] });
          progress({ kind: "count", phase, done: 0, total: evalEpisodes });
          try {
            const info = await evaluate({
              task,
              policy,
              episodes: evalEpisodes,
              seed: evalSeed,
              nActionSteps: 8,
              outDir: tmp,
              onEpisode: (done, ep) =>
                progress({ kind: "count", phase, done, total: evalEpisodes, info: { success: ep.success ? 1 : 0 } }),
            });
            return info.aggregated;
          } finally {
            progress({ kind: "end", phase });
            await policy.release();
          }
        }),
    );
  };
  const flowEval = await simEval("flow");
  const regEval = await simEval("regression");

  const loop = await stages.run<DemoLoopSummary>(
    "loop",
    {
      export: exported.stamp,
      seconds,
      via: o.via,
      seed: evalSeed,
      episodes: "until seconds",
      merge: "sync 8",
      smoothing: DEFAULT_SMOOTHING,
    },
    [],
    () => runDemoLoop({ task, policy: runs.flow, via: o.via, seconds, seed: evalSeed, provider: o.provider, out, log }),
  );

  const offline = await stages.run<OfflineEvalResult>(
    "offline",
    { export: exported.stamp, episodes: val, seed, sweepSteps: o.sweepSteps },
    [],
    async () => {
      let phase: string | undefined;
      try {
        return await evaluateOffline({
          policy: runs.flow,
          baseline: runs.regression,
          dataset: dataDir,
          episodes: Array.from({ length: val.end - val.start }, (_, i) => val.start + i),
          stride: 5,
          samples: 8,
          seed,
          sweep: { solvers: ["euler"], steps: o.sweepSteps },
          sweepFrames: 16,
          executionProviders: [o.provider],
          likelihood: { frames: 4 },
          onProgress: (p, done, total) => {
            if (phase !== undefined && p !== phase) progress({ kind: "end", phase });
            phase = p;
            progress({ kind: "count", phase, done, total });
          },
        });
      } finally {
        if (phase !== undefined) progress({ kind: "end", phase });
      }
    },
  );

  // the report and summary are cheap: written every run, from the stages' records
  const report = join(out, "report.html");
  const figures = async (
    objective: "flow" | "regression",
    tr: StageDone<TrainSummary>,
    ev: StageDone<EvalInfo["aggregated"]>,
  ): Promise<DemoPolicyFigures> => ({
    objective,
    pcSuccess: ev.result.pc_success,
    episodes: evalEpisodes,
    modeShare: ev.result.mode_share ?? null,
    trainS: tr.result.seconds,
    trainLoss: tr.result.trainLoss,
    valLoss: tr.result.valLoss,
    curves: await readTrainingCurves(runs[objective]),
    pictures: await pictures(join(out, "eval", objective), o.pictures),
  });
  const command = `actionflow demo --task ${task} --episodes ${episodes} --steps ${steps} --eval-episodes ${evalEpisodes} --seconds ${seconds} --backend ${backend} --via ${o.via} --seed ${seed} --out ${o.out}${o.config ? ` --config ${o.config}` : ""}`;
  const stageStatus = Object.fromEntries(stages.done.map((s) => [s.name, s.status]));
  stageStatus["report"] = "ran";
  await writeReport(
    report,
    demoReport({
      task,
      settings: {
        episodes,
        "held-out": `${val.start}:${val.end}`,
        "training steps": steps,
        backend: flowRun.result.backend,
        "eval episodes": evalEpisodes,
        seed,
      },
      flow: await figures("flow", flowRun, flowEval),
      baseline: await figures("regression", regRun, regEval),
      loop: {
        via: o.via,
        server: loop.result.server,
        seconds: loop.result.seconds,
        episodes: loop.result.episodes,
        solved: loop.result.solved,
        lastCutOff: loop.result.lastCutOff,
        loopHz: loop.result.loopHz,
        jitterP99Ms: loop.result.jitterP99Ms,
        inferP50Ms: loop.result.inferP50Ms,
        missedDeadlines: loop.result.missedDeadlines,
        latenciesMs: loop.result.latenciesMs,
      },
      offline: offline.result,
      stages: [...stages.done, { name: "report", status: "ran", seconds: 0 }],
      command,
    }),
  );
  const m = offline.result.metrics;
  const result: DemoResult = {
    task,
    pcSuccess: flowEval.result.pc_success,
    baselinePcSuccess: regEval.result.pc_success,
    modeShare: flowEval.result.mode_share ?? null,
    baselineModeShare: regEval.result.mode_share ?? null,
    evalEpisodes,
    trainS: flowRun.result.seconds,
    baselineTrainS: regRun.result.seconds,
    inferP50Ms: loop.result.inferP50Ms,
    jitterP99Ms: loop.result.jitterP99Ms,
    loopHz: loop.result.loopHz,
    missedDeadlines: loop.result.missedDeadlines,
    loopEpisodes: loop.result.episodes,
    loopSolved: loop.result.solved,
    via: o.via,
    offlineMse: m.mse,
    offlineBestOfKMse: m.bestOfK.mse,
    baselineOfflineMse: offline.result.baseline?.mse ?? null,
    report,
    out,
    stages: stageStatus,
    seconds: (performance.now() - t0) / 1000,
  };
  await writeJsonAtomic(join(out, "summary.json"), result);
  return result;
}
