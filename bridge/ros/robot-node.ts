/**
 * The robot side of the ROS bridge, for a simulated robot: a rosbridge client that steps a
 * {@link Plant} in real time at its control period, publishes its `sensor_msgs/JointState`,
 * feature topics (`std_msgs/Float32MultiArray`) and camera images (`sensor_msgs/Image`, or a
 * lossless PNG `sensor_msgs/CompressedImage` for a camera of transport `compressed`) every step, and executes the commands it receives as the ros2_control controllers would:
 *
 * - `trajectory` (joint_trajectory_controller): a message breaking the controller's rules
 *   ({@link trajectoryViolations}) is rejected; an accepted one replaces the current trajectory and
 *   is followed by linear interpolation of positions from the current reference at receipt through
 *   each point at `time_from_start` (stamp 0 = now), then holds the last point;
 * - `forward` (forward_position_controller): a message with exactly one finite value per joint
 *   becomes the target; any other is rejected.
 *
 * `commandsBeforeFirstState` counts commands that arrived on a connection before this node had
 * published a joint state on it: they cannot have been computed from a state of that connection
 * (roslib's replay of a queue, say). The full stale-command measurement needs the controller's
 * side too: see {@link StaleCommandMeter} and the `onCommand` hook.
 */
import { Ros, Topic } from "roslib";
import type { ITransportFactory } from "roslib";
import type { Plant } from "../plant.ts";
import { TrajectoryFollower } from "../plant.ts";
import type { RobotProfile } from "../profile.ts";
import type { Scheduler } from "../scheduler.ts";
import { realScheduler } from "../scheduler.ts";
import { MSG, compressedImage, float32MultiArray, rosSeconds, sensorImage, zeroHeader } from "./protocol.ts";
import { trajectoryViolations } from "./trajectory-rules.ts";
import type { StaleCommandMeter } from "../stale-commands.ts";

/** Options of {@link RosRobotNode}. */
export interface RosRobotNodeOptions {
  url: string;
  profile: RobotProfile;
  plant: Plant;
  scheduler?: Scheduler;
  /** Reconnect backoff (ms): first delay, cap, factor; default 100, 2000, 2. */
  backoff?: { initialMs: number; maxMs: number; factor: number };
  transportFactory?: ITransportFactory;
  /** Called after every plant step with the step count. */
  onStep?: (step: number) => void;
  /**
   * Called with every command message received (before validation) and the time (scheduler clock,
   * s) of this node's latest (re)connect, for measurements such as {@link StaleCommandMeter}.
   */
  onCommand?: (msg: unknown, info: { atS: number; lastConnectAtS: number }) => void;
}

/** Counters of a {@link RosRobotNode}. */
export interface RosRobotNodeStats {
  steps: number;
  commands: number;
  rejected: number;
  lastRejection?: string;
  /** Commands received on a connection before this node had published a joint state on it. */
  commandsBeforeFirstState: number;
  connects: number;
  missedSteps: number;
}

/** The simulated robot's ROS node; {@link start} it, {@link stop} it. */
export class RosRobotNode {
  private readonly ros: Ros;
  private readonly sched: Scheduler;
  private readonly n: number;
  private readonly jsTopic: Topic<Record<string, unknown>>;
  private readonly featureTopics: { feature: string; topic: Topic<Record<string, unknown>> }[] = [];
  private readonly cameraTopics: {
    feature: string;
    transport: "raw" | "compressed";
    topic: Topic<Record<string, unknown>>;
  }[] = [];
  private readonly cmdTopic: Topic<unknown>;
  private readonly follower: TrajectoryFollower;
  private reference: Float64Array;
  private connected = false;
  private publishedThisConnection = false;
  private stopped = true;
  private cancel?: () => void;
  private retryTimer?: NodeJS.Timeout;
  private retryMs: number;
  private lastConnectAtS = -Infinity;
  private startS = 0;
  private k = 0;
  private readonly counters: RosRobotNodeStats = {
    steps: 0,
    commands: 0,
    rejected: 0,
    commandsBeforeFirstState: 0,
    connects: 0,
    missedSteps: 0,
  };

