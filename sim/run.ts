/**
 * `sim run` as a library function: the real-time control loop drives a simulated task in real time,
 * directly (`direct`), through a rosbridge (`ros`, the loop and the simulated robot connecting as two
 * ROS clients would), or with the policy behind a policy server (`zmq` or `openpi`: a server started
 * in-process on 127.0.0.1, or an already running one). ONNX policies run in a worker thread
 * ({@link startLocalPolicy}): inference never blocks the loop.
 */
import { readFile } from "node:fs/promises";
import { driveRobot } from "../bridge/drive.ts";
import { startLocalPolicy, type LocalPolicy } from "../bridge/local-policy.ts";
import { ControlLoop } from "../bridge/loop.ts";
import type { LoopStats } from "../bridge/loop.ts";
import type { Plant } from "../bridge/plant.ts";
import { PlantLink } from "../bridge/plant-link.ts";
import type { RobotProfile } from "../bridge/profile.ts";
import { loadRobotProfile } from "../bridge/profile.ts";
import { RosRobotNode } from "../bridge/ros/robot-node.ts";
import { realScheduler } from "../bridge/scheduler.ts";
import { OpenpiPolicyServer } from "../bridge/server/openpi-server.ts";
import { OpenpiChunkPolicy, servedChunkPolicy, ZmqChunkPolicy } from "../bridge/server/remote-policy.ts";
import type { ServedPolicy } from "../bridge/server/served-policy.ts";
import { ZmqPolicyServer } from "../bridge/server/zmq-server.ts";
import { isZ85Key, readCurveKeyPair, type CurveKeyPair } from "../bridge/server/zap.ts";
import { StaleCommandMeter } from "../bridge/stale-commands.ts";
import { chunkMergeFrom, type Aggregate, type ChunkMerge } from "../policy/runtime/executor.ts";
import type { ChunkPolicy } from "../policy/chunk-policy.ts";
import type { FeatureIO } from "../policy/onnx/graphs.ts";
import type { ExecutionProvider } from "../policy/runtime/providers.ts";
import { ExpertChunkPolicy } from "./policy.ts";
import type { Task, TaskName } from "./tasks/index.ts";
import { createTask } from "./tasks/index.ts";

/** The task as a {@link Plant}: joint positions, its environment state, one control step per call. */
export function taskPlant(task: Task, profile: RobotProfile): Plant {
  return {
    dtS: 1 / profile.control_rate_hz,
    positions: () => task.env.jointPositions(),
    features: () => {
      const out: Record<string, ArrayLike<number>> = {};
      const env = task.observe()["observation.environment_state"];
      if (env) out["observation.environment_state"] = env;
      return out;
    },
    step: (targets) => task.step(targets),
  };
}

export async function simTask(
  taskName: TaskName,
  profile: RobotProfile,
  profilePath: string,
  seed: number,
): Promise<Task> {
  const task = await createTask(taskName, { fps: profile.control_rate_hz });
  if (task.env.scene.joints.join(",") !== profile.joints.join(",")) {
    task.dispose();
    throw new Error(
      `${profilePath}: joints (${profile.joints.join(", ")}) differ from the simulator's (${task.env.scene.joints.join(", ")})`,
    );
  }
  task.reset(seed);
  return task;
}

/** How `sim run` reaches the policy and the robot. */
export const SIM_RUN_VIAS = ["direct", "ros", "zmq", "openpi"] as const;

/** The options of {@link runSim} (the `sim run` flags). */
export interface SimRunOptions {
  task: TaskName;
  policy: string;
  via: (typeof SIM_RUN_VIAS)[number];
  ros?: string;
  server?: string;
  apiKeyFile?: string;
  serverKey?: string;
  clientKeys?: string;
  robot: string;
  merge: ChunkMerge["mode"];
  nActionSteps?: number;
  aggregate?: Aggregate;
  prefixSteps?: number;
  publish: "step" | "chunk";
  seconds: number;
  seed: number;
  horizon: number;
  threads?: number;
  provider: ExecutionProvider;
  /** Log lines (loop events, connection changes); default: none. */
  log?: (line: string) => void;
  /** Wraps the policy the loop calls (e.g. to time each chunk request); the demo uses it. */
  wrapPolicy?: (policy: ChunkPolicy) => ChunkPolicy;
}

