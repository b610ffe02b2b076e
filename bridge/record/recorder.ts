/**
 * Live recording of demonstrations over rosbridge into a LeRobot v3.0 dataset (`actionflow record`).
 *
 * The recorder subscribes (roslib) to the profile's joint states, its feature topics, the action
 * source of its `recording` section (a leader arm's `sensor_msgs/JointState`, the command topic, or
 * the follower's next state), its cameras (`sensor_msgs/Image`, resized to the profile's size and
 * stored as LeRobot video) and the `std_msgs/String` control topic. Every message is stamped with
 * its header stamp, or, for a message without one (or a zero stamp), its receive time mapped onto the
 * stamps' clock (the smallest receive-minus-stamp offset of the stamped messages seen lately; with
 * no stamped message, the receive clock itself). An episode runs from a `start` to a `stop`/`keep`
 * (or `quit`, or `maxEpisodeS`) on the frame grid `t0 + i / fps`; frame i is taken once the live edge
 * has passed its time by `max_age_s` (so late messages still count), with each topic's latest
 * message at or before it, if that message is at most `max_age_s` old. A frame where a topic has
 * nothing that fresh is not written: it is counted per topic and reported as a gap, never filled.
 * A video needs evenly spaced frames, so with cameras the frames after a gap start a new episode.
 * A kept episode is written durably (see {@link LeRobotWriter}'s `durable`), so a killed recording
 * keeps every finished episode, and `resume` appends to the dataset.
 */
import { Ros, Topic } from "roslib";
import type { ITransportFactory } from "roslib";
import { LeRobotWriter } from "../../datasets/lerobot/writer.ts";
import type { VideoCodec } from "../../datasets/video/ffmpeg.ts";
import type { RobotProfile } from "../profile.ts";
import {
  MSG,
  parseFloat32MultiArray,
  parseCameraMessage,
  parseJointCommand,
  parseJointState,
  resizeRgb,
  rosSeconds,
} from "../ros/protocol.ts";
import { HoldSeries, alignFrame, type Series } from "./align.ts";
import { recordingLayout, type RecordingLayout } from "./layout.ts";

/** What the control topic (or the terminal) can ask. */
export const RECORDER_COMMANDS = ["start", "stop", "keep", "discard", "quit"] as const;
export type RecorderCommand = (typeof RECORDER_COMMANDS)[number];

/** Options of {@link Recorder.open}. */
export interface RecorderOptions {
  profile: RobotProfile;
  /** Where the profile came from (for messages). */
  profileSource: string;
  /** rosbridge URL, e.g. `ws://127.0.0.1:9090`. */
  url: string;
  /** The dataset folder. */
  out: string;
  /** Frame rate, Hz; default the recording section's fps. */
  fps?: number;
  /** Stop once this many episodes are kept; default: until `quit`. */
  episodes?: number;
  /** The episodes' task string; default the recording section's task, else "demonstration". */
  task?: string;
  /** Append to an existing dataset in `out`. */
  resume?: boolean;
  /** Keep and end an episode after this many seconds. */
  maxEpisodeS?: number;
  /** Video codec of the cameras: "av1" (default, libsvtav1 as LeRobot) or "h264". */
  vcodec?: VideoCodec;
  /** Receive clock, seconds (default: the wall clock). */
  now?: () => number;
  transportFactory?: ITransportFactory;
  /** Reports what happened (connection, episodes, gaps, rejected messages). */
  onEvent?: (e: RecorderEvent) => void;
}

/** Something the recorder reports. */
export type RecorderEvent =
  | { kind: "connected"; url: string }
  | { kind: "disconnected"; retryInMs: number }
  | { kind: "started"; episode: number }
  | { kind: "kept"; episode: number; frames: number; seconds: number }
  | { kind: "discarded"; reason: string; frames: number }
  | { kind: "gap"; episode: number; fromS: number; toS: number; frames: number; late: string[] }
  | { kind: "rejected"; topic: string; error: string }
  | { kind: "ignored"; command: string; reason: string }
  | { kind: "error"; error: string };