  constructor(private readonly opts: RosRobotNodeOptions) {
    const p = opts.profile;
    this.n = p.joints.length;
    this.sched = opts.scheduler ?? realScheduler();
    this.retryMs = opts.backoff?.initialMs ?? 100;
    this.reference = Float64Array.from(opts.plant.positions());
    this.follower = new TrajectoryFollower(this.reference);
    if (this.reference.length !== this.n)
      throw new Error(`RosRobotNode: plant has ${this.reference.length} joints, profile '${p.name}' ${this.n}`);
    this.ros = new Ros(opts.transportFactory ? { transportFactory: opts.transportFactory } : {});
    this.ros.on("connection", () => {
      this.connected = true;
      this.lastConnectAtS = this.sched.now();
      this.publishedThisConnection = false;
      this.counters.connects++;
      this.retryMs = opts.backoff?.initialMs ?? 100;
    });
    this.ros.on("close", () => {
      this.connected = false;
      if (this.stopped) return;
      const b = opts.backoff ?? { initialMs: 100, maxMs: 2000, factor: 2 };
      const delay = this.retryMs;
      this.retryMs = Math.min(b.maxMs, this.retryMs * b.factor);
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.connect(), delay);
    });
    this.ros.on("error", () => {});
    this.jsTopic = new Topic({ ros: this.ros, name: p.ros.joint_states, messageType: MSG.jointState, queue_size: 1 });
    for (const f of p.features)
      this.featureTopics.push({
        feature: f.feature,
        topic: new Topic({ ros: this.ros, name: f.topic, messageType: MSG.float32MultiArray, queue_size: 1 }),
      });
    for (const c of p.cameras)
      this.cameraTopics.push({
        feature: c.feature,
        transport: c.transport,
        topic: new Topic({
          ros: this.ros,
          name: c.topic,
          messageType: c.transport === "compressed" ? MSG.compressedImage : MSG.image,
          queue_size: 1,
        }),
      });
    this.cmdTopic = new Topic<unknown>({
      ros: this.ros,
      name: p.ros.command,
      messageType: p.command_interface === "trajectory" ? MSG.jointTrajectory : MSG.float64MultiArray,
    });
    this.cmdTopic.subscribe((m) => this.onCommand(m));
  }

  /** Connects and starts stepping the plant at its control period. */
  start(): void {
    this.stopped = false;
    this.connect();
    this.startS = this.sched.now();
    this.k = 0;
    this.cancel = this.sched.at(this.startS, () => this.tick());
  }

  /** Stops stepping and closes the connection. */
  stop(): RosRobotNodeStats {
    this.stopped = true;
    this.cancel?.();
    clearTimeout(this.retryTimer);
    this.cmdTopic.unsubscribe();
    this.ros.close();
    return this.stats();
  }

  /** Counters so far. */
  stats(): RosRobotNodeStats {
    return { ...this.counters };
  }

  /**
   * Makes the controller hold `positions` `[joints]` (dropping the current trajectory), as a
   * controller restarted at the robot's pose would: after the simulator resets the scene.
   */
  holdAt(positions: ArrayLike<number>): void {
    this.follower.setPositions(positions);
    this.reference = Float64Array.from(positions);
  }

  /** The position target the plant tracked at the last step `[joints]`. */
  get target(): Float64Array {
    return Float64Array.from(this.reference);
  }

  private connect(): void {
    if (this.stopped) return;
    this.ros.connect(this.opts.url).catch(() => {
      // the close event schedules the retry
    });
  }

  private tick(): void {
    if (this.stopped) return;
    const now = this.sched.now();
    this.reference = this.follower.referenceAt(now);
    this.opts.plant.step(this.reference);
    this.counters.steps++;
    this.publishState();
    this.opts.onStep?.(this.counters.steps);
    this.k++;
    const dt = this.opts.plant.dtS;
    const after = this.sched.now();
    const behind = after - (this.startS + this.k * dt);
    if (behind > 0) {
      const late = Math.floor(behind / dt) + 1;
      this.counters.missedSteps += late;
      this.k += late;
    }
    this.cancel = this.sched.at(this.startS + this.k * dt, () => this.tick());
  }

  private publishState(): void {
    if (!this.connected || !this.ros.isConnected) return;
    const p = this.opts.profile;
    this.jsTopic.publish({
      header: zeroHeader(p.ros.version),
      name: [...p.joints],
      position: Array.from(this.opts.plant.positions()),
      velocity: [],
      effort: [],
    });
    const feats = this.opts.plant.features();
    for (const f of this.featureTopics) {
      const v = feats[f.feature];
      if (v) f.topic.publish(float32MultiArray(v));
    }
    if (this.cameraTopics.length > 0) {
      const imgs = this.opts.plant.images?.() ?? {};
      for (const c of this.cameraTopics) {
        const img = imgs[c.feature];
        if (img)
          c.topic.publish(
            c.transport === "compressed" ? compressedImage(p.ros.version, img, "png") : sensorImage(p.ros.version, img),
          );
      }
    }
    this.publishedThisConnection = true;
  }

  private onCommand(m: unknown): void {
    const p = this.opts.profile;
    this.opts.onCommand?.(m, { atS: this.sched.now(), lastConnectAtS: this.lastConnectAtS });
    if (!this.publishedThisConnection) this.counters.commandsBeforeFirstState++;
    if (p.command_interface === "forward") {
      const data = typeof m === "object" && m !== null ? (m as { data?: unknown }).data : undefined;
      if (
        !Array.isArray(data) ||
        data.length !== this.n ||
        !data.every((x) => typeof x === "number" && Number.isFinite(x))
      )
        return this.reject(`Float64MultiArray: expected ${this.n} finite values, got ${JSON.stringify(data)}`);
      this.counters.commands++;
      this.follower.setPositions(data as number[]);
      return;
    }
    const v = trajectoryViolations(m, { joints: p.joints, version: p.ros.version });
    if (v.length > 0) return this.reject(`JointTrajectory rejected: ${v.join("; ")}`);
    const msg = m as { joint_names: string[]; points: { positions: number[]; time_from_start: unknown }[] };
    const order = p.joints.map((j) => msg.joint_names.indexOf(j));
    this.counters.commands++;
    this.follower.setTrajectory(
      this.sched.now(),
      msg.points.map((pt) => Float64Array.from(order, (i) => pt.positions[i] as number)),
      msg.points.map((pt) => rosSeconds(p.ros.version, pt.time_from_start) as number),
    );
  }

  private reject(why: string): void {
    this.counters.rejected++;
    this.counters.lastRejection = why;
  }
}
