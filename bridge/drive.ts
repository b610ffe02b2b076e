/**
 * Drive a ROS robot with a policy: connects a {@link RosLink}, runs the {@link ControlLoop} until
 * the time is up or SIGINT/SIGTERM arrives, then holds and exits cleanly. A signal latches the
 * e-stop first, lets two control periods pass so the stop message goes out, then stops the loop and
 * closes the connection. The CLI's `serve --robot` is a thin wrapper around {@link driveRobot}.
 */
import type { ChunkPolicy } from "../policy/chunk-policy.ts";
import type { ControlLoopOptions, LoopStats } from "./loop.ts";
import { ControlLoop } from "./loop.ts";
import type { ChunkMerge } from "../policy/runtime/executor.ts";
import type { RobotProfile } from "./profile.ts";
import { InputRejections, type RejectedCounts, type RobotLink } from "./robot-link.ts";
import { attachRunLog } from "./log/logging-link.ts";
import { RunLog, type RunLogResult } from "./log/run-log.ts";
import type { RosLinkOptions, RosLinkStats } from "./ros/link.ts";
import { RosLink } from "./ros/link.ts";
import type { Scheduler } from "./scheduler.ts";
import { realScheduler } from "./scheduler.ts";
import { clearLoopThreadRealtime, setLoopThreadRealtime } from "./realtime.ts";
import type { RealtimeResult } from "./realtime.ts";

/** Where termination signals come from (default: the process). */
export interface SignalSource {
  on(signal: "SIGINT" | "SIGTERM", fn: () => void): unknown;
  off(signal: "SIGINT" | "SIGTERM", fn: () => void): unknown;
}

/** Options of {@link driveRobot}. */
export interface DriveOptions {
  /** rosbridge URL. */
  url: string;
  profile: RobotProfile;
  policy: ChunkPolicy;
  /** How chunks are merged (see {@link ChunkMerge}); default `sync`. */
  merge?: ChunkMerge;
  publish?: "chunk" | "step";
  /** Stop after this many seconds; default: run until a signal. */
  seconds?: number;
  /** Polled every 50 ms: stop once it returns true (a solved task, say). */
  stopWhen?: () => boolean;
  /** Give up if the first connection takes longer; default 10 000 ms. */
  connectTimeoutMs?: number;
  signals?: SignalSource;
  scheduler?: Scheduler;
  /** Log lines (connection changes, rejected messages, holds); default: none. */
  log?: (line: string) => void;
  /** Passed to {@link RosLink}: every command message handed to roslib (measurements). */
  onPublish?: RosLinkOptions["onPublish"];
  /** Write an MCAP run log of the drive (`--log`). */
  runLog?: RunLogRequest;
  /** Also receives every loop event (after the log line), e.g. a prompt the loop accepted. */
  onLoopEvent?: ControlLoopOptions["onEvent"];
  /** SCHED_FIFO priority of the loop's thread while it runs (`--realtime-priority`; see {@link RunLoopOptions}). */
  realtimePriority?: number;
}

/** A run log to write: the file and what its metadata records say. */
export interface RunLogRequest {
  path: string;
  /** The policy's metadata (source, horizon, merge, seed ...). */
  policyMeta?: Record<string, unknown>;
  /** The command line; default `process.argv`. */
  argv?: readonly string[];
}

/** What a run log wrote, with its file. */
export type WrittenRunLog = RunLogResult & { file: string };

/**
 * Opens the run log `req` asks for (none when undefined) and returns the loop's link and hooks
 * (through the log when there is one) with a `close` that finishes the file and reports a write
 * error or dropped records on `log`. Shared by every way a robot is driven.
 */
export async function withRunLog(
  req: RunLogRequest | undefined,
  opts: {
    profile: RobotProfile;
    link: RobotLink;
    actionDim: number;
    now: () => number;
    onEvent: NonNullable<ControlLoopOptions["onEvent"]>;
    log: (line: string) => void;
  },
): Promise<{
  link: RobotLink;
  onEvent: NonNullable<ControlLoopOptions["onEvent"]>;
  onChunk?: ControlLoopOptions["onChunk"];
  close: () => Promise<WrittenRunLog | undefined>;
}> {
  if (req === undefined) return { link: opts.link, onEvent: opts.onEvent, close: async () => undefined };
  const file = await RunLog.open(req.path, {
    profile: opts.profile,
    now: opts.now,
    argv: req.argv ?? process.argv,
    ...(req.policyMeta ? { policyMeta: req.policyMeta } : {}),
  });
  const hooks = attachRunLog(file, opts.link, { actionDim: opts.actionDim, onEvent: opts.onEvent });
  let closed: WrittenRunLog | undefined;
  return {
    ...hooks,
    close: async () => {
      if (closed) return closed;
      const written = await file.close();
      if (written.error !== undefined) opts.log(`run log ${req.path}: ${written.error}`);
      if (written.dropped > 0) opts.log(`run log ${req.path}: ${written.dropped} record(s) dropped (queue full)`);
      closed = { file: req.path, ...written };
      return closed;
    },
  };
}