/** CURVE settings of `--server-key` and `--client-keys` (both or neither; only with `--server`). */
async function curveFrom(o: SimRunOptions): Promise<{ serverPublicKey: string; keys: CurveKeyPair } | undefined> {
  if (o.serverKey === undefined && o.clientKeys === undefined) return undefined;
  if (o.serverKey === undefined || o.clientKeys === undefined || o.server === undefined)
    throw new Error("--server-key and --client-keys go together, with --via zmq --server <endpoint>");
  const serverPublicKey = isZ85Key(o.serverKey)
    ? o.serverKey
    : (await readFile(o.serverKey, "utf8").catch(() => "")).trim();
  if (!isZ85Key(serverPublicKey))
    throw new Error(`--server-key ${o.serverKey}: neither a 40-character Z85 key nor a file holding one`);
  const keys = await readCurveKeyPair(o.clientKeys);
  return { serverPublicKey, keys };
}

/** The features the expert announces when served: the task's observation, as the profile maps it. */
function taskFeatures(task: Task): FeatureIO[] {
  return Object.entries(task.observe()).map(([key, v]) => {
    const n = (v as ArrayLike<number>).length;
    return { name: key.split(".").pop() ?? key, key, shape: [n], rawShape: [n] };
  });
}

/** What {@link runSim} measured (`sim run --json` prints it). */
export type SimRunResult = Awaited<ReturnType<typeof runSim>>;

/**
 * Runs `sim run`: the control loop drives the simulated robot in real time until the task is solved
 * or `seconds` pass, and returns the loop's figures (rate, jitter, inference latency, clamps).
 */
