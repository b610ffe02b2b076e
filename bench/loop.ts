/**
 * `bench loop`: the real-time control loop at 50 Hz and at 200 Hz (`seconds` each, 60 by default)
 * with the default transformer head (H=50, A=32, 10 Euler steps; untrained weights, exported as
 * `bench infer` and `bench serve` do) inferring concurrently in its worker thread
 * ({@link startLocalPolicy}) in `rtc` mode, against an in-process plant ({@link PlantLink}: the joints
 * follow the commands; a forward controller).
 *
 * Per rate: `{rateHz, seconds, ticks, jitterP50Ms, jitterP99Ms, jitterMaxMs, missedDeadlines,
 * inferP50Ms, inferCount, queueEmptyEvents, rtcDelaySteps, rssMb, rssMbStart, rssMbEnd, heapUsedMbStart,
 * heapUsedMbEnd}`; jitter is tick lateness against the deadline `start + k * dt`, `inferP50Ms` the
 * loop-side latency of a chunk (queue + run + messaging), `rssMb` (= `rssMbEnd`) this process's
 * resident memory after the run, `rssMbStart` just before the loop starts; `heapUsedMb*` the same for
 * this thread's V8 heap (in use, not collected first). Over a long run (`--seconds 600`) a loop that
 * keeps its figures in fixed memory shows no growth between start and end beyond the warm-up. The targets: jitter p99
 * <= 1 ms and 0 missed deadlines at 50 Hz, no queue-empty event in `rtc` while inference is faster
 * than the execution horizon. With `log`, every rate runs a second time with an MCAP run log
 * written (`logged`: the same figures, the log's counters and `jitterP99DeltaMs`, the target <= 0.2 ms).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runLoop, withRunLog, type WrittenRunLog } from "../bridge/drive.ts";
import { startLocalPolicy, type LocalPolicy } from "../bridge/local-policy.ts";
import { ControlLoop, type LoopStats } from "../bridge/loop.ts";
import type { Plant } from "../bridge/plant.ts";
import { PlantLink } from "../bridge/plant-link.ts";
import { parseRobotProfile } from "../bridge/profile.ts";
import { realScheduler } from "../bridge/scheduler.ts";
import { useBackend } from "../training/backend/registry.ts";
import { log } from "../cli/output.ts";
import { exportDefaultHead } from "./infer.ts";
import type { RealtimeResult } from "../bridge/realtime.ts";

/** One rate's figures. */
export interface LoopFigures {
  rateHz: number;
  seconds: number;
  ticks: number;
  jitterP50Ms: number;
  jitterP99Ms: number;
  jitterMaxMs: number;
  missedDeadlines: number;
  inferP50Ms: number;
  inferCount: number;
  queueEmptyEvents: number;
  /** The committed delay d of the last request (control steps). */
  rtcDelaySteps: number;
  inferErrors: number;
  loopErrors: number;
  /** Why the loop latched its e-stop (a refused delay, a loop error), or null. */
  estop: string | null;
  /** Resident memory (MiB) of the process after the run (= `rssMbEnd`). */
  rssMb: number;
  /** Resident memory (MiB) just before the loop started, and after it stopped. */
  rssMbStart: number;
  rssMbEnd: number;
  /** V8 heap in use (MiB) of this thread just before the loop started, and after it stopped. */
  heapUsedMbStart: number;
  heapUsedMbEnd: number;
  /** With `--realtime-priority`: the priority and whether the loop's thread got it. */
  realtime?: RealtimeResult;
}

const MIB = 2 ** 20;

const STATE_DIM = 32;

/** A plant whose joints reach each command in one period (its state is the policy's observation). */
function followerPlant(joints: number, rateHz: number): Plant {
  const q = new Float64Array(joints);
  return {
    dtS: 1 / rateHz,
    positions: () => q,
    features: () => ({}),
    step: (targets) => q.set(targets),
  };
}

/** One rate's figures with an MCAP run log written, and the p99 jitter's change from the run without. */
export interface LoggedFigures extends LoopFigures {
  runLog: WrittenRunLog;
  /** `jitterP99Ms` with the log minus without it (same rate, the run just before), ms. */
  jitterP99DeltaMs: number;
}

interface LoopBenchOptions {
  seconds: number;
  rates: number[];
  threads: number;
  executionHorizon?: number;
  /** Also run every rate with an MCAP run log (`--log`) and report the difference. */
  log?: boolean;
  /** SCHED_FIFO priority of the loop's thread (`--realtime-priority`); default: the normal policy. */
  realtimePriority?: number;
}