/** What {@link driveRobot} returns: the loop's figures, the link's counters and why it stopped. */
export interface DriveResult {
  stoppedBy: "seconds" | "stopWhen" | "SIGINT" | "SIGTERM";
  loop: LoopStats;
  link: RosLinkStats;
  /** Refused inputs by topic and reason (wrong size, non-finite, missing joint, stale). */
  rejectedMessages: RejectedCounts;
  /** The run log written, when one was asked for. */
  runLog?: WrittenRunLog;
  /** The real-time priority asked for and whether it was set. */
  realtime?: RealtimeResult;
}

/** Options of {@link runLoop}. */
export interface RunLoopOptions {
  loop: ControlLoop;
  /** The link's control rate sets how long a signal's stop message is given to go out. */
  profile: RobotProfile;
  /** Stop after this many seconds; default: run until a signal or `stopWhen`. */
  seconds?: number;
  /** Polled every 50 ms: stop once it returns true (a solved task, an e-stop, say). */
  stopWhen?: () => boolean;
  /** Default: the process. */
  signals?: SignalSource;
  log?: (line: string) => void;
  /**
   * Run the loop's thread on SCHED_FIFO at this priority (1-99) while the loop runs
   * (`--realtime-priority`, see `realtime.ts`); default: the normal policy. Without the right, the loop
   * runs at the normal policy and the reason is logged and returned.
   */
  realtimePriority?: number;
}

/**
 * Starts `loop`, polls `stopWhen` every 50 ms, stops after `seconds` or on SIGINT/SIGTERM (e-stop
 * first, then two control periods for the stop message to go out), stops the loop and returns its
 * figures. Every way `sim run` and `serve --robot` drive a robot goes through here.
 */
export async function runLoop(
  opts: RunLoopOptions,
): Promise<{ stoppedBy: DriveResult["stoppedBy"]; loop: LoopStats; realtime?: RealtimeResult }> {
  const { loop } = opts;
  const log = opts.log ?? ((): void => {});
  const signals: SignalSource = opts.signals ?? process;
  const realtime = opts.realtimePriority !== undefined ? setLoopThreadRealtime(opts.realtimePriority) : undefined;
  if (realtime?.error !== undefined)
    log(`real-time priority ${realtime.priority} not set, running at the normal policy: ${realtime.error}`);
  try {
    return { ...(await runStarted(opts, log, signals)), ...(realtime ? { realtime } : {}) };
  } finally {
    if (realtime?.applied) {
      const error = clearLoopThreadRealtime();
      if (error !== undefined) log(`could not restore the normal scheduling policy: ${error}`);
    }
  }
}

/** {@link runLoop}'s body once the scheduling policy is set: start, wait for the stop, stop. */
async function runStarted(
  opts: RunLoopOptions,
  log: (line: string) => void,
  signals: SignalSource,
): Promise<{ stoppedBy: DriveResult["stoppedBy"]; loop: LoopStats }> {
  const { loop } = opts;
  loop.start();
  const stoppedBy = await new Promise<DriveResult["stoppedBy"]>((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const poll = opts.stopWhen
      ? setInterval(() => {
          if (opts.stopWhen?.()) finish("stopWhen");
        }, 50)
      : undefined;
    const finish = (why: DriveResult["stoppedBy"]): void => {
      signals.off("SIGINT", onInt);
      signals.off("SIGTERM", onTerm);
      clearTimeout(timer);
      clearInterval(poll);
      resolve(why);
    };
    const onSignal = (sig: "SIGINT" | "SIGTERM"): void => {
      log(`${sig}: e-stop, holding, then exiting`);
      loop.estop(sig);
      clearTimeout(timer);
      clearInterval(poll);
      setTimeout(() => finish(sig), Math.ceil(2000 / opts.profile.control_rate_hz));
    };
    const onInt = (): void => onSignal("SIGINT");
    const onTerm = (): void => onSignal("SIGTERM");
    signals.on("SIGINT", onInt);
    signals.on("SIGTERM", onTerm);
    if (opts.seconds !== undefined) timer = setTimeout(() => finish("seconds"), opts.seconds * 1000);
  });
  return { stoppedBy, loop: loop.stop() };
}

