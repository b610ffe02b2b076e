/**
 * `actionflow demo` at tiny sizes on `avoid` (4 demonstrations, a tiny head trained 20 steps on
 * onnxruntime, 2 evaluation episodes, a 1 s real-time loop through the ZeroMQ server), run in process
 * (`runDemo`, what the command calls) and once through the command itself.
 *
 * What a seed fixes is asserted as measured: the recording, both trainings (ort, fixed seed), the
 * seeded closed-loop evaluations and the offline errors. They came out bit-identical run after run,
 * on an idle machine, under a load average of 15 and on one core; the tolerance (relative 1e-6) only
 * leaves room for another CPU's floating point. The real-time loop runs on the wall clock, so its
 * figures vary with the load: for it the test asserts what holds at any load (deadlines counted at
 * most once, the median of what was measured, a server on 127.0.0.1).
 *
 * Also: the report is one self-contained HTML file; a re-run reuses every finished stage and redoes
 * one whose record is missing (as after a Ctrl-C, a killed writer's temporary folder beside it) with
 * the same figures; `--fresh` redoes them all, again with the same seeded figures.
 */
import { execFile } from "node:child_process";
import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runDemo } from "../../pipelines/demo.ts";
import type { DemoResult } from "../../pipelines/demo.ts";
import type { DemoLoopSummary } from "../../pipelines/demo-loop.ts";
import type { StageRecord } from "../../pipelines/stages.ts";
import { pathExists } from "../../policy/io/files.ts";

const ROOT = resolve(import.meta.dirname, "..", "..");
/** Above Linux's largest possible process id (2^22): the "killed" writer of a leftover. */
const DEAD_PID = 4_194_305;
/** The simulated arm's control rate (examples/robots/sim-arm.json), Hz. */
const CONTROL_HZ = 30;

let dir: string;
let config: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "actionflow-demo-"));
  config = join(dir, "tiny.json");
  await writeFile(
    config,
    JSON.stringify({
      transformer: { width: 32, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 16 },
      horizon: 16,
      batch: 8,
    }),
  );
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const STAGES = [
  "collect",
  "train-flow",
  "train-regression",
  "export",
  "eval-flow",
  "eval-regression",
  "loop",
  "offline",
  "report",
];

/** `actual` equals `expected` to a relative 1e-6 (and exactly when `expected` is 0). */
function near(actual: unknown, expected: number, what: string): void {
  expect(typeof actual, what).toBe("number");
  expect(Math.abs((actual as number) - expected), `${what}: ${String(actual)} vs ${expected}`).toBeLessThanOrEqual(
    1e-6 * Math.abs(expected),
  );
}

/** The result of stage `name`'s record under `out`. */
async function stageResult<R>(out: string, name: string): Promise<R> {
  return (JSON.parse(await readFile(join(out, "stages", `${name}.json`), "utf8")) as StageRecord<R>).result;
}

interface SeededFigures {
  collect: { episodes: number; frames: number; expertSuccess: number; attempts: number; modeShare: number[] };
  trainFlow: { steps: number; trainLoss: number; valLoss: number; backend: string };
  trainRegression: { steps: number; trainLoss: number; valLoss: number; backend: string };
  evalFlow: { pc_success: number; avg_sum_reward: number; avg_max_reward: number; mode_share: number[] };
  evalRegression: { pc_success: number; avg_sum_reward: number; avg_max_reward: number; mode_share: number[] };
  offline: {
    frames: number;
    metrics: { mse: number; l1: number; firstActionL1: number; bestOfK: { k: number; mse: number }; valLoss: number };
    baseline: { mse: number; l1: number; valLoss: number };
  };
}