/** Runs the loop at one rate for `o.seconds`, with a run log at `logPath` when given. */
async function runRate(
  policy: LocalPolicy,
  rateHz: number,
  o: LoopBenchOptions,
  logPath?: string,
): Promise<LoopFigures & { runLog?: WrittenRunLog }> {
  const A = policy.actionDim;
  const profile = parseRobotProfile(
    {
      name: `bench-${rateHz}hz`,
      joints: Array.from({ length: A }, (_, i) => `j${i}`),
      ros: { version: 2, joint_states: "/joint_states", command: "/commands" },
      command_interface: "forward",
      control_rate_hz: rateHz,
      watchdog_timeout_s: 0.5,
      ramp_s: 0,
    },
    "bench loop profile",
  );
  const sched = realScheduler();
  const plantLink = new PlantLink({ plant: followerPlant(A, rateHz), profile, scheduler: sched });
  const hooks = await withRunLog(
    logPath === undefined ? undefined : { path: logPath, argv: ["bench", "loop", "--log"] },
    {
      profile,
      link: plantLink,
      actionDim: A,
      now: () => sched.now(),
      onEvent: (e) => {
        if (e.kind === "loop-error" || e.kind === "infer-error") log(`bench loop ${rateHz} Hz: ${e.kind}: ${e.error}`);
      },
      log,
    },
  );
  plantLink.start();
  const loop = new ControlLoop({
    policy,
    link: hooks.link,
    profile,
    scheduler: sched,
    merge: { mode: "rtc", ...(o.executionHorizon !== undefined ? { executionHorizon: o.executionHorizon } : {}) },
    diagnosticsEveryS: 0.5,
    onEvent: hooks.onEvent,
    ...(hooks.onChunk ? { onChunk: hooks.onChunk } : {}),
  });
  const memStart = process.memoryUsage();
  // the loop `sim run` and `serve --robot` run: started, stopped after the time (or on a signal)
  let st: LoopStats;
  let realtime: RealtimeResult | undefined;
  try {
    const res = await runLoop({
      loop,
      profile,
      seconds: o.seconds,
      log,
      ...(o.realtimePriority !== undefined ? { realtimePriority: o.realtimePriority } : {}),
    });
    st = res.loop;
    realtime = res.realtime;
  } finally {
    plantLink.stop();
  }
  const runLog = await hooks.close();
  const memEnd = process.memoryUsage();
  return {
    rateHz,
    seconds: st.seconds,
    ticks: st.ticks,
    jitterP50Ms: st.jitterP50Ms,
    jitterP99Ms: st.jitterP99Ms,
    jitterMaxMs: st.jitterMaxMs,
    missedDeadlines: st.missedDeadlines,
    inferP50Ms: st.inferP50Ms,
    inferCount: st.inferCount,
    queueEmptyEvents: st.queueEmptyEvents,
    rtcDelaySteps: st.rtcDelaySteps,
    inferErrors: st.inferErrors,
    loopErrors: st.loopErrors,
    estop: st.safety.estopReason ?? null,
    rssMb: memEnd.rss / MIB,
    rssMbStart: memStart.rss / MIB,
    rssMbEnd: memEnd.rss / MIB,
    heapUsedMbStart: memStart.heapUsed / MIB,
    heapUsedMbEnd: memEnd.heapUsed / MIB,
    ...(runLog ? { runLog } : {}),
    ...(realtime ? { realtime } : {}),
  };
}

/** Runs the loop benchmark. */
export async function benchLoop(o: LoopBenchOptions): Promise<Record<string, unknown>> {
  await useBackend("wasm");
  const dir = await mkdtemp(join(tmpdir(), "actionflow-bench-loop-"));
  try {
    const exported = await exportDefaultHead(dir, STATE_DIM);
    // warmed up: d is measured on steady-state inference
    const policy = await startLocalPolicy(exported.onnx, { threads: o.threads, seed: 1, warmupRuns: 3 });
    const A = policy.actionDim;
    if (A !== STATE_DIM) throw new Error(`bench loop: expected the default head's action dim ${STATE_DIM}, got ${A}`);
    const rates: LoopFigures[] = [];
    const logged: LoggedFigures[] = [];
    try {
      for (const rateHz of o.rates) {
        rates.push(await runRate(policy, rateHz, o));
        if (o.log) {
          const figures = await runRate(policy, rateHz, o, join(dir, `loop-${rateHz}hz.mcap`));
          const plain = rates[rates.length - 1] as LoopFigures;
          const { runLog, ...rest } = figures;
          if (!runLog) throw new Error("bench loop --log: the run log was not written");
          logged.push({ ...rest, runLog, jitterP99DeltaMs: figures.jitterP99Ms - plain.jitterP99Ms });
        }
      }
    } finally {
      await policy.close();
    }
    return {
      bench: "loop",
      merge: "rtc",
      head: { arch: "transformer", horizon: policy.horizon, actionDim: A, solver: "euler", steps: 10 },
      threads: o.threads,
      rates,
      ...(o.log ? { logged } : {}),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
