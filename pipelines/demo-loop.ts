/**
 * The demo's real-time loop stage: the exported flow head behind a policy server on 127.0.0.1 drives
 * the simulated robot through `sim run` ({@link runSim}), one seeded episode after another (each ends
 * once solved) until the loop has run for the stage's seconds; the figures of all episodes combined.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ChunkPolicy } from "../policy/chunk-policy.ts";
import { writeJsonAtomic } from "../policy/io/atomic.ts";
import type { ExecutionProvider } from "../policy/runtime/providers.ts";
import { median } from "../policy/stats/quantiles.ts";
import { runSim } from "../sim/run.ts";
import { taskInfo } from "../sim/tasks/index.ts";
import type { TaskName } from "../sim/tasks/index.ts";

/** The simulated arm's robot profile; the loop stage sizes its environment feature for the task. */
const SIM_ARM_PROFILE = fileURLToPath(new URL("../examples/robots/sim-arm.json", import.meta.url));

/** Options of {@link runDemoLoop}. */
export interface DemoLoopOptions {
  task: TaskName;
  /** The run folder of the exported policy (`policy.onnx` in it). */
  policy: string;
  /** The policy server between the loop and the policy. */
  via: "zmq" | "openpi";
  /** Seconds of control over all episodes. */
  seconds: number;
  /** Seed of the first episode; episode i has seed `seed + i`. */
  seed: number;
  provider: ExecutionProvider;
  /** Where the stage writes the robot profile it uses (`robot.json`). */
  out: string;
  log?: (line: string) => void;
}

/** The real-time loop's figures over its episodes (`jitterP99Ms`: the worst episode's). */
export interface DemoLoopSummary {
  /** Endpoint or URL of the policy server. */
  server: string | null;
  episodes: number;
  solved: number;
  /** Whether the last episode was stopped by the time limit rather than by its end. */
  lastCutOff: boolean;
  /** Seconds of control over all episodes. */
  seconds: number;
  /** Control ticks per second over all episodes, Hz. */
  loopHz: number;
  jitterP99Ms: number;
  missedDeadlines: number;
  /** Median (nearest rank) round trip of the loop's chunk requests through the server, ms; 0 for none. */
  inferP50Ms: number;
  queueEmptyEvents: number;
  clamps: number;
  /** Every chunk request's round trip through the server, ms, in order. */
  latenciesMs: number[];
}

/** One `sim run` episode's figures. */
type EpisodeResult = Awaited<ReturnType<typeof runSim>>;

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

/** Runs the loop stage (see the module comment). */
export async function runDemoLoop(o: DemoLoopOptions): Promise<DemoLoopSummary> {
  const { task, seconds } = o;
  const log = o.log ?? ((): void => {});
  // the simulator's arm profile, its environment feature sized for this task
  const profile = JSON.parse(await readFile(SIM_ARM_PROFILE, "utf8")) as { features: { size: number }[] };
  for (const f of profile.features) f.size = taskInfo(task).envStateNames.length;
  const robot = join(o.out, "robot.json");
  await writeJsonAtomic(robot, profile);
  const latenciesMs: number[] = [];
  const episodes: EpisodeResult[] = [];
  let used = 0;
  let cutOff = false;
  log(`  the flow head behind a ${o.via} server on 127.0.0.1 drives the simulated robot for ${seconds} s`);
  // one episode after another (each stops once solved) until the loop has run `seconds`
  while (episodes.length === 0 || seconds - used >= 0.5) {
    const r = await runSim({
      task,
      policy: o.policy,
      via: o.via,
      robot,
      // sync with 8 actions per chunk, as in the closed-loop evaluation: blending overlapping chunks
      // of a two-mode policy averages its modes (fork, 3 seeds: sync solved 2, blend 1)
      merge: "sync",
      nActionSteps: 8,
      publish: "step",
      seconds: seconds - used,
      seed: o.seed + episodes.length,
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
  const total = (f: (r: EpisodeResult) => number): number => episodes.reduce((a, r) => a + f(r), 0);
  return {
    server: episodes[0]?.server ?? null,
    episodes: episodes.length,
    solved: episodes.filter((r) => r.success).length,
    lastCutOff: cutOff,
    seconds: used,
    loopHz: total((r) => r.loopHz * r.seconds) / used,
    jitterP99Ms: Math.max(...episodes.map((r) => r.jitterP99Ms)),
    missedDeadlines: total((r) => r.missedDeadlines),
    inferP50Ms: latenciesMs.length > 0 ? median(latenciesMs) : 0,
    queueEmptyEvents: total((r) => r.queueEmptyEvents),
    clamps: total((r) => r.clamps),
    latenciesMs,
  };
}
