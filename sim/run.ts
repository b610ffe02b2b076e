/**
 * `sim run` as a library function: the real-time control loop drives a simulated task in real time,
 * directly (`direct`), through a rosbridge (`ros`, the loop and the simulated robot connecting as two
 * ROS clients would), or with the policy behind a policy server (`zmq` or `openpi`: a server started
 * in-process on 127.0.0.1, or an already running one; `kserve`: a KServe v2 / Triton server). The
 * transports are entries of `sim/transports.ts`. ONNX policies run in a worker thread
 * ({@link startLocalPolicy}): inference never blocks the loop.
 */
import { driveRobot, loopEventLogger, runLoop, withRunLog } from "../bridge/drive.ts";
import type { DriveOptions, RunLogRequest, WrittenRunLog } from "../bridge/drive.ts";
import { startLocalPolicy, type LocalPolicy } from "../bridge/local-policy.ts";
import { ControlLoop } from "../bridge/loop.ts";
import type { LoopStats } from "../bridge/loop.ts";
import type { RealtimeResult } from "../bridge/realtime.ts";
import type { Plant } from "../bridge/plant.ts";
import type { Vec3 } from "./env.ts";
import { PlantLink } from "../bridge/plant-link.ts";
import type { RobotProfile } from "../bridge/profile.ts";
import { checkFeatureSizes, loadRobotProfile, withInterventionTopic, withPromptTopic } from "../bridge/profile.ts";
import { InputRejections, type RejectedCounts } from "../bridge/robot-link.ts";
import { RosRobotNode } from "../bridge/ros/robot-node.ts";
import { realScheduler } from "../bridge/scheduler.ts";
import { servedChunkPolicy } from "../bridge/server/remote-policy.ts";
import { StaleCommandMeter } from "../bridge/stale-commands.ts";
import { chunkMergeFrom, type Aggregate, type ChunkMerge } from "../policy/runtime/executor.ts";
import type { ChunkPolicy } from "../policy/chunk-policy.ts";
import type { FeatureIO } from "../policy/onnx/graphs.ts";
import type { ExecutionProvider } from "../policy/runtime/providers.ts";
import { ExpertChunkPolicy } from "./policy.ts";
import type { Task, TaskName } from "./tasks/index.ts";
import { createTask, imageKey } from "./tasks/index.ts";
import {
  declaredFeatures,
  simTransport,
  type SimVia,
  type TransportContext,
  type TransportFlags,
} from "./transports.ts";

export { SIM_RUN_VIAS } from "./transports.ts";

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
    // the frames the cameras rendered in the last observe() (features() above)
    images: () => {
      const out: Record<string, { width: number; height: number; rgb: Uint8Array }> = {};
      for (const c of task.cameras) {
        const f = task.cameraFrame(c.name);
        if (f) out[imageKey(c.name)] = { width: f.width, height: f.height, rgb: f.rgb };
      }
      return out;
    },
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
  // the profile's cameras, rendered by the simulator (pose from the scene's camera of that name)
  if (profile.cameras.length > 0)
    task.attachCameras(
      profile.cameras.map((c) => ({
        name: c.feature.slice("observation.images.".length),
        width: c.width,
        height: c.height,
      })),
    );
  task.reset(seed);
  try {
    checkFeatureSizes(profile, profilePath, taskFeatures(task), `the ${taskName} task`);
  } catch (err) {
    task.dispose();
    throw err;
  }
  return task;
}

