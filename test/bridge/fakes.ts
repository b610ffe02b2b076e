/**
 * Test fakes for the control loop: a {@link RobotLink} that records what it would deliver and a
 * {@link ChunkPolicy} whose latency runs on the (fake or real) scheduler.
 */
import type { ChunkPolicy, ChunkRequest, Observation } from "../../policy/chunk-policy.ts";
import type { FeatureIO } from "../../policy/onnx/schema.ts";
import type { RobotProfile } from "../../bridge/profile.ts";
import { parseRobotProfile } from "../../bridge/profile.ts";
import type {
  FeatureSample,
  JointStateSample,
  LoopDiagnostics,
  RobotCommand,
  RobotLink,
  SendResult,
} from "../../bridge/robot-link.ts";
import type { Scheduler } from "../../bridge/scheduler.ts";

/** A link that keeps what it is given; `send` follows the RobotLink contract (drop, never queue). */
export class FakeLink implements RobotLink {
  connected = true;
  epoch = 1;
  estopRequest: string | undefined;
  state?: JointStateSample;
  readonly features = new Map<string, FeatureSample>();
  readonly sent: RobotCommand[] = [];
  readonly diags: LoopDiagnostics[] = [];
  dropped = 0;
  jointState(): JointStateSample | undefined {
    return this.state;
  }
  feature(name: string): FeatureSample | undefined {
    return this.features.get(name);
  }
  setState(positions: number[], atS: number): void {
    this.state = { positions: Float64Array.from(positions), atS, epoch: this.epoch };
  }
  send(cmd: RobotCommand): SendResult {
    if (!this.connected) {
      this.dropped++;
      return "dropped-disconnected";
    }
    if (cmd.epoch !== this.epoch) {
      this.dropped++;
      return "dropped-stale";
    }
    this.sent.push(cmd);
    return "sent";
  }
  diagnostics(d: LoopDiagnostics): void {
    this.diags.push(d);
  }
}

/** Options of {@link FakePolicy}. */
export interface FakePolicyOptions {
  horizon: number;
  actionDim: number;
  fps?: number;
  scheduler: Scheduler;
  /** Seconds each call takes on the scheduler's clock. */
  latencyS: number;
  /** The chunk for an observation; default: each action repeats the state plus (i + 1) * 0.01. */
  chunk?: (obs: Observation, call: number) => Float32Array;
}

/** A policy with scheduled latency; records the observations and requests it saw. */
export class FakePolicy implements ChunkPolicy {
  readonly horizon: number;
  readonly actionDim: number;
  readonly fps?: number;
  readonly calls: { obs: Observation; req?: ChunkRequest; atS: number }[] = [];
  constructor(private readonly opts: FakePolicyOptions) {
    this.horizon = opts.horizon;
    this.actionDim = opts.actionDim;
    if (opts.fps !== undefined) this.fps = opts.fps;
  }
  sampleChunk(obs: Observation, req?: ChunkRequest): Promise<Float32Array> {
    const call = this.calls.length;
    this.calls.push({ obs, ...(req ? { req } : {}), atS: this.opts.scheduler.now() });
    const out = this.opts.chunk ? this.opts.chunk(obs, call) : this.defaultChunk(obs);
    return new Promise((resolve) => {
      this.opts.scheduler.at(this.opts.scheduler.now() + this.opts.latencyS, () => resolve(out));
    });
  }
  reset(): void {}
  private defaultChunk(obs: Observation): Float32Array {
    const s = obs["observation.state"] as Float32Array;
    const out = new Float32Array(this.horizon * this.actionDim);
    for (let i = 0; i < this.horizon; i++)
      for (let a = 0; a < this.actionDim; a++) out[i * this.actionDim + a] = (s[a] ?? 0) + (i + 1) * 0.01;
    return out;
  }
}

/** A FakePolicy that declares `observation.state` [2] and the camera `observation.images.front` of `[height, width, 3]`. */
export class CameraPolicy extends FakePolicy {
  readonly features: FeatureIO[];
  constructor(opts: FakePolicyOptions, camera: { height: number; width: number }) {
    super(opts);
    const shape = [camera.height, camera.width, 3];
    this.features = [
      { name: "state", key: "observation.state", shape: [2], rawShape: [2] },
      { name: "front", key: "observation.images.front", shape, rawShape: shape, kind: "image" },
    ];
  }
}

/** A two-joint profile without limits (override any field). */
export function testProfile(over: Record<string, unknown> = {}): RobotProfile {
  return parseRobotProfile(
    {
      name: "test-arm",
      joints: ["a", "b"],
      ros: { version: 2, joint_states: "/joint_states", command: "/arm/joint_trajectory", estop: "/estop" },
      command_interface: "trajectory",
      control_rate_hz: 50,
      watchdog_timeout_s: 0.1,
      ramp_s: 0,
      ...over,
    },
    "test-profile",
  );
}