/** Asserts the figures the seed fixes (see the module comment), as measured with seed 0. */
async function expectSeededFigures(r: DemoResult): Promise<void> {
  const get = <K extends keyof SeededFigures>(name: string): Promise<SeededFigures[K]> => stageResult(r.out, name);
  expect(await get<"collect">("collect")).toMatchObject({
    episodes: 4,
    frames: 232,
    expertSuccess: 1,
    attempts: 4,
    modeShare: [0.5, 0.5],
    out: join(r.out, "data"),
  });
  const trainFlow = await get<"trainFlow">("train-flow");
  const trainReg = await get<"trainRegression">("train-regression");
  expect([trainFlow.steps, trainFlow.backend, trainReg.steps, trainReg.backend]).toEqual([20, "ort", 20, "ort"]);
  near(trainFlow.trainLoss, 1.1156045377254487, "flow train loss");
  near(trainFlow.valLoss, 1.1191331148147583, "flow validation loss");
  near(trainReg.trainLoss, 0.15358909219503403, "regression train loss");
  near(trainReg.valLoss, 0.15542364120483398, "regression validation loss");

  const evalFlow = await get<"evalFlow">("eval-flow");
  const evalReg = await get<"evalRegression">("eval-regression");
  expect([evalFlow.pc_success, evalFlow.mode_share, evalReg.pc_success, evalReg.mode_share]).toEqual([
    0,
    [1, 0],
    0,
    [0, 1],
  ]);
  near(evalFlow.avg_sum_reward, 1.9387342147529125, "flow avg_sum_reward");
  near(evalFlow.avg_max_reward, 0.28201792016625404, "flow avg_max_reward");
  near(evalReg.avg_sum_reward, 0.07512160018086433, "regression avg_sum_reward");
  near(evalReg.avg_max_reward, 0.07512160018086433, "regression avg_max_reward");

  const off = await get<"offline">("offline");
  expect([off.frames, off.metrics.bestOfK.k]).toEqual([11, 8]);
  near(off.metrics.mse, 0.20721125217796865, "offline MSE");
  near(off.metrics.l1, 0.2752045279819489, "offline L1");
  near(off.metrics.firstActionL1, 0.2726008721621184, "offline first-action L1");
  near(off.metrics.bestOfK.mse, 0.15594417997465776, "offline best-of-8 MSE");
  near(off.metrics.valLoss, 1.098248606628917, "offline flow-matching loss");
  near(off.baseline.mse, 0.08577929370724201, "baseline offline MSE");
  near(off.baseline.valLoss, 0.15342201048066156, "baseline offline loss");

  // the result carries the same figures
  expect([r.pcSuccess, r.baselinePcSuccess, r.modeShare, r.baselineModeShare, r.evalEpisodes]).toEqual([
    evalFlow.pc_success,
    evalReg.pc_success,
    evalFlow.mode_share,
    evalReg.mode_share,
    2,
  ]);
  expect([r.offlineMse, r.offlineBestOfKMse, r.baselineOfflineMse]).toEqual([
    off.metrics.mse,
    off.metrics.bestOfK.mse,
    off.baseline.mse,
  ]);
}

/** Asserts what holds of the real-time loop stage at any load. */
async function expectLoopFacts(r: DemoResult): Promise<void> {
  const loop = await stageResult<DemoLoopSummary>(r.out, "loop");
  expect([r.loopEpisodes, r.loopSolved, r.loopHz, r.jitterP99Ms, r.missedDeadlines, r.inferP50Ms]).toEqual([
    loop.episodes,
    loop.solved,
    loop.loopHz,
    loop.jitterP99Ms,
    loop.missedDeadlines,
    loop.inferP50Ms,
  ]);
  expect(loop.server).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
  expect(loop.episodes).toBeGreaterThanOrEqual(1);
  expect(loop.solved).toBeLessThanOrEqual(loop.episodes);
  expect(loop.lastCutOff && loop.solved === loop.episodes).toBe(false);
  // episodes follow one another until less than half a second of the 1 s is left
  expect(loop.seconds).toBeGreaterThan(0.5);
  // every deadline is either a tick or missed, never both, and none is counted before it is due:
  // per episode ticks + missed <= floor(seconds * rate) + 1
  const ticks = loop.loopHz * loop.seconds;
  expect(Math.abs(ticks - Math.round(ticks))).toBeLessThan(1e-6);
  expect(Math.round(ticks)).toBeGreaterThan(0);
  expect(Number.isInteger(loop.missedDeadlines) && loop.missedDeadlines >= 0).toBe(true);
  expect(Math.round(ticks) + loop.missedDeadlines).toBeLessThanOrEqual(
    Math.floor(loop.seconds * CONTROL_HZ + 1e-9) + loop.episodes,
  );
  expect(Number.isInteger(loop.clamps) && Number.isInteger(loop.queueEmptyEvents)).toBe(true);
  expect(loop.jitterP99Ms).toBeGreaterThanOrEqual(0);
  // at least the first chunk went through the server; the median is one measured round trip (nearest rank)
  expect(loop.latenciesMs.length).toBeGreaterThan(0);
  expect(loop.latenciesMs.every((ms) => ms > 0 && Number.isFinite(ms))).toBe(true);
  const sorted = [...loop.latenciesMs].sort((a, b) => a - b);
  expect(loop.inferP50Ms).toBe(sorted[Math.ceil(sorted.length / 2) - 1]);
}