/** Live state for the status line. */
export interface RecorderStatus {
  recording: boolean;
  /** Index (in the dataset) the current or next episode gets. */
  episode: number;
  /** Seconds into the current episode (0 when idle). */
  seconds: number;
  /** Frames of the current episode so far. */
  frames: number;
  kept: number;
  discarded: number;
  /** Messages per second over the last 2 s, by topic. */
  rates: Record<string, number>;
  connected: boolean;
}

/** What a finished recording wrote. */
export interface RecordResult {
  out: string;
  fps: number;
  /** Episodes in the dataset before this recording (resume). */
  resumedEpisodes: number;
  kept: number;
  discarded: number;
  /** Episodes in the dataset now, and their frames. */
  episodes: number;
  frames: number;
  /** Frames of the episodes kept by this recording. */
  framesRecorded: number;
  features: string[];
  /** Messages received per topic. */
  messages: Record<string, number>;
  /** Frames not written because a topic had nothing fresh, by topic. */
  lateFrames: Record<string, number>;
  gaps: { episode: number; fromS: number; toS: number; frames: number; late: string[] }[];
  /** Refused messages per topic, with the first error. */
  rejected: Record<string, { count: number; first: string }>;
  /** Data files of a killed earlier recording, not listed, removed on resume. */
  removedFiles: string[];
}

interface Episode {
  index: number;
  t0: number;
  /** Set by stop/keep/quit: the time of the last frame. */
  end?: number;
  /** Next grid frame to take. */
  next: number;
  rows: Record<string, Float32Array | Uint8Array>[];
  times: number[];
  gap?: { fromS: number; toS: number; frames: number; late: string[] };
}

/** A camera topic's frames (resized to the dataset's size) by stamp: the latest at or before a time. */
class ImageSeries {
  private readonly stamps: number[] = [];
  private readonly frames: Uint8Array[] = [];

  constructor(readonly name: string) {}

  push(stampS: number, rgb: Uint8Array): void {
    if (this.stamps.length > 0 && stampS < this.stamps[this.stamps.length - 1]!) return; // out of order
    this.stamps.push(stampS);
    this.frames.push(rgb);
  }

  at(tS: number): { rgb: Uint8Array; ageS: number } | undefined {
    for (let i = this.stamps.length - 1; i >= 0; i--)
      if (this.stamps[i]! <= tS) return { rgb: this.frames[i]!, ageS: tS - this.stamps[i]! };
    return undefined;
  }

  dropBefore(tS: number): void {
    let n = 0;
    while (n + 1 < this.stamps.length && this.stamps[n + 1]! <= tS) n++;
    this.stamps.splice(0, n);
    this.frames.splice(0, n);
  }
}

/**
 * Maps receive times onto the clock of the header stamps: the offset is the smallest
 * receive-minus-stamp difference (the least delayed message) over the current and the previous
 * 5 s window, so it follows a drifting clock.
 */
class StampClock {
  private windowStart = -Infinity;
  private current = Infinity;
  private previous = Infinity;

  /** Notes a stamped message (stamp and receive time, seconds). */
  observe(stampS: number, recvS: number): void {
    if (recvS - this.windowStart > 5) {
      this.previous = this.current;
      this.current = Infinity;
      this.windowStart = recvS;
    }
    this.current = Math.min(this.current, recvS - stampS);
  }

  /** A receive time on the stamps' clock (the receive clock itself before any stamped message). */
  toStamp(recvS: number): number {
    const offset = Math.min(this.current, this.previous);
    return recvS - (offset === Infinity ? 0 : offset);
  }
}

