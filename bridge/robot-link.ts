/**
 * The interface between the control loop and whatever carries commands to a robot (ROS through
 * rosbridge in `bridge/ros/`, the simulator in process, test fakes). Latest-value semantics: the
 * loop reads the newest joint state and features each tick; the link never queues commands.
 *
 * Connection epochs: the link increments `epoch` every time its connection (re)opens. Samples carry
 * the epoch they arrived in, commands carry the epoch of the joint state they were computed from,
 * and a link drops (never queues, never delivers) a command whose epoch is not the current one or
 * that it cannot send right now. That is how no stale command reaches the robot after a reconnect.
 */

/** One joint state sample, positions in action order (radians/metres). */
export interface JointStateSample {
  positions: Float64Array;
  /** Receive time on the loop's monotonic clock, seconds. */
  atS: number;
  /** The link's connection epoch when it arrived. */
  epoch: number;
}

/** One observation feature sample (a `std_msgs/Float32MultiArray`, say). */
export interface FeatureSample {
  values: Float32Array;
  atS: number;
  epoch: number;
}

/**
 * One camera image (the profile's `cameras`), uint8 RGB `[height, width, 3]` row-major, at the
 * camera's profile size.
 */
export interface ImageSample {
  width: number;
  height: number;
  rgb: Uint8Array;
  /** Receive time of its message on the loop's monotonic clock, seconds (before decoding). */
  atS: number;
  epoch: number;
}

/** A command for the robot, already through the safety layer. */
export type RobotCommand =
  | {
      /** One position target per joint for the next control step. */
      kind: "positions";
      positions: Float64Array;
      /** Seconds until the target should be reached (the control period). */
      dtS: number;
      /** Epoch of the joint state the command was computed from. */
      epoch: number;
      /** Receive time (loop clock, s) of the joint state the command was computed from. */
      sourceAtS: number;
    }
  | {
      /** Targets for the next steps, `points[k]` reached `(k + 1) * dtS` seconds from now. */
      kind: "trajectory";
      points: Float64Array[];
      dtS: number;
      epoch: number;
      sourceAtS: number;
    };

/** A command a person sent to the robot during an intervention, as received. */
export interface HumanCommand {
  /** Targets `[k][joints]` in action order; a forward command has one point. */
  points: Float64Array[];
  /** Seconds between points of a trajectory (its first point's time_from_start), else the control period. */
  dtS: number;
  /** Receive time on the loop's clock, seconds. */
  atS: number;
}

/** What the link did with a command. */
export type SendResult = "sent" | "dropped-disconnected" | "dropped-stale";

/**
 * The rule every link applies before delivering a command: none while disconnected, and none
 * computed in an earlier connection epoch (from a joint state older than the latest reconnect).
 * Returns why the command must be dropped, or undefined when it may be delivered.
 */
export function commandGate(
  cmd: RobotCommand,
  link: { connected: boolean; epoch: number },
): Exclude<SendResult, "sent"> | undefined {
  if (!link.connected) return "dropped-disconnected";
  if (cmd.epoch !== link.epoch) return "dropped-stale";
  return undefined;
}

/** Loop figures published as diagnostics. */
export interface LoopDiagnostics {
  /** 0 OK, 1 WARN, 2 ERROR, 3 STALE (diagnostic_msgs/DiagnosticStatus levels). */
  level: 0 | 1 | 2 | 3;
  message: string;
  values: Record<string, string | number | boolean>;
}

/** A transport to one robot; see the module comment. */
export interface RobotLink {
  /** Whether commands can be delivered right now. */
  readonly connected: boolean;
  /** Connection epoch, incremented on every (re)connect; 0 before the first. */
  readonly epoch: number;
  /** Newest joint state, or undefined. */
  jointState(): JointStateSample | undefined;
  /** Newest sample of an observation feature by its policy key, or undefined. */
  feature(name: string): FeatureSample | undefined;
  /**
   * Newest decoded image of a profile camera by its feature (`observation.images.front`), or
   * undefined; absent when the link carries no cameras.
   */
  image?(feature: string): ImageSample | undefined;
  /** The e-stop request received from the robot side (latched), or undefined. */
  readonly estopRequest: string | undefined;
  /** True while a person has taken the robot over (the profile's intervention topic); absent: never. */
  readonly intervention?: boolean;
  /**
   * The commands a person sent during an intervention since the last call (the link watches the
   * command topic while one lasts), oldest first; absent when the link cannot see them.
   */
  takeHumanCommands?(): HumanCommand[];
  /** The newest task prompt received (the profile's prompt topic) since the last call, or undefined. */
  takePrompt?(): string | undefined;
  /** Sends a command or drops it (see {@link SendResult}); never queues. */
  send(cmd: RobotCommand): SendResult;
  /** Refused inputs so far by topic and reason, when the link counts them. */
  readonly rejections?: InputRejections;
  /** Publishes diagnostics (best effort; dropped while disconnected). */
  diagnostics(d: LoopDiagnostics): void;
}

