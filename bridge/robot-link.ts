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
  /** The e-stop request received from the robot side (latched), or undefined. */
  readonly estopRequest: string | undefined;
  /** Sends a command or drops it (see {@link SendResult}); never queues. */
  send(cmd: RobotCommand): SendResult;
  /** Publishes diagnostics (best effort; dropped while disconnected). */
  diagnostics(d: LoopDiagnostics): void;
}