/** The options of {@link runSim} (the `sim run` flags). */
export interface SimRunOptions extends TransportFlags {
  task: TaskName;
  policy: string;
  via: SimVia;
  /** Robot profile JSON; default {@link defaultSimProfile} of the task. */
  robot?: string;
  merge: ChunkMerge["mode"];
  nActionSteps?: number;
  aggregate?: Aggregate;
  prefixSteps?: number;
  /** Smoothing weight λ of each new chunk onto the commands before it (`--smoothing`; sync, blend and rtc). */
  smoothing?: number;
  publish: "step" | "chunk";
  seconds: number;
  seed: number;
  horizon: number;
  threads?: number;
  /** SCHED_FIFO priority of the loop's thread while it runs (`--realtime-priority`, 1-99); default: the normal policy. */
  realtimePriority?: number;
  provider: ExecutionProvider;
  /** Log lines (loop events, connection changes, rejected inputs); default: none. */
  log?: (line: string) => void;
  /** Wraps the policy the loop calls (e.g. to time each chunk request); the demo uses it. */
  wrapPolicy?: (policy: ChunkPolicy) => ChunkPolicy;
  /** `std_msgs/Bool` topic: true while a person has the robot (overrides the profile's `ros.intervention`). */
  interventionTopic?: string;
  /**
   * `std_msgs/String` topic of task prompts (overrides the profile's `ros.prompt`; `--via ros`): a
   * prompt the policy accepts takes effect at its next chunk, and re-instructs an instructed task.
   */
  promptTopic?: string;
  /** Writes an MCAP run log to this file (`--log`). */
  runLog?: string;
  /** The command line recorded in the run log; default `process.argv`. */
  argv?: readonly string[];
  /**
   * The task prompt (`--prompt`): an instructed task (fork-instructed) is told the way it names
   * (default: the episode's own instruction), and a prompt-conditioned policy is given it (default:
   * the episode's instruction, else the task's description).
   */
  prompt?: string;
}

/** The shipped profile of the simulated arm for `task`: its environment state has the task's size. */
export function defaultSimProfile(task: TaskName): string {
  if (task === "reach") return "examples/robots/sim-arm.json";
  // The instructed fork is the fork's scene: the same robot and environment state.
  return `examples/robots/sim-arm-${task === "fork-instructed" ? "fork" : task}.json`;
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
 * or `seconds` pass, and returns the loop's figures (rate, jitter, inference latency, clamps, refused
 * inputs). A profile whose features differ in size from the task's or the policy's is refused at start.
 */
