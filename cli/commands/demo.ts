/**
 * `actionflow demo` (`npm run demo`): the whole system on one simulated task, end to end, with the
 * library functions every other command uses:
 *
 * ```
 * collect           expert demonstrations in MuJoCo (sim/collect.ts)        -> <out>/data
 * train-flow        the default flow head (training/run.ts)                  -> <out>/flow
 * train-regression  the same head and settings, objective regression        -> <out>/regression
 * export            both to ONNX (policy/onnx/export.ts)                     -> <run>/policy.onnx
 * eval-flow         closed loop over seeded episodes (sim/eval.ts)            -> <out>/eval/flow
 * eval-regression   the same episodes for the baseline                        -> <out>/eval/regression
 * loop              the real-time loop drives the simulated robot, the flow head behind a ZeroMQ
 *                   (or openpi WebSocket) server on 127.0.0.1 (`sim run`'s runSim)
 * offline           held-out demonstrations, flow against the baseline (eval/offline.ts)
 * report            <out>/report.html (eval/demo-report.ts) and <out>/summary.json
 * ```
 *
 * Each stage records its completion in `<out>/stages/<stage>.json` (written atomically, last) with the
 * settings it ran with, including the stamps of the stages it used. A re-run reuses a stage whose
 * record matches and whose outputs exist, and redoes it (and so everything after it) otherwise;
 * `--fresh` redoes every stage. Stages write their folders under a `.partial` name and rename them
 * into place before recording, so a run interrupted anywhere (Ctrl-C) leaves nothing a re-run trusts.
 */