/** Runs `actionflow demo <args>` as a user would (a few seconds to load); resolves with its exit code and output. */
function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile(
      process.execPath,
      [join(ROOT, "cli", "bin.js"), "demo", ...args],
      { cwd: ROOT, maxBuffer: 16 << 20, timeout: 120_000 },
      (err, stdout, stderr) => res({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe("actionflow demo", () => {
  it("gives the seeded figures, writes the report, reuses finished stages and redoes them with --fresh", async () => {
    const out = join(dir, "demo");
    const options = {
      task: "avoid",
      episodes: 4,
      steps: 20,
      evalEpisodes: 2,
      seconds: 1,
      out,
      backend: "ort",
      provider: "cpu",
      via: "zmq",
      config,
      pictures: 2,
      sweepSteps: [2],
      seed: 0,
    } as const;
    const progress: string[] = [];
    const demo = (fresh: boolean): Promise<DemoResult> =>
      runDemo({
        ...options,
        sweepSteps: [...options.sweepSteps],
        fresh,
        onProgress: (p) => {
          if (progress.at(-1) !== `${p.kind} ${p.phase}`) progress.push(`${p.kind} ${p.phase}`);
        },
      });

    const first = await demo(false);
    expect(Object.keys(first.stages)).toEqual(STAGES);
    expect(Object.values(first.stages).every((s) => s === "ran")).toBe(true);
    expect(first.task).toBe("avoid");
    expect(first.via).toBe("zmq");
    expect(first.out).toBe(out);
    expect(first.trainS).toBeGreaterThan(0);
    expect(JSON.parse(JSON.stringify(first))).toEqual(first); // one JSON object, as --json prints it
    await expectSeededFigures(first);
    await expectLoopFacts(first);
    // every phase that shows progress reports and then ends, one after another
    expect(progress.filter((p) => p.startsWith("end ")).map((p) => p.slice(4))).toEqual([
      "collect avoid",
      "train flow",
      "train regression",
      "eval flow",
      "eval regression",
      "policy: samples",
      "policy: loss",
      "policy: likelihood",
      "policy: sweep",
      "baseline: samples",
      "baseline: loss",
    ]);
    expect(progress.filter((p) => p.startsWith("training ")).map((p) => p.slice(9))).toEqual([
      "train flow",
      "train regression",
    ]);

    const html = await readFile(first.report, "utf8");
    expect(html.startsWith("<!doctype html>")).toBe(true);
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href=/); // self-contained
    expect(html).toContain("regression baseline");
    expect(html).toContain("data:image/svg+xml;base64,"); // rollout pictures
    expect(html).toContain("Inference latency through the policy server");
    expect(JSON.parse(await readFile(join(out, "summary.json"), "utf8"))).toEqual(first);
    const evalFlowFirst = await stageResult<Record<string, unknown>>(out, "eval-flow");

    // as if Ctrl-C hit the flow evaluation: its record gone, a killed writer's half folder beside it
    await rm(join(out, "stages", "eval-flow.json"));
    const leftover = join(out, "eval", `.flow.${DEAD_PID}.0.tmp`);
    await mkdir(leftover, { recursive: true });
    await writeFile(join(leftover, "eval_info.json"), "{ half");
    const second = await demo(false);
    expect(second.stages).toEqual({
      ...Object.fromEntries(STAGES.map((s) => [s, "reused"])),
      "eval-flow": "ran",
      report: "ran",
    });
    expect(second.trainS).toBe(first.trainS); // the training record, not a new run
    expect(await pathExists(leftover)).toBe(false);
    const evalFlowSecond = await stageResult<Record<string, unknown>>(out, "eval-flow");
    for (const k of ["pc_success", "avg_sum_reward", "avg_max_reward", "mode_share"])
      expect(evalFlowSecond[k], k).toEqual(evalFlowFirst[k]);

    // the command with the same flags: its settings match every record, so all is reused
    const args = [
      ...["--task", "avoid", "--episodes", "4", "--steps", "20", "--eval-episodes", "2", "--seconds", "1"],
      ...["--out", out, "--backend", "ort", "--provider", "cpu", "--via", "zmq", "--config", config],
      ...["--pictures", "2", "--sweep-steps", "2", "--seed", "0", "--json"],
    ];
    const run = await cli(args);
    expect(run.code, run.stderr.slice(-2000)).toBe(0);
    const printed = JSON.parse(run.stdout.trimEnd().split("\n").pop() ?? "") as DemoResult;
    expect(printed.stages).toEqual({ ...Object.fromEntries(STAGES.map((s) => [s, "reused"])), report: "ran" });
    await expectSeededFigures(printed);
    expect(run.stderr).toContain("demo: collect: reused");
    await expect(runDemo({ ...options, sweepSteps: [2], episodes: 1, out: join(dir, "bad") })).rejects.toThrow(
      "--episodes: the demo needs at least 2 episodes, got 1",
    );

    const third = await demo(true);
    expect(Object.values(third.stages).every((s) => s === "ran")).toBe(true);
    expect(third.trainS).not.toBe(first.trainS);
    await expectSeededFigures(third);
    await expectLoopFacts(third);
  }, 300_000); // several demo runs end to end: minutes on a busy 2-core machine
});