/** The loop's events as log lines (holds, resyncs, dropped chunks, inference failures, a starved loop). */
export function loopEventLogger(log: (line: string) => void): NonNullable<ControlLoopOptions["onEvent"]> {
  return (e) => {
    if (e.kind === "hold") {
      // an empty queue between two sync chunks is routine; a long one is reported as `starved`
      if (e.reason !== "empty") log(`holding at step ${e.step}: ${e.reason}`);
    } else if (e.kind === "resync")
      log(`reconnected: waiting for a fresh joint state and a new chunk (epoch ${e.epoch})`);
    else if (e.kind === "infer-error") log(`inference failed: ${e.error}`);
    else if (e.kind === "loop-error") log(`error in a control tick (e-stop latched): ${e.error}`);
    else if (e.kind === "starved") log(`no action to execute for ${e.forS.toFixed(1)} s: ${e.reason}`);
    else if (e.kind === "rtc-overrun")
      log(
        `rtc overrun at step ${e.step}: inference delay ${e.delaySteps} steps > ${e.maxDelaySteps} (${e.consecutive} in a row); executing only what is queued, then holding`,
      );
    else if (e.kind === "rtc-recovered") log(`rtc: inference delay back within bounds at step ${e.step}; resuming`);
    else if (e.kind === "intervention")
      log(
        e.active
          ? `intervention at step ${e.step}: a person has the robot; not commanding`
          : `intervention over at step ${e.step}: ramping back in from the measured position`,
      );
    else if (e.kind === "prompt")
      log(
        e.accepted
          ? `prompt at step ${e.step}: ${JSON.stringify(e.prompt)} from the next chunk on`
          : `prompt ${JSON.stringify(e.prompt)} refused at step ${e.step}: ${e.error}`,
      );
    else log(`dropped a chunk at step ${e.step}: ${e.reason}`);
  };
}

/** `first`, then `then` when given, on every event. */
function withHook<E>(first: (e: E) => void, then: ((e: E) => void) | undefined): (e: E) => void {
  return then ? (e) => (first(e), then(e)) : first;
}

/** Runs the loop against a robot over rosbridge; resolves when stopped (see the module comment). */
export async function driveRobot(opts: DriveOptions): Promise<DriveResult> {
  const sched = opts.scheduler ?? realScheduler();
  const log = opts.log ?? ((): void => {});
  const rejections = new InputRejections({ now: () => sched.now(), log });
  const link = RosLink.open({
    url: opts.url,
    profile: opts.profile,
    now: () => sched.now(),
    rejections,
    ...(opts.onPublish ? { onPublish: opts.onPublish } : {}),
    onEvent: (e) => {
      switch (e.kind) {
        case "connected":
          return log(`connected to ${e.url} (epoch ${e.epoch})`);
        case "disconnected":
          return log(`disconnected (epoch ${e.epoch}); retrying in ${e.retryInMs} ms; commands are dropped meanwhile`);
        case "rejected":
          // counted and reported once per run by `rejections`; a connection failure has no topic
          return e.topic === "(connection)" ? log(e.error) : undefined;
        case "estop":
          return log(`e-stop requested on ${e.topic}: holding`);
      }
    },
  });
  try {
    await link.waitConnected(opts.connectTimeoutMs ?? 10_000);
  } catch (err) {
    link.close();
    throw err;
  }
  let logged: Awaited<ReturnType<typeof withRunLog>> | undefined;
  try {
    logged = await withRunLog(opts.runLog, {
      profile: opts.profile,
      link,
      actionDim: opts.policy.actionDim,
      now: () => sched.now(),
      onEvent: withHook(loopEventLogger(log), opts.onLoopEvent),
      log,
    });
    const loop = new ControlLoop({
      policy: opts.policy,
      profile: opts.profile,
      scheduler: sched,
      ...(opts.merge ? { merge: opts.merge } : {}),
      ...(opts.publish ? { publish: opts.publish } : {}),
      link: logged.link,
      onEvent: logged.onEvent,
      ...(logged.onChunk ? { onChunk: logged.onChunk } : {}),
    });
    const res = await runLoop({
      loop,
      profile: opts.profile,
      ...(opts.seconds !== undefined ? { seconds: opts.seconds } : {}),
      ...(opts.stopWhen ? { stopWhen: opts.stopWhen } : {}),
      ...(opts.signals ? { signals: opts.signals } : {}),
      ...(opts.realtimePriority !== undefined ? { realtimePriority: opts.realtimePriority } : {}),
      log,
    });
    rejections.finish();
    const runLog = await logged.close();
    return {
      ...res,
      link: link.stats(),
      rejectedMessages: rejections.snapshot(),
      ...(runLog ? { runLog } : {}),
    };
  } finally {
    await logged?.close();
    link.close();
  }
}