export async function runSim(o: SimRunOptions) {
  const { seed, seconds, publish } = o;
  const merge = chunkMergeFrom(o);
  const transport = simTransport(o.via, o, merge);
  const log = o.log ?? ((): void => {});
  const robot = o.robot ?? defaultSimProfile(o.task);
  if (o.interventionTopic !== undefined && transport.link === "plant")
    throw new Error(`--intervention-topic: a person takes over through ROS; use --via ros (not --via ${o.via})`);
  if (o.promptTopic !== undefined && transport.link === "plant")
    throw new Error(`--prompt-topic: prompts arrive through ROS; use --via ros (not --via ${o.via})`);
  const profile = withPromptTopic(
    withInterventionTopic(await loadRobotProfile(robot), o.interventionTopic),
    o.promptTopic,
  );
  const task = await simTask(o.task, profile, robot, seed);
  const closers: Array<() => Promise<void> | void> = [];
  try {
    if (o.prompt !== undefined && task.info.instructions) task.instruct(task.modeOfPrompt(o.prompt));
    const ctx: TransportContext = { flags: o, profile, seed, closers };
    if (transport.localPolicy(o)) {
      if (o.policy === "expert") {
        const expert = new ExpertChunkPolicy(task, { horizon: o.horizon });
        closers.push(() => expert.dispose());
        ctx.local = expert;
        ctx.served = servedChunkPolicy(expert, { features: taskFeatures(task), solver: "expert" });
      } else {
        const lp: LocalPolicy = await startLocalPolicy(o.policy, {
          seed,
          executionProviders: [o.provider],
          ...(o.threads !== undefined ? { threads: o.threads } : {}),
        });
        closers.push(() => lp.close());
        if (lp.prompts !== undefined) lp.setPrompt?.(o.prompt ?? task.prompt);
        lp.reset(seed);
        ctx.local = ctx.served = lp;
      }
      const declared = ctx.served ? declaredFeatures(ctx.served) : undefined;
      if (declared) checkFeatureSizes(profile, robot, declared, `the policy ${o.policy}`);
    }
    const connected = await transport.connect(ctx);
    // A remote prompt-conditioned policy gets the prompt with every request.
    if (connected.policy.prompts !== undefined) connected.policy.setPrompt?.(o.prompt ?? task.prompt);
    const declared = declaredFeatures(connected.policy);
    if (declared) checkFeatureSizes(profile, robot, declared, `the policy behind ${connected.server ?? o.via}`);
    const policy = o.wrapPolicy ? o.wrapPolicy(connected.policy) : connected.policy;

    // A two-mode task records the end effector's path, so the result can say which way it went.
    const trace: Vec3[] = [];
    const base = taskPlant(task, profile);
    const plant: Plant = task.info.modes
      ? {
          ...base,
          step: (targets) => {
            base.step(targets);
            trace.push(task.env.eePos());
          },
        }
      : base;
    // a prompt accepted from the prompt topic re-instructs an instructed task
    const prompted: string[] = [];
    const onLoopEvent = (e: Parameters<NonNullable<DriveOptions["onLoopEvent"]>>[0]): void => {
      if (e.kind !== "prompt" || !e.accepted) return;
      prompted.push(e.prompt);
      if (task.info.instructions) task.instruct(task.modeOfPrompt(e.prompt));
    };
    const sched = realScheduler();
    let loopStats: LoopStats;
    let staleCommands = 0;
    let robotSide: Record<string, number> = {};
    let rejectedMessages: RejectedCounts;
    let runLog: WrittenRunLog | undefined;
    let realtime: RealtimeResult | undefined;
    const rt = o.realtimePriority !== undefined ? { realtimePriority: o.realtimePriority } : {};
    const stopWhen = (): boolean => task.success;
    const logRequest: RunLogRequest | undefined =
      o.runLog === undefined
        ? undefined
        : {
            path: o.runLog,
            argv: o.argv ?? process.argv,
            policyMeta: {
              policy: o.policy,
              via: o.via,
              server: connected.server ?? null,
              horizon: policy.horizon,
              actionDim: policy.actionDim,
              fps: policy.fps ?? null,
              merge: merge.mode,
              seed,
            },
          };
    if (transport.link === "plant") {
      const rejections = new InputRejections({ now: () => sched.now(), log });
      const link = new PlantLink({ plant, profile, scheduler: sched, rejections });
      const logged = await withRunLog(logRequest, {
        profile,
        link,
        actionDim: policy.actionDim,
        now: () => sched.now(),
        onEvent: loopEventLogger(log),
        log,
      });
      link.start();
      const loop = new ControlLoop({
        policy,
        profile,
        scheduler: sched,
        merge,
        publish,
        link: logged.link,
        onEvent: logged.onEvent,
        ...(logged.onChunk ? { onChunk: logged.onChunk } : {}),
      });
      let res: Awaited<ReturnType<typeof runLoop>>;
      try {
        res = await runLoop({
          loop,
          profile,
          seconds,
          stopWhen: () => stopWhen() || loop.stats().safety.estop,
          log,
          ...rt,
        });
      } finally {
        runLog = await logged.close();
      }
      loopStats = res.loop;
      realtime = res.realtime;
      robotSide = link.stop();
      rejections.finish();
      rejectedMessages = rejections.snapshot();
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
        stopWhen,
        scheduler: sched,
        log,
        onLoopEvent,
        ...rt,
        ...(logRequest ? { runLog: logRequest } : {}),
      }).catch((err: unknown) => {
        node.stop();
        throw err;
      });
      const ns = node.stop();
      loopStats = res.loop;
      realtime = res.realtime;
      staleCommands = meter.stale;
      rejectedMessages = res.rejectedMessages;
      runLog = res.runLog;
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
      server: connected.server,
      robotProfile: robot,
      seed,
      prompt: task.instructedMode !== undefined || o.prompt !== undefined ? (o.prompt ?? task.prompt) : null,
      instructed: task.instructedMode ?? null,
      mode: task.info.modes ? (task.modeOf(trace) ?? null) : null,
      /** Prompts accepted from the prompt topic, in order. */
      promptsReceived: prompted,
      success: task.success,
      loopHz: loopStats.loopHz,
      jitterP99Ms: loopStats.jitterP99Ms,
      ...(realtime ? { realtime } : {}),
      missedDeadlines: loopStats.missedDeadlines,
      inferP50Ms: loopStats.inferP50Ms,
      queueEmptyEvents: loopStats.queueEmptyEvents,
      clamps: loopStats.clamps,
      staleCommands,
      seconds: loopStats.seconds,
      sent: loopStats.sent,
      inferErrors: loopStats.inferErrors,
      rtcOverruns: loopStats.rtcOverruns,
      staleFeatureTicks: loopStats.staleFeatureTicks,
      rejectedMessages,
      estop: loopStats.safety.estopReason ?? null,
      robot: robotSide,
      ...(runLog ? { runLog } : {}),
    };
    return result;
  } finally {
    for (const c of closers.reverse()) await c();
    task.dispose();
  }
}