import { randomUUID } from "node:crypto";
import { readFile, rename, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import type { ChunkPolicy } from "../../policy/chunk-policy.ts";
import { writeJsonAtomic } from "../../policy/io/atomic.ts";
import { pathExists } from "../../policy/io/files.ts";
import { exportOnnx } from "../../policy/onnx/export.ts";
import { OnnxPolicy } from "../../policy/runtime/onnx-policy.ts";
import type { ExecutionProvider } from "../../policy/runtime/providers.ts";
import { demoReport } from "../../eval/demo-report.ts";
import type { DemoPolicyFigures } from "../../eval/demo-report.ts";
import { evaluateOffline } from "../../eval/offline.ts";
import type { OfflineEvalResult } from "../../eval/offline.ts";
import { readTrainingCurves } from "../../eval/offline-report.ts";
import { writeReport } from "../../eval/report.ts";
import { collect } from "../../sim/collect.ts";
import type { CollectResult } from "../../sim/collect.ts";
import { evaluate } from "../../sim/eval.ts";
import type { EvalInfo } from "../../sim/eval.ts";
import { parseTaskName, TASK_NAMES, taskInfo } from "../../sim/tasks/index.ts";
import type { TaskName } from "../../sim/tasks/index.ts";
import { TRAIN_BACKEND_NAMES } from "../../training/backend/registry.ts";
import type { TrainBackendName } from "../../training/backend/registry.ts";
import type { TrainRunResult } from "../../training/run.ts";
import { trainRun } from "../../training/run.ts";
import type { RunConfig } from "../../training/run/settings.ts";
import { readRunConfig } from "../../training/run/settings.ts";
import { choiceOption, list, nonNegativeInt, option, positiveFloat, positiveInt, providerOption } from "../args.ts";
import { log, printResult, startProgress, trainingProgress } from "../output.ts";
import { runSim } from "../../sim/run.ts";
import type { SimRunResult } from "../../sim/run.ts";

/** The default task of the demo (`--task`); meant to be a two-mode task where averaging the modes fails. */
export const DEMO_TASK: TaskName = "fork";

const SIM_ARM_PROFILE = fileURLToPath(new URL("../../examples/robots/sim-arm.json", import.meta.url));

interface DemoFlags {
  task: string;
  episodes: number;
  steps: number;
  evalEpisodes: number;
  seconds: number;
  out: string;
  backend: TrainBackendName;
  /** onnxruntime execution provider of every inference stage. */
  provider: ExecutionProvider;
  via: "zmq" | "openpi";
  config?: string;
  pictures: number;
  sweepSteps: number[];
  fresh?: boolean;
  seed: number;
  json?: boolean;
}

/** What a stage's record holds. */
interface StageRecord<R> {
  stage: string;
  settings: unknown;
  /** A new id each time the stage runs: later stages record the stamps they were built from. */
  stamp: string;
  seconds: number;
  finishedAt: string;
  result: R;
}

/** A finished (run or reused) stage. */
interface StageDone<R> {
  stamp: string;
  seconds: number;
  status: "ran" | "reused";
  result: R;
}

/** Runs or reuses the demo's stages under one output folder. */
class Stages {
  readonly done: { name: string; status: "ran" | "reused"; seconds: number }[] = [];
  constructor(
    private readonly out: string,
    private readonly fresh: boolean,
  ) {}

  /**
   * Reuses stage `name` when its record has exactly `settings` and every path in `outputs` exists;
   * else removes the record and the outputs, calls `run` and records the result (atomically, last).
   */
  async run<R>(name: string, settings: unknown, outputs: string[], run: () => Promise<R>): Promise<StageDone<R>> {
    const recordPath = join(this.out, "stages", `${name}.json`);
    if (!this.fresh) {
      const rec = await readRecord<R>(recordPath);
      if (rec && JSON.stringify(rec.settings) === JSON.stringify(settings)) {
        let complete = true;
        for (const p of outputs) complete &&= await pathExists(p);
        if (complete) {
          log(`demo: ${name}: reused (finished ${rec.finishedAt}; --fresh redoes it)`);
          this.done.push({ name, status: "reused", seconds: rec.seconds });
          return { stamp: rec.stamp, seconds: rec.seconds, status: "reused", result: rec.result };
        }
      }
    }
    await rm(recordPath, { force: true });
    for (const p of outputs) await rm(p, { recursive: true, force: true });
    log(`demo: ${name} ...`);
    const t0 = performance.now();
    const result = await run();
    const seconds = (performance.now() - t0) / 1000;
    const rec: StageRecord<R> = {
      stage: name,
      settings,
      stamp: randomUUID(),
      seconds,
      finishedAt: new Date().toISOString(),
      result,
    };
    await writeJsonAtomic(recordPath, rec);
    log(`demo: ${name}: done in ${seconds.toFixed(1)} s`);
    this.done.push({ name, status: "ran", seconds });
    return { stamp: rec.stamp, seconds, status: "ran", result };
  }
}

async function readRecord<R>(path: string): Promise<StageRecord<R> | undefined> {
  try {
    const v = JSON.parse(await readFile(path, "utf8")) as StageRecord<R>;
    return typeof v === "object" && v !== null && typeof v.stamp === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Makes `dir` by writing `<dir>.partial` with `write` and renaming it into place once complete. */
async function intoPlace<R>(dir: string, write: (partial: string) => Promise<R>): Promise<R> {
  const partial = `${dir}.partial`;
  await rm(partial, { recursive: true, force: true });
  const r = await write(partial);
  await rm(dir, { recursive: true, force: true });
  await rename(partial, dir);
  return r;
}

/** The held-out episodes: the last tenth (at least one; none when there is only one episode). */
function heldOut(episodes: number): { start: number; end: number } {
  const n = episodes > 1 ? Math.max(1, Math.round(episodes / 10)) : 0;
  return { start: episodes - n, end: episodes };
}

/** A policy whose every chunk request is timed into `into` (ms). */
function timedPolicy(p: ChunkPolicy, into: number[]): ChunkPolicy {
  return {
    horizon: p.horizon,
    actionDim: p.actionDim,
    ...(p.fps !== undefined ? { fps: p.fps } : {}),
    ...(p.rtcMaxDelay !== undefined ? { rtcMaxDelay: p.rtcMaxDelay } : {}),
    async sampleChunk(obs, req) {
      const t0 = performance.now();
      const chunk = await p.sampleChunk(obs, req);
      into.push(performance.now() - t0);
      return chunk;
    },
    reset: (seed) => p.reset(seed),
  };
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

type TrainSummary = Pick<TrainRunResult, "steps" | "trainLoss" | "valLoss" | "seconds" | "samplesPerSec" | "backend">;

/** The real-time loop's figures over its episodes (jitter p99: the worst episode's). */
interface LoopSummary {
  server: string | null;
  episodes: number;
  solved: number;
  /** Whether the last episode was stopped by the time limit rather than by its end. */
  lastCutOff: boolean;
  seconds: number;
  loopHz: number;
  jitterP99Ms: number;
  missedDeadlines: number;
  /** Median round trip of the loop's chunk requests through the server, ms. */
  inferP50Ms: number;
  queueEmptyEvents: number;
  clamps: number;
  latenciesMs: number[];
}

function median(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The demo's result (`--json` prints it as the last stdout line). */
export interface DemoResult {
  task: TaskName;
  pcSuccess: number;
  baselinePcSuccess: number;
  modeShare: [number, number] | null;
  baselineModeShare: [number, number] | null;
  evalEpisodes: number;
  trainS: number;
  baselineTrainS: number;
  inferP50Ms: number;
  jitterP99Ms: number;
  loopHz: number;
  missedDeadlines: number;
  /** Real-time loop: episodes run one after another, and how many were solved. */
  loopEpisodes: number;
  loopSolved: number;
  via: string;
  offlineMse: number;
  offlineBestOfKMse: number;
  baselineOfflineMse: number | null;
  report: string;
  out: string;
  stages: Record<string, "ran" | "reused">;
  seconds: number;
}

/** Runs the demo and returns its result. */
export async function runDemo(o: DemoFlags): Promise<DemoResult> {
  const t0 = performance.now();
  const task = parseTaskName(o.task);
  const json = o.json ?? false;
  const out = resolve(o.out);
  const { episodes, steps, evalEpisodes, seconds, seed, backend } = o;
  const config: RunConfig | undefined = o.config ? await readRunConfig(o.config) : undefined;
  const stages = new Stages(out, o.fresh ?? false);
  const dataDir = join(out, "data");
  const val = heldOut(episodes);
  if (val.end - val.start < 1) throw new Error(`--episodes: the demo needs at least 2 episodes, got ${episodes}`);

  // a two-mode task is recorded both ways round from every scene, so no observation hints at the mode
  const paired = taskInfo(task).modes !== undefined;
  const collected = await stages.run<CollectResult>("collect", { task, episodes, seed, paired }, [dataDir], () => {
    const bar = startProgress(episodes, { json, label: `collect ${task}` });
    return intoPlace(dataDir, (partial) =>
      collect({
        task,
        episodes,
        seed,
        paired,
        out: partial,
        onAttempt: (attempts, rec) => bar.update(rec, { attempts }),
      }),
    ).finally(() => bar.stop());
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
    return stages.run<TrainSummary>(`train-${objective}`, settings, [dir], () =>
      intoPlace(dir, async (partial) => {
        const progress = trainingProgress({ json, label: `train ${objective}` });
        try {
          const r = await trainRun({
            out: partial,
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
            onProgress: (p) => progress.report(p),
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
          progress.stop();
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
    return stages.run(
      `eval-${objective}`,
      { export: exported.stamp, episodes: evalEpisodes, seed: evalSeed, nActionSteps: 8 },
      [dir],
      () =>
        intoPlace(dir, async (partial) => {
          const policy = await OnnxPolicy.load(runs[objective], { seed: evalSeed, executionProviders: [o.provider] });
          const bar = startProgress(evalEpisodes, { json, label: `eval ${objective}` });
          try {
            const info = await evaluate({
              task,
              policy,
              episodes: evalEpisodes,
              seed: evalSeed,
              nActionSteps: 8,
              outDir: partial,
              onEpisode: (done, ep) => bar.update(done, { success: ep.success ? 1 : 0 }),
            });
            return info.aggregated;
          } finally {
            bar.stop();
            await policy.release();
          }
        }),
    );
  };
  const flowEval = await simEval("flow");
  const regEval = await simEval("regression");

  const loop = await stages.run<LoopSummary>(
    "loop",
    { export: exported.stamp, seconds, via: o.via, seed: evalSeed, episodes: "until seconds", merge: "sync 8" },
    [],
    async () => {
      // the simulator's arm profile, its environment feature sized for this task
      const profile = JSON.parse(await readFile(SIM_ARM_PROFILE, "utf8")) as { features: { size: number }[] };
      for (const f of profile.features) f.size = taskInfo(task).envStateNames.length;
      const robot = join(out, "robot.json");
      await writeJsonAtomic(robot, profile);
      const latenciesMs: number[] = [];
      const episodes: SimRunResult[] = [];
      let used = 0;
      let cutOff = false;
      log(`  the flow head behind a ${o.via} server on 127.0.0.1 drives the simulated robot for ${seconds} s`);
      // one episode after another (each stops once solved) until the loop has run `seconds`
      while (episodes.length === 0 || seconds - used >= 0.5) {
        const r = await runSim({
          task,
          policy: runs.flow,
          via: o.via,
          robot,
          // sync with 8 actions per chunk, as in the closed-loop evaluation: blending overlapping chunks
          // of a two-mode policy averages its modes (fork, 3 seeds: sync solved 2, blend 1)
          merge: "sync",
          nActionSteps: 8,
          publish: "step",
          seconds: seconds - used,
          seed: evalSeed + episodes.length,
          horizon: 16,
          provider: o.provider,
          wrapPolicy: (p) => timedPolicy(p, latenciesMs),
        });
        episodes.push(r);
        cutOff = !r.success && r.seconds >= seconds - used - 0.1;
        used += r.seconds;
        log(
          `  episode ${episodes.length} (seed ${r.seed}): ${r.success ? "solved" : cutOff ? "stopped at the time limit" : "not solved"} after ${r.seconds.toFixed(1)} s`,
        );
      }
      const total = (f: (r: SimRunResult) => number): number => episodes.reduce((a, r) => a + f(r), 0);
      return {
        server: episodes[0]?.server ?? null,
        episodes: episodes.length,
        solved: episodes.filter((r) => r.success).length,
        lastCutOff: cutOff,
        seconds: used,
        loopHz: total((r) => r.loopHz * r.seconds) / used,
        jitterP99Ms: Math.max(...episodes.map((r) => r.jitterP99Ms)),
        missedDeadlines: total((r) => r.missedDeadlines),
        inferP50Ms: median(latenciesMs),
        queueEmptyEvents: total((r) => r.queueEmptyEvents),
        clamps: total((r) => r.clamps),
        latenciesMs,
      };
    },
  );

  const offline = await stages.run<OfflineEvalResult>(
    "offline",
    { export: exported.stamp, episodes: val, seed, sweepSteps: o.sweepSteps },
    [],
    async () => {
      let bar: ReturnType<typeof startProgress> | undefined;
      let phase = "";
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
            if (p !== phase) {
              bar?.stop();
              phase = p;
              bar = startProgress(total, { json, label: p });
            }
            bar?.update(done);
          },
        });
      } finally {
        bar?.stop();
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
    .addOption(option("--steps <n>", "training steps of each head", positiveInt, 2000))
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
      // Ctrl-C: stop at once; every finished stage is recorded and nothing unfinished is trusted
      process.once("SIGINT", () => {
        log("\ndemo: interrupted; run it again to continue from the last finished stage");
        process.exit(130);
      });
      const r = await runDemo(o);
      printResult(r, { json: o.json ?? false }, human);
    });
}