/** Records episodes from rosbridge; see the module comment. */
export class Recorder {
  private readonly ros: Ros;
  private readonly subs: Topic<unknown>[] = [];
  private readonly clock = new StampClock();
  private readonly series: Record<string, HoldSeries> = {};
  private readonly images = new Map<string, ImageSeries>();
  private readonly hasCameras: boolean;
  private readonly layout: RecordingLayout;
  private readonly fps: number;
  private readonly maxAgeS: number;
  private readonly task: string;
  private readonly now: () => number;
  private episode?: Episode;
  /** Dataset index of the next episode kept (counting those still being written). */
  private nextIndex: number;
  private finished?: Promise<RecordResult>;
  private commits: Promise<void> = Promise.resolve();
  private timer?: NodeJS.Timeout;
  private retryTimer?: NodeJS.Timeout;
  private retryMs = 100;
  private up = false;
  private closed = false;
  private quitting = false;
  private kept = 0;
  private discarded = 0;
  private framesRecorded = 0;
  private readonly messages: Record<string, number> = {};
  private readonly lateFrames: Record<string, number> = {};
  private readonly gaps: RecordResult["gaps"] = [];
  private readonly rejected: Record<string, { count: number; first: string }> = {};
  private readonly recent = new Map<string, number[]>();
  private resolveDone!: (r: RecordResult) => void;
  private rejectDone!: (e: Error) => void;
  /** Resolves when the recording ends (quit, or the episode count reached). */
  readonly done: Promise<RecordResult>;

