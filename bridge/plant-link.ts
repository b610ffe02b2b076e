/**
 * A {@link RobotLink} straight to an in-process {@link Plant} (`sim run --via direct`): the plant
 * is stepped in real time at its own period on the loop's scheduler, its joint state and features
 * are sampled after every step, and commands are executed as the profile's controller would
 * (`trajectory`: a {@link TrajectoryFollower} trajectory, a single target reached in one control
 * period; `forward`: the target at once). Same contract as the ROS link: a command is dropped,
 * never queued, while "disconnected" or when computed from another epoch's state. Camera images
 * (the plant's `images`, for the profile's cameras) are taken from the latest step when asked for,
 * resized to the profile's size as the ROS link resizes them.
 */
import type { Plant } from "./plant.ts";
import { TrajectoryFollower } from "./plant.ts";
import type { RobotProfile } from "./profile.ts";
import type {
  FeatureSample,
  ImageSample,
  JointStateSample,
  LoopDiagnostics,
  RobotCommand,
  RobotLink,
  SendResult,
} from "./robot-link.ts";
import { commandGate, InputRejections } from "./robot-link.ts";
import type { Scheduler } from "./scheduler.ts";
import { resizeRgb } from "./ros/protocol.ts";

/** Options of {@link PlantLink}. */
export interface PlantLinkOptions {
  plant: Plant;
  profile: RobotProfile;
  /** The loop's scheduler (the plant runs on the same clock). */
  scheduler: Scheduler;
  /** Counts and reports samples refused as a ROS link would refuse them; default: a silent one. */
  rejections?: InputRejections;
}

/** The in-process link; {@link start} before the loop, {@link stop} after it. */
export class PlantLink implements RobotLink {
  readonly estopRequest: string | undefined = undefined;
  readonly rejections: InputRejections;
  /** The last diagnostics the loop published. */
  lastDiagnostics?: LoopDiagnostics;
  private readonly follower: TrajectoryFollower;
  private state?: JointStateSample;
  private readonly feats = new Map<string, FeatureSample>();
  /** Images of the latest sampled step, by feature (taken from the plant on first use). */
  private readonly imgs = new Map<string, ImageSample>();
  /** Time of the latest sample (undefined before the first). */
  private sampledAtS?: number;
  private up = false;
  private epochN = 0;
  private cancel?: () => void;
  private startS = 0;
  private k = 0;
  private counters = { steps: 0, commands: 0, dropped: 0, missedSteps: 0 };

  constructor(private readonly opts: PlantLinkOptions) {
    const q = opts.plant.positions();
    if (q.length !== opts.profile.joints.length)
      throw new Error(
        `PlantLink: plant has ${q.length} joints, profile '${opts.profile.name}' ${opts.profile.joints.length}`,
      );
    this.follower = new TrajectoryFollower(q);
    this.rejections = opts.rejections ?? new InputRejections({ now: () => opts.scheduler.now() });
  }

  get connected(): boolean {
    return this.up;
  }

  get epoch(): number {
    return this.epochN;
  }

  /** Starts stepping the plant ("connects": a new epoch). */
  start(): void {
    this.up = true;
    this.epochN++;
    this.startS = this.opts.scheduler.now();
    this.k = 0;
    this.sample(this.startS);
    this.cancel = this.opts.scheduler.at(this.startS + this.opts.plant.dtS, () => this.tick());
  }

  /** Stops stepping; returns the counters. */
  stop(): { steps: number; commands: number; dropped: number; missedSteps: number } {
    this.up = false;
    this.cancel?.();
    return { ...this.counters };
  }

  jointState(): JointStateSample | undefined {
    return this.state;
  }

  feature(name: string): FeatureSample | undefined {
    return this.feats.get(name);
  }

  image(feature: string): ImageSample | undefined {
    const cached = this.imgs.get(feature);
    if (this.sampledAtS === undefined) return undefined;
    if (cached && cached.atS === this.sampledAtS && cached.epoch === this.epochN) return cached;
    const cam = this.opts.profile.cameras.find((c) => c.feature === feature);
    const img = cam ? this.opts.plant.images?.()[feature] : undefined;
    if (!cam || !img) return cached;
    if (img.rgb.length !== img.width * img.height * 3) {
      this.rejections.reject(
        cam.topic,
        "size",
        `${cam.topic} (${feature}): ${img.rgb.length} bytes for a ${img.width}x${img.height} RGB image`,
      );
      return cached;
    }
    this.rejections.accepted(cam.topic);
    const s: ImageSample = {
      width: cam.width,
      height: cam.height,
      rgb: resizeRgb(img, cam.width, cam.height),
      atS: this.sampledAtS,
      epoch: this.epochN,
    };
    this.imgs.set(feature, s);
    return s;
  }

  send(cmd: RobotCommand): SendResult {
    const drop = commandGate(cmd, { connected: this.up, epoch: this.epochN });
    if (drop) {
      this.counters.dropped++;
      return drop;
    }
    this.counters.commands++;
    const now = this.opts.scheduler.now();
    const points = cmd.kind === "positions" ? [cmd.positions] : cmd.points;
    if (this.opts.profile.command_interface === "forward") this.follower.setPositions(points[0] as Float64Array);
    else
      this.follower.setTrajectory(
        now,
        points,
        points.map((_, i) => (i + 1) * cmd.dtS),
      );
    return "sent";
  }

  diagnostics(d: LoopDiagnostics): void {
    this.lastDiagnostics = d;
  }

  private tick(): void {
    if (!this.up) return;
    const s = this.opts.scheduler;
    const dt = this.opts.plant.dtS;
    this.opts.plant.step(this.follower.referenceAt(s.now()));
    this.counters.steps++;
    this.sample(s.now());
    this.k++;
    const behind = s.now() - (this.startS + (this.k + 1) * dt);
    if (behind > 0) {
      const late = Math.floor(behind / dt) + 1;
      this.counters.missedSteps += late;
      this.k += late;
    }
    this.cancel = s.at(this.startS + (this.k + 1) * dt, () => this.tick());
  }

  /** Samples the plant, refusing what a ROS link would refuse: a non-finite position, a feature of the wrong size or non-finite. */
  private sample(now: number): void {
    const p = this.opts.profile;
    this.sampledAtS = now;
    const positions = Float64Array.from(this.opts.plant.positions());
    const bad = positions.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0)
      this.rejections.reject(
        p.ros.joint_states,
        "non-finite",
        `JointState.position of joint '${p.joints[bad]}': expected a finite number, got ${positions[bad]}`,
      );
    else {
      this.rejections.accepted(p.ros.joint_states);
      this.state = { positions, atS: now, epoch: this.epochN };
    }
    const f = this.opts.plant.features();
    for (const spec of p.features) {
      const values = f[spec.feature];
      if (values === undefined) continue;
      const what = `${spec.topic} (${spec.feature})`;
      if (values.length !== spec.size) {
        this.rejections.reject(spec.topic, "size", `${what}.data: expected ${spec.size} values, got ${values.length}`);
        continue;
      }
      const i = Array.from(values).findIndex((v) => !Number.isFinite(v));
      if (i >= 0) {
        this.rejections.reject(
          spec.topic,
          "non-finite",
          `${what}.data[${i}]: expected a finite number, got ${values[i]}`,
        );
        continue;
      }
      this.rejections.accepted(spec.topic);
      this.feats.set(spec.feature, { values: Float32Array.from(values), atS: now, epoch: this.epochN });
    }
  }
}