export async function runSim(o: SimRunOptions) {
  if (o.via === "ros" && !o.ros) throw new Error("--via ros needs --ros <url>");
  if (o.server !== undefined && o.via !== "zmq" && o.via !== "openpi")
    throw new Error(`--server applies to --via zmq or openpi, not ${o.via}`);
  if (o.via === "openpi" && o.merge === "rtc")
    throw new Error("--via openpi cannot run --merge rtc: the openpi protocol carries no prefix (use --via zmq)");
  const { seed, seconds, publish } = o;
  const merge = chunkMergeFrom(o);
  const profile = await loadRobotProfile(o.robot);
  const task = await simTask(o.task, profile, o.robot, seed);
  const closers: Array<() => Promise<void> | void> = [];
  try {
    // the policy as it exists in this process (absent with --server)
    let local: ChunkPolicy | undefined;
    let served: ServedPolicy | undefined;
    if (o.server === undefined) {
      if (o.policy === "expert") {
        const expert = new ExpertChunkPolicy(task, { horizon: o.horizon });
        closers.push(() => expert.dispose());
        local = expert;
        served = servedChunkPolicy(expert, { features: taskFeatures(task), solver: "expert" });
      } else {
        const lp: LocalPolicy = await startLocalPolicy(o.policy, {
          seed,
          executionProviders: [o.provider],
          ...(o.threads !== undefined ? { threads: o.threads } : {}),
        });
        closers.push(() => lp.close());
        lp.reset(seed);
        local = served = lp;
      }
    }
    let policy: ChunkPolicy;
    let server: string | null = null;
    if (o.via === "zmq") {
      let endpoint = o.server;
      if (endpoint === undefined) {
        const s = await ZmqPolicyServer.start({
          policy: served as ServedPolicy,
          endpoint: "tcp://127.0.0.1:0",
          auth: { mode: "insecure" },
        });
        closers.push(() => s.close());
        endpoint = s.endpoint;
      }
      const curve = await curveFrom(o);
      const remote = await ZmqChunkPolicy.connect({ endpoint, ...(curve ? { curve } : {}) });
      closers.push(() => remote.close());
      server = endpoint;
      policy = remote;
    } else if (o.via === "openpi") {
      let url = o.server;
      if (url === undefined) {
        const s = await OpenpiPolicyServer.start({
          policy: served as ServedPolicy,
          url: "ws://127.0.0.1:0",
          auth: { mode: "insecure" },
        });
        closers.push(() => s.close());
        url = s.url;
      }
      const apiKey =
        o.server === undefined
          ? undefined
          : o.apiKeyFile !== undefined
            ? (await readFile(o.apiKeyFile, "utf8")).trim()
            : process.env["ACTIONFLOW_API_KEY"]?.trim() || undefined;
      const remote = await OpenpiChunkPolicy.connect({ url, ...(apiKey !== undefined ? { apiKey } : {}) });
      closers.push(() => remote.close());
      server = url;
      policy = remote;
    } else policy = local as ChunkPolicy;
    if (o.wrapPolicy) policy = o.wrapPolicy(policy);

    const plant = taskPlant(task, profile);
    const sched = realScheduler();
    let loopStats: LoopStats;
    let staleCommands = 0;
    let robotSide: Record<string, number> = {};
    if (o.via !== "ros") {
      const link = new PlantLink({ plant, profile, scheduler: sched });
      link.start();
      const loop = new ControlLoop({
        policy,
        link,
        profile,
        scheduler: sched,
        merge,
        publish,
        ...(o.log ? { onEvent: (e) => e.kind !== "hold" && o.log?.(`loop: ${JSON.stringify(e)}`) } : {}),
      });
      loop.start();
      const t0 = Date.now();
      while (!task.success && Date.now() - t0 < seconds * 1000 && !loop.stats().safety.estop)
        await new Promise((r) => setTimeout(r, 50));
      loopStats = loop.stop();
      robotSide = link.stop();
    } else {
      const meter = new StaleCommandMeter();
      const node = new RosRobotNode({
        url: o.ros as string,
        profile,
        plant,
        scheduler: sched,
        onCommand: (msg, info) => meter.received(msg, info.lastConnectAtS),
      });
      node.start();
      const res = await driveRobot({
        onPublish: (msg, cmd) => meter.sent(msg, cmd.sourceAtS),
        url: o.ros as string,
        profile,
        policy,
        merge,
        publish,
        seconds,
        stopWhen: () => task.success,
        scheduler: sched,
        ...(o.log ? { log: o.log } : {}),
      });
      const ns = node.stop();
      loopStats = res.loop;
      staleCommands = meter.stale;
      robotSide = {
        steps: ns.steps,
        commands: ns.commands,
        rejected: ns.rejected,
        connects: ns.connects,
        missedSteps: ns.missedSteps,
        commandsBeforeFirstState: ns.commandsBeforeFirstState,
        unknownCommands: meter.unknown,
      };
    }
    const result = {
      task: task.info.name,
      via: o.via,
      merge: merge.mode,
      server,
      seed,
      success: task.success,
      loopHz: loopStats.loopHz,
      jitterP99Ms: loopStats.jitterP99Ms,
      missedDeadlines: loopStats.missedDeadlines,
      inferP50Ms: loopStats.inferP50Ms,
      queueEmptyEvents: loopStats.queueEmptyEvents,
      clamps: loopStats.clamps,
      staleCommands,
      seconds: loopStats.seconds,
      sent: loopStats.sent,
      inferErrors: loopStats.inferErrors,
      rtcOverruns: loopStats.rtcOverruns,
      estop: loopStats.safety.estopReason ?? null,
      robot: robotSide,
    };
    return result;
  } finally {
    for (const c of closers.reverse()) await c();
    task.dispose();
  }
}
