/**
 * A {@link RobotLink} over rosbridge with roslib: subscribes the profile's `sensor_msgs/JointState`,
 * feature (`std_msgs/Float32MultiArray`), camera (`sensor_msgs/Image` or `CompressedImage`, decoded
 * and resized to the profile's size in a worker thread, {@link ImageDecoder}), e-stop and
 * intervention (`std_msgs/Bool`) and prompt (`std_msgs/String`) topics, publishes commands
 * (`trajectory_msgs/JointTrajectory` or `std_msgs/Float64MultiArray`) and diagnostics
 * (`diagnostic_msgs/DiagnosticArray`).
 *
 * roslib does not reconnect by itself and, while disconnected, queues every publish without bound
 * and flushes the queue on reconnect. This link reconnects with exponential backoff (calling
 * `connect` again from the `close` handler) and never hands roslib a command unless
 * `ros.isConnected` holds and the command was computed from a joint state of the current connection
 * epoch: a command that cannot go out now is dropped and counted, never queued.
 */
import { Ros, Topic } from "roslib";
import type { ITransportFactory } from "roslib";
import type { RobotProfile } from "../profile.ts";
import type {
  FeatureSample,
  HumanCommand,
  ImageSample,
  JointStateSample,
  LoopDiagnostics,
  RobotCommand,
  RobotLink,
  SendResult,
} from "../robot-link.ts";
import { commandGate, InputRejections, rejectReason } from "../robot-link.ts";
import type { RosVersion } from "./protocol.ts";
import { ImageDecoder } from "./image-decoder.ts";
import {
  MSG,
  diagnosticArray,
  float64MultiArray,
  jointTrajectory,
  parseBool,
  parseFloat32MultiArray,
  parseJointCommand,
  parseJointState,
} from "./protocol.ts";

/** Something the link wants reported (connection changes, rejected messages). */
export type RosLinkEvent =
  | { kind: "connected"; epoch: number; url: string }
  | { kind: "disconnected"; epoch: number; retryInMs: number }
  | { kind: "rejected"; topic: string; error: string }
  | { kind: "estop"; topic: string };

/** Options of {@link RosLink}. */
export interface RosLinkOptions {
  /** rosbridge URL, e.g. `ws://127.0.0.1:9090`. */
  url: string;
  profile: RobotProfile;
  /** Monotonic clock, seconds (the control loop's clock). */
  now: () => number;
  /** Reconnect backoff: first delay, cap (ms), growth factor; default 100 ms, 2000 ms, 2. */
  backoff?: { initialMs: number; maxMs: number; factor: number };
  /** roslib transport factory (default: roslib's, `ws` on Node 20). */
  transportFactory?: ITransportFactory;
  /**
   * Counts and reports refused messages (size, non-finite, missing joint; the loop adds stale
   * features); default: a silent one on `now`.
   */
  rejections?: InputRejections;
  /** Receives connection changes and rejected messages. */
  onEvent?: (e: RosLinkEvent) => void;
  /** Called with every command message handed to roslib and the command it came from (measurements). */
  onPublish?: (msg: Record<string, unknown>, cmd: RobotCommand) => void;
}

/** Counters of a {@link RosLink}. */
export interface RosLinkStats {
  connects: number;
  disconnects: number;
  sent: number;
  droppedDisconnected: number;
  droppedStale: number;
  rejected: Record<string, number>;
  /** The last rejection error per topic. */
  lastError: Record<string, string>;
}

/** The rosbridge link; create with {@link RosLink.open}, release with {@link RosLink.close}. */
export class RosLink implements RobotLink {
  readonly rejections: InputRejections;
  private readonly ros: Ros;
  private readonly version: RosVersion;
  private readonly command: Topic<Record<string, unknown>>;
  private readonly diag: Topic<Record<string, unknown>>;
  private readonly subs: Topic<unknown>[] = [];
  private state?: JointStateSample;
  private readonly features = new Map<string, FeatureSample>();
  private readonly images = new Map<string, ImageSample>();
  private readonly decoder?: ImageDecoder;
  private isUp = false;
  private epochN = 0;
  private closed = false;
  private retryMs: number;
  private retryTimer?: NodeJS.Timeout;
  private estop?: string;
  private person = false;
  /** The newest prompt received on the prompt topic and not yet taken. */
  private newPrompt?: string;
  private humanCommands: HumanCommand[] = [];
  /** The points of the last command sent, to tell its echo on the command topic from a person's. */
  private lastSent: readonly Float64Array[] = [];
  private readonly counters: RosLinkStats = {
    connects: 0,
    disconnects: 0,
    sent: 0,
    droppedDisconnected: 0,
    droppedStale: 0,
    rejected: {},
    lastError: {},
  };