  private constructor(
    private readonly opts: RecorderOptions,
    private readonly writer: LeRobotWriter,
  ) {
    const p = opts.profile;
    this.layout = recordingLayout(p);
    this.fps = opts.fps ?? p.recording?.fps ?? 30;
    this.maxAgeS = p.recording?.max_age_s ?? 1.5 / this.fps;
    this.task = opts.task ?? p.recording?.task ?? "demonstration";
    this.now = opts.now ?? (() => (performance.timeOrigin + performance.now()) / 1000);
    this.nextIndex = writer.episodeCount;
    this.done = new Promise((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.done.catch(() => {});
    this.ros = new Ros(opts.transportFactory ? { transportFactory: opts.transportFactory } : {});
    this.ros.on("connection", () => {
      this.up = true;
      this.retryMs = 100;
      this.opts.onEvent?.({ kind: "connected", url: opts.url });
    });
    this.ros.on("close", () => {
      const was = this.up;
      this.up = false;
      if (this.closed) return;
      const delay = this.retryMs;
      this.retryMs = Math.min(2000, this.retryMs * 2);
      if (was) this.opts.onEvent?.({ kind: "disconnected", retryInMs: delay });
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.connect(), delay);
    });
    this.ros.on("error", () => {});
    const L = this.layout;
    this.subscribe(L.stateTopic, MSG.jointState, (m) => parseJointState(m, p.joints), L.stateFeature);
    for (const f of p.features)
      this.subscribe(
        f.topic,
        MSG.float32MultiArray,
        (m) => parseFloat32MultiArray(m, f.size, `${f.topic} (${f.feature})`),
        f.feature,
      );
    this.hasCameras = p.cameras.length > 0;
    for (const c of p.cameras) this.subscribeCamera(c);
    const a = L.action;
    if (a.source === "leader")
      this.subscribe(a.topic, MSG.jointState, (m) => parseJointState(m, p.joints), L.actionFeature);
    if (a.source === "command") {
      const type = p.command_interface === "trajectory" ? MSG.jointTrajectory : MSG.float64MultiArray;
      this.subscribe(
        p.ros.command,
        type,
        (m) => {
          const r = parseJointCommand(m, p.joints, p.command_interface, 1 / p.control_rate_hz);
          return r.kind === "error" ? r : { kind: "ok", value: r.value.points[0] as Float64Array };
        },
        L.actionFeature,
      );
    }
    const control = new Topic<unknown>({ ros: this.ros, name: L.controlTopic, messageType: "std_msgs/String" });
    control.subscribe((m) => {
      const recv = this.now();
      this.count(L.controlTopic, recv);
      const data = typeof m === "object" && m !== null ? (m as { data?: unknown }).data : undefined;
      if (typeof data !== "string") return this.reject(L.controlTopic, `String: 'data' is not a string`);
      this.command(data.trim().toLowerCase(), this.clock.toStamp(recv));
    });
    this.subs.push(control);
  }

  /**
   * Opens (or, with `resume`, reopens) the dataset, connects and starts recording. Throws naming
   * the dataset on a mismatch (see {@link LeRobotWriter.resume}) or a non-empty `out` without resume.
   */
  static async open(opts: RecorderOptions): Promise<Recorder> {
    const layout = recordingLayout(opts.profile);
    const fps = opts.fps ?? opts.profile.recording?.fps ?? 30;
    const wopts = {
      fps,
      robotType: opts.profile.name,
      features: layout.features,
      durable: true,
      ...(opts.vcodec ? { vcodec: opts.vcodec } : {}),
    };
    let writer: LeRobotWriter;
    try {
      writer = opts.resume ? await LeRobotWriter.resume(opts.out, wopts) : await LeRobotWriter.create(opts.out, wopts);
    } catch (err) {
      const msg = (err as Error).message;
      throw new Error(/not empty/.test(msg) ? `${msg} (pass --resume to append to it)` : msg, { cause: err });
    }
    const r = new Recorder(opts, writer);
    r.connect();
    r.timer = setInterval(() => r.pump(), Math.max(5, 500 / fps));
    return r;
  }

  /** Episodes in the dataset before this recording started. */
  get resumedEpisodes(): number {
    return this.writer.resumed?.episodes ?? 0;
  }

  /** Applies a command as if it came from the control topic now (terminal keys). */
  request(cmd: string): void {
    this.command(cmd.trim().toLowerCase(), this.clock.toStamp(this.now()));
  }

  /** The live state, for the status line. */
  status(): RecorderStatus {
    const recv = this.now();
    const rates: Record<string, number> = {};
    for (const [topic, times] of this.recent) {
      while (times.length > 0 && (times[0] as number) < recv - 2) times.shift();
      rates[topic] = times.length / 2;
    }
    const ep = this.episode;
    return {
      recording: ep !== undefined && ep.end === undefined,
      episode: this.nextIndex,
      seconds: ep ? Math.max(0, this.clock.toStamp(recv) - ep.t0) : 0,
      frames: ep?.rows.length ?? 0,
      kept: this.kept,
      discarded: this.discarded,
      rates,
      connected: this.up,
    };
  }

  /** Stops at once: an episode still being recorded is discarded (use the `quit` command to keep it). */
  async close(): Promise<RecordResult> {
    if (this.episode) this.drop("recording closed");
    return this.finish();
  }

  private connect(): void {
    if (this.closed) return;
    this.ros.connect(this.opts.url).catch(() => {});
  }

  private subscribe(
    topic: string,
    type: string,
    parse: (m: unknown) => { kind: "ok"; value: ArrayLike<number> } | { kind: "error"; error: string },
    feature: string,
  ): void {
    const s = (this.series[feature] ??= new HoldSeries(topic));
    const t = new Topic<unknown>({ ros: this.ros, name: topic, messageType: type });
    const version = this.opts.profile.ros.version;
    t.subscribe((m) => {
      const recv = this.now();
      this.count(topic, recv);
      const r = parse(m);
      if (r.kind === "error") return this.reject(topic, r.error);
      const header = typeof m === "object" && m !== null ? (m as { header?: { stamp?: unknown } }).header : undefined;
      const stamp = header ? rosSeconds(version, header.stamp) : undefined;
      let t = this.clock.toStamp(recv);
      if (stamp !== undefined && stamp > 0) {
        this.clock.observe(stamp, recv);
        t = stamp;
      }
      s.push(t, r.value);
      // memory stays bounded: keep what the oldest frame not yet taken can still need
      s.dropBefore(this.clock.toStamp(recv) - 10 * this.maxAgeS - 1);
    });
    this.subs.push(t);
  }

  private subscribeCamera(c: RobotProfile["cameras"][number]): void {
    const s = new ImageSeries(c.topic);
    this.images.set(c.feature, s);
    const t = new Topic<unknown>({
      ros: this.ros,
      name: c.topic,
      messageType: c.transport === "compressed" ? MSG.compressedImage : MSG.image,
    });
    const version = this.opts.profile.ros.version;
    t.subscribe((m) => {
      const recv = this.now();
      this.count(c.topic, recv);
      const r = parseCameraMessage(m, c.transport, `${c.topic} (${c.feature})`);
      if (r.kind === "error") return this.reject(c.topic, r.error);
      const header = (m as { header?: { stamp?: unknown } }).header;
      const stamp = header ? rosSeconds(version, header.stamp) : undefined;
      let at = this.clock.toStamp(recv);
      if (stamp !== undefined && stamp > 0) {
        this.clock.observe(stamp, recv);
        at = stamp;
      }
      s.push(at, resizeRgb(r.value, c.width, c.height));
      s.dropBefore(this.clock.toStamp(recv) - 10 * this.maxAgeS - 1);
    });
    this.subs.push(t);
  }

  private count(topic: string, recv: number): void {
    this.messages[topic] = (this.messages[topic] ?? 0) + 1;
    let r = this.recent.get(topic);
    if (!r) this.recent.set(topic, (r = []));
    r.push(recv);
    if (r.length > 4096) r.shift();
  }

  private reject(topic: string, error: string): void {
    const r = (this.rejected[topic] ??= { count: 0, first: error });
    if (r.count === 0) this.opts.onEvent?.({ kind: "rejected", topic, error });
    r.count++;
  }

  private command(cmd: string, t: number): void {
    if (this.closed || this.quitting) return;
    const ep = this.episode;
    switch (cmd) {
      case "start":
        if (ep && ep.end === undefined)
          return this.opts.onEvent?.({ kind: "ignored", command: cmd, reason: "an episode is being recorded" });
        if (ep)
          return this.opts.onEvent?.({
            kind: "ignored",
            command: cmd,
            reason: "the last episode is still being saved",
          });
        this.episode = { index: this.nextIndex, t0: t, next: 0, rows: [], times: [] };
        this.opts.onEvent?.({ kind: "started", episode: this.nextIndex });
        return;
      case "stop":
      case "keep":
        if (!ep || ep.end !== undefined)
          return this.opts.onEvent?.({ kind: "ignored", command: cmd, reason: "no episode is being recorded" });
        ep.end = t;
        return;
      case "discard":
        if (!ep) return this.opts.onEvent?.({ kind: "ignored", command: cmd, reason: "no episode to discard" });
        this.drop("discard command");
        return;
      case "quit":
        this.quitting = true;
        if (ep && ep.end === undefined) ep.end = t;
        if (!ep) void this.finish();
        return;
      default:
        this.reject(this.layout.controlTopic, `unknown command '${cmd}' (commands: ${RECORDER_COMMANDS.join(", ")})`);
    }
  }

  private drop(reason: string): void {
    const ep = this.episode;
    if (!ep) return;
    this.episode = undefined;
    this.discarded++;
    this.opts.onEvent?.({ kind: "discarded", reason, frames: ep.rows.length });
  }

  /** Takes every grid frame the live edge has passed by max_age_s; ends an episode past its end. */
  private pump(): void {
    const ep = this.episode;
    if (!ep || this.closed) return;
    const live = this.clock.toStamp(this.now()) - this.maxAgeS;
    const maxS = this.opts.maxEpisodeS;
    if (maxS !== undefined && ep.end === undefined && live >= ep.t0 + maxS) ep.end = ep.t0 + maxS;
    const last = ep.end ?? Infinity;
    for (;;) {
      const t = ep.t0 + ep.next / this.fps;
      if (t > live || t > last + 1e-9) break;
      ep.next++;
      const f = this.frameAt(t);
      if (f.kind === "late") {
        for (const n of f.late) this.lateFrames[n] = (this.lateFrames[n] ?? 0) + 1;
        const g = (ep.gap ??= { fromS: t - ep.t0, toS: t - ep.t0, frames: 0, late: [] });
        g.toS = t - ep.t0;
        g.frames++;
        for (const n of f.late) if (!g.late.includes(n)) g.late.push(n);
        continue;
      }
      this.closeGap(ep);
      ep.rows.push(f.values);
      ep.times.push(t - ep.t0);
    }
    if (ep.end !== undefined && ep.t0 + ep.next / this.fps > last + 1e-9) {
      this.closeGap(ep);
      this.episode = undefined;
      this.commit(ep);
    }
  }

  /** Every topic's value at `t`, cameras included, or the late topics. */
  private frameAt(
    t: number,
  ): { kind: "frame"; values: Record<string, Float32Array | Uint8Array> } | { kind: "late"; late: string[] } {
    const f = alignFrame(this.series as Record<string, Series>, t, this.maxAgeS);
    const late = f.kind === "late" ? [...f.late] : [];
    const values: Record<string, Float32Array | Uint8Array> = f.kind === "frame" ? { ...f.values } : {};
    for (const [feature, s] of this.images) {
      const v = s.at(t);
      if (v === undefined || v.ageS > this.maxAgeS) late.push(s.name);
      else values[feature] = v.rgb;
    }
    return late.length > 0 ? { kind: "late", late } : { kind: "frame", values };
  }

  private closeGap(ep: Episode): void {
    if (!ep.gap) return;
    const g = { episode: ep.index, ...ep.gap };
    this.gaps.push(g);
    this.opts.onEvent?.({ kind: "gap", ...g });
    ep.gap = undefined;
  }

  /** Writes a finished episode (in order, one at a time); finishes when asked to. */
  private commit(ep: Episode): void {
    const L = this.layout;
    const nextState = L.action.source === "next_state";
    // a video needs evenly spaced frames: with cameras, frames after a gap go to a new episode
    const parts: number[][] = [[]];
    for (let i = 0; i < ep.rows.length; i++) {
      const cur = parts[parts.length - 1]!;
      const prev = cur[cur.length - 1];
      if (this.hasCameras && prev !== undefined && Math.round((ep.times[i]! - ep.times[prev]!) * this.fps) !== 1)
        parts.push([i]);
      else cur.push(i);
    }
    for (const part of parts) {
      const length = nextState ? part.length - 1 : part.length;
      if (length < 2) {
        if (part.length > 0 || parts.length === 1) {
          this.discarded++;
          this.opts.onEvent?.({ kind: "discarded", reason: "fewer than 2 frames", frames: part.length });
        }
        continue;
      }
      const frames: Record<string, Float32Array | Uint8Array> = {};
      for (const [key, f] of Object.entries(L.features)) {
        const w = f.shape.reduce((a, b) => a * b, 1);
        const out = f.dtype === "video" ? new Uint8Array(length * w) : new Float32Array(length * w);
        for (let i = 0; i < length; i++) {
          const r = part[i]!;
          const row = nextState && key === L.actionFeature ? ep.rows[r + 1]![L.stateFeature] : ep.rows[r]![key];
          out.set(row as Float32Array & Uint8Array, i * w);
        }
        frames[key] = out;
      }
      const t0 = ep.times[part[0]!]!;
      const timestamps = part.slice(0, length).map((r) => ep.times[r]! - t0);
      const index = this.nextIndex++;
      this.commits = this.commits.then(async () => {
        try {
          await this.writer.addEpisode({ task: this.task, frames, length, timestamps });
          this.kept++;
          this.framesRecorded += length;
          this.opts.onEvent?.({ kind: "kept", episode: index, frames: length, seconds: length / this.fps });
        } catch (err) {
          this.opts.onEvent?.({ kind: "error", error: (err as Error).message });
          this.fail(err as Error);
        }
      });
    }
    const enough = this.opts.episodes !== undefined && this.nextIndex - this.resumedEpisodes >= this.opts.episodes;
    if (this.quitting || enough) {
      this.quitting = true;
      void this.finish();
    }
  }

  private fail(err: Error): void {
    this.shutdown();
    this.rejectDone(err);
  }

  private shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.retryTimer);
    for (const s of this.subs) s.unsubscribe();
    this.ros.close();
  }

  private finish(): Promise<RecordResult> {
    this.finished ??= this.complete();
    return this.finished;
  }

  private async complete(): Promise<RecordResult> {
    this.shutdown();
    await this.commits;
    if (this.writer.episodeCount > 0) await this.writer.finish();
    const result: RecordResult = {
      out: this.opts.out,
      fps: this.fps,
      resumedEpisodes: this.resumedEpisodes,
      kept: this.kept,
      discarded: this.discarded,
      episodes: this.writer.episodeCount,
      frames: this.writer.frameCount,
      framesRecorded: this.framesRecorded,
      features: Object.keys(this.layout.features),
      messages: { ...this.messages },
      lateFrames: { ...this.lateFrames },
      gaps: [...this.gaps],
      rejected: { ...this.rejected },
      removedFiles: this.writer.resumed?.removedFiles ?? [],
    };
    this.resolveDone(result);
    return result;
  }
}