/** Why an input was refused: a wrong length, a non-finite value, a joint missing, an unparsable message, or too old. */
export type RejectReason = "size" | "non-finite" | "missing-joint" | "malformed" | "stale";

/** The reason behind one of `bridge/ros/protocol.ts`'s parse errors (or a plant sample's check). */
export function rejectReason(error: string): RejectReason {
  if (/expected \d+ values, got \d+|\d+ values for \d+ names/.test(error)) return "size";
  if (/expected a finite number/.test(error)) return "non-finite";
  if (/missing joint/.test(error)) return "missing-joint";
  return "malformed";
}

/** Rejected inputs by topic, then by reason (`rejectedMessages` in results and diagnostics). */
export type RejectedCounts = Record<string, Partial<Record<RejectReason, number>>>;

/** Options of {@link InputRejections}. */
export interface InputRejectionsOptions {
  /** Where the report lines go (stderr in the CLI); default: none. */
  log?: (line: string) => void;
  /** Monotonic clock, seconds. */
  now: () => number;
  /** While a run of rejections lasts, its count is logged this often, seconds; default 5. */
  reportEveryS?: number;
  /** A run ends at an accepted input this long after its last rejection, seconds; default 1. */
  quietS?: number;
}

/**
 * Counts and reports refused inputs (a feature message of the wrong size, a non-finite value, a joint
 * state missing a joint, a stale feature). A run of rejections on one topic for one reason is logged
 * once when it starts (with the error, which names the topic and the sizes or the joint), then as a
 * count every `reportEveryS` while it lasts and once when it ends (an accepted input `quietS` after
 * the last rejection, or {@link finish}): never one line per message.
 */
export class InputRejections {
  private readonly counts: RejectedCounts = {};
  private readonly runs = new Map<
    string,
    { topic: string; reason: RejectReason; n: number; lastLogS: number; lastRejectS: number }
  >();
  private readonly lastError = new Map<string, string>();

  constructor(private readonly opts: InputRejectionsOptions) {}

  /** Counts one refused input on `topic`; `error` says what was wrong. */
  reject(topic: string, reason: RejectReason, error: string): void {
    const byReason = (this.counts[topic] ??= {});
    byReason[reason] = (byReason[reason] ?? 0) + 1;
    if (reason !== "stale") this.lastError.set(topic, error);
    const key = `${topic}\u0000${reason}`;
    const now = this.opts.now();
    const run = this.runs.get(key);
    if (!run) {
      this.runs.set(key, { topic, reason, n: 1, lastLogS: now, lastRejectS: now });
      this.opts.log?.(`rejecting input on ${topic} (${reason}): ${error}`);
      return;
    }
    run.n++;
    run.lastRejectS = now;
    if (now - run.lastLogS >= (this.opts.reportEveryS ?? 5)) {
      run.lastLogS = now;
      this.opts.log?.(`still rejecting input on ${topic} (${reason}): ${run.n} so far; last: ${error}`);
    }
  }

  /**
   * An input on `topic` was accepted: ends its runs of rejections (of `reasons`; default every reason
   * but `stale`) that have seen no rejection for `quietS` (good and bad inputs interleaved are one run).
   */
  accepted(topic: string, reasons?: readonly RejectReason[]): void {
    const now = this.opts.now();
    for (const [key, run] of this.runs) {
      if (run.topic !== topic || now - run.lastRejectS < (this.opts.quietS ?? 1)) continue;
      if (reasons ? !reasons.includes(run.reason) : run.reason === "stale") continue;
      this.runs.delete(key);
      this.opts.log?.(`accepting input on ${topic} again after ${run.n} rejected (${run.reason})`);
    }
  }

  /** The last rejection error on `topic` (a stale feature aside), or undefined. */
  last(topic: string): string | undefined {
    return this.lastError.get(topic);
  }

  /** The counts so far, by topic and reason. */
  snapshot(): RejectedCounts {
    return structuredClone(this.counts);
  }

  /** The counts as diagnostics values, `rejected <topic> <reason>`. */
  diagnosticValues(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [topic, byReason] of Object.entries(this.counts))
      for (const [reason, n] of Object.entries(byReason)) out[`rejected ${topic} ${reason}`] = n ?? 0;
    return out;
  }

  /** Logs the runs still going (their counts) and ends them; call once when the loop stops. */
  finish(): void {
    for (const run of this.runs.values())
      this.opts.log?.(`stopped with ${run.n} input(s) rejected on ${run.topic} (${run.reason}) in a row`);
    this.runs.clear();
  }
}