  private constructor(private readonly opts: RosLinkOptions) {
    const p = opts.profile;
    this.version = p.ros.version;
    this.retryMs = opts.backoff?.initialMs ?? 100;
    this.rejections = opts.rejections ?? new InputRejections({ now: opts.now });
    this.ros = new Ros(opts.transportFactory ? { transportFactory: opts.transportFactory } : {});
    this.ros.on("connection", () => {
      this.isUp = true;
      this.epochN++;
      this.counters.connects++;
      this.retryMs = this.opts.backoff?.initialMs ?? 100;
      this.opts.onEvent?.({ kind: "connected", epoch: this.epochN, url: this.opts.url });
    });
    this.ros.on("close", () => {
      const was = this.isUp;
      this.isUp = false;
      if (was) this.counters.disconnects++;
      if (this.closed) return;
      const delay = this.retryMs;
      const b = this.opts.backoff ?? { initialMs: 100, maxMs: 2000, factor: 2 };
      this.retryMs = Math.min(b.maxMs, this.retryMs * b.factor);
      if (was) this.opts.onEvent?.({ kind: "disconnected", epoch: this.epochN, retryInMs: delay });
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.connect(), delay);
    });
    this.ros.on("error", () => {
      // the close event that follows schedules the retry
    });
    const js = new Topic<unknown>({
      ros: this.ros,
      name: p.ros.joint_states,
      messageType: MSG.jointState,
      queue_length: 1,
    });
    js.subscribe((m) => {
      const r = parseJointState(m, p.joints);
      if (r.kind === "error") return this.reject(p.ros.joint_states, r.error);
      this.rejections.accepted(p.ros.joint_states);
      this.state = { positions: r.value, atS: this.opts.now(), epoch: this.epochN };
    });
    this.subs.push(js);
    for (const f of p.features) {
      const t = new Topic<unknown>({
        ros: this.ros,
        name: f.topic,
        messageType: MSG.float32MultiArray,
        queue_length: 1,
      });
      t.subscribe((m) => {
        const r = parseFloat32MultiArray(m, f.size, `${f.topic} (${f.feature})`);
        if (r.kind === "error") return this.reject(f.topic, r.error);
        this.rejections.accepted(f.topic);
        this.features.set(f.feature, { values: r.value, atS: this.opts.now(), epoch: this.epochN });
      });
      this.subs.push(t);
    }
    if (p.cameras.length > 0) this.decoder = new ImageDecoder();
    for (const c of p.cameras) {
      const t = new Topic<unknown>({
        ros: this.ros,
        name: c.topic,
        messageType: c.transport === "compressed" ? MSG.compressedImage : MSG.image,
        queue_length: 1,
      });
      t.subscribe((m) => {
        // the age of an image counts from its arrival, decoding time included
        const atS = this.opts.now();
        const epoch = this.epochN;
        this.decoder?.submit(
          c.feature,
          { msg: m, transport: c.transport, what: `${c.topic} (${c.feature})`, width: c.width, height: c.height },
          (r) => {
            if (r.kind === "error") return this.reject(c.topic, r.error);
            const seen = this.images.get(c.feature);
            if (seen && seen.atS > atS) return;
            this.rejections.accepted(c.topic);
            this.images.set(c.feature, { ...r.value, atS, epoch });
          },
        );
      });
      this.subs.push(t);
    }
    const estopTopic = p.ros.estop;
    if (estopTopic !== undefined) {
      const t = new Topic<unknown>({ ros: this.ros, name: estopTopic, messageType: MSG.bool });
      t.subscribe((m) => {
        const r = parseBool(m, estopTopic);
        if (r.kind === "error") return this.reject(estopTopic, r.error);
        if (r.value && this.estop === undefined) {
          this.estop = `e-stop topic ${estopTopic}`;
          this.opts.onEvent?.({ kind: "estop", topic: estopTopic });
        }
      });
      this.subs.push(t);
    }
    const commandType = p.command_interface === "trajectory" ? MSG.jointTrajectory : MSG.float64MultiArray;
    const interventionTopic = p.ros.intervention;
    if (interventionTopic !== undefined) {
      const t = new Topic<unknown>({ ros: this.ros, name: interventionTopic, messageType: MSG.bool });
      t.subscribe((m) => {
        const r = parseBool(m, interventionTopic);
        if (r.kind === "error") return this.reject(interventionTopic, r.error);
        this.rejections.accepted(interventionTopic);
        this.person = r.value;
      });
      this.subs.push(t);
      // while a person has the robot, what arrives on the command topic is theirs (the loop is silent)
      const watch = new Topic<unknown>({ ros: this.ros, name: p.ros.command, messageType: commandType });
      watch.subscribe((m) => {
        if (!this.person) return;
        const r = parseJointCommand(m, p.joints, p.command_interface, 1 / p.control_rate_hz);
        if (r.kind === "error") return this.reject(p.ros.command, `person's command: ${r.error}`);
        if (samePoints(r.value.points, this.lastSent)) return; // our own stop message, echoed
        if (this.humanCommands.length >= 1024) this.humanCommands.shift();
        this.humanCommands.push({ ...r.value, atS: this.opts.now() });
      });
      this.subs.push(watch);
    }
    const promptTopic = p.ros.prompt;
    if (promptTopic !== undefined) {
      const t = new Topic<unknown>({ ros: this.ros, name: promptTopic, messageType: MSG.string });
      t.subscribe((m) => {
        const data = typeof m === "object" && m !== null ? (m as { data?: unknown }).data : undefined;
        if (typeof data !== "string" || data.trim() === "")
          return this.reject(promptTopic, `String: 'data' must be a non-empty string, got ${JSON.stringify(data)}`);
        this.rejections.accepted(promptTopic);
        this.newPrompt = data;
      });
      this.subs.push(t);
    }
    this.command = new Topic({
      ros: this.ros,
      name: p.ros.command,
      messageType: commandType,
      queue_size: 1,
    });
    this.diag = new Topic({ ros: this.ros, name: p.ros.diagnostics, messageType: MSG.diagnosticArray, queue_size: 1 });
  }

  /** Creates the link and starts connecting (returns at once; see {@link waitConnected}). */
  static open(opts: RosLinkOptions): RosLink {
    const link = new RosLink(opts);
    link.connect();
    return link;
  }

  /** Resolves once connected, rejects after `timeoutMs`. */
  async waitConnected(timeoutMs: number): Promise<void> {
    if (this.isUp) return;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        this.ros.off("connection", on);
        reject(new Error(`RosLink: no connection to ${this.opts.url} within ${timeoutMs} ms`));
      }, timeoutMs);
      const on = (): void => {
        clearTimeout(t);
        resolve();
      };
      this.ros.once("connection", on);
    });
  }

  get connected(): boolean {
    return this.isUp && this.ros.isConnected;
  }

  get epoch(): number {
    return this.epochN;
  }

  get estopRequest(): string | undefined {
    return this.estop;
  }

  get intervention(): boolean {
    return this.person;
  }

  takePrompt(): string | undefined {
    const p = this.newPrompt;
    this.newPrompt = undefined;
    return p;
  }

  takeHumanCommands(): HumanCommand[] {
    const out = this.humanCommands;
    this.humanCommands = [];
    return out;
  }

  jointState(): JointStateSample | undefined {
    return this.state;
  }

  feature(name: string): FeatureSample | undefined {
    return this.features.get(name);
  }

  image(feature: string): ImageSample | undefined {
    return this.images.get(feature);
  }

  send(cmd: RobotCommand): SendResult {
    const drop = commandGate(cmd, { connected: this.connected, epoch: this.epochN });
    if (drop === "dropped-disconnected") this.counters.droppedDisconnected++;
    if (drop === "dropped-stale") this.counters.droppedStale++;
    if (drop) return drop;
    const p = this.opts.profile;
    const points = cmd.kind === "positions" ? [cmd.positions] : cmd.points;
    const msg =
      p.command_interface === "trajectory"
        ? jointTrajectory(this.version, p.joints, points, cmd.dtS)
        : float64MultiArray(points[0] as Float64Array);
    this.command.publish(msg);
    if (p.ros.intervention !== undefined) this.lastSent = points.map((q) => Float64Array.from(q));
    this.counters.sent++;
    this.opts.onPublish?.(msg, cmd);
    return "sent";
  }

  diagnostics(d: LoopDiagnostics): void {
    if (!this.connected) return;
    this.diag.publish(
      diagnosticArray(this.version, {
        level: d.level,
        name: `actionflow: ${this.opts.profile.name}`,
        message: d.message,
        hardwareId: this.opts.profile.name,
        values: d.values,
      }),
    );
  }

  /** Counters since creation. */
  stats(): RosLinkStats {
    return structuredClone(this.counters);
  }

  /** Stops reconnecting, unsubscribes and closes the connection. */
  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    for (const t of this.subs) t.unsubscribe();
    this.ros.close();
    void this.decoder?.close();
  }

  private connect(): void {
    if (this.closed) return;
    this.ros.connect(this.opts.url).catch((err: unknown) => {
      this.reject("(connection)", `connect ${this.opts.url}: ${(err as Error).message}`);
    });
  }

  private reject(topic: string, error: string): void {
    this.counters.rejected[topic] = (this.counters.rejected[topic] ?? 0) + 1;
    this.counters.lastError[topic] = error;
    if (topic !== "(connection)") this.rejections.reject(topic, rejectReason(error), error);
    this.opts.onEvent?.({ kind: "rejected", topic, error });
  }
}

/** Whether two commands have the same points (to 1e-9). */
function samePoints(a: readonly Float64Array[], b: readonly Float64Array[]): boolean {
  return (
    a.length === b.length &&
    a.every((p, k) => {
      const q = b[k] as Float64Array;
      return p.length === q.length && p.every((v, i) => Math.abs(v - (q[i] as number)) <= 1e-9);
    })
  );
}
