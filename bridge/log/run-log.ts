/**
 * A run log in MCAP that Foxglove opens: the joint states and observation features received and
 * every command published as the ROS 2 messages (`ros2msg` schemas, `cdr` encoding), `/diagnostics`, every chunk the policy
 * returned (a `jsonschema` channel), safety and loop events as `foxglove.Log`, and metadata records
 * (the profile, the policy's metadata, the command line).
 *
 * Never delays a tick: the record methods copy what they are given into a bounded in-memory queue and
 * return; a full queue drops the record and counts it (never blocks). Serialization and file writes
 * happen off the tick, on a timer every `flushEveryS`, in batches separated by `setImmediate`, through
 * async file writes. The file is chunked: each chunk is written once it holds `chunkSize` bytes, so a
 * crash loses at most the chunk being built; the summary and index are written by {@link RunLog.close}.
 */
import { open as openFile, type FileHandle } from "node:fs/promises";
import { setImmediate as yieldTurn } from "node:timers/promises";
import { McapWriter, type IWritable } from "@mcap/core";
import { ros2humble } from "@foxglove/rosmsg-msgs-common";
import { stringify } from "@foxglove/rosmsg";
import { MessageWriter } from "@foxglove/rosmsg2-serialization";

type MessageDefinition = ConstructorParameters<typeof MessageWriter>[0][number];
import type { ChunkReport, LoopEvent } from "../loop.ts";
import type { RobotProfile } from "../profile.ts";
import type { JointStateSample, LoopDiagnostics, RobotCommand } from "../robot-link.ts";
import { MSG, diagnosticArray, float32MultiArray, float64MultiArray, jointTrajectory } from "../ros/protocol.ts";

/** Options of {@link RunLog.open}. */
export interface RunLogOptions {
  profile: RobotProfile;
  /** The policy's metadata (written as a metadata record, values as strings). */
  policyMeta?: Record<string, unknown>;
  /** The command line (a metadata record). */
  argv?: readonly string[];
  /** The loop's monotonic clock, seconds: record times are on it, mapped to wall time at open. */
  now: () => number;
  /** Records the queue holds before it drops; default 16384. */
  queueSize?: number;
  /** Seconds between drains of the queue into the file; default 0.2. */
  flushEveryS?: number;
  /** Bytes after which a chunk is closed and written (what a crash can lose at most); default 16 KiB. */
  chunkSize?: number;
  /** Longest stretch of serialization between two yields to the event loop, ms; default 0.1. */
  sliceMs?: number;
}

/** What a {@link RunLog} wrote. */
export interface RunLogResult {
  /** Messages and metadata records written. */
  records: number;
  /** Records dropped because the queue was full. */
  dropped: number;
  /** File size, bytes. */
  bytes: number;
  /** The first write or serialization failure, if any (the log stops writing at a write failure). */
  error?: string;
}

/** The channels' topics apart from the profile's. */
export const LOG_TOPICS = { chunks: "/actionflow/chunks", events: "/actionflow/events" } as const;

/** foxglove.Log levels. */
export const LOG_LEVEL = { debug: 1, info: 2, warning: 3, error: 4, fatal: 5 } as const;

type Item =
  | { k: "js"; atS: number; positions: number[] }
  | { k: "feat"; atS: number; feature: string; values: number[] }
  | { k: "person"; atS: number; active: boolean }
  | { k: "cmd"; atS: number; points: number[][]; dtS: number }
  | { k: "diag"; atS: number; d: LoopDiagnostics }
  | { k: "chunk"; atS: number; c: Omit<ChunkReport, "actions"> & { actions: number[][] } }
  | { k: "log"; atS: number; level: number; name: string; message: string };

const CHUNK_SCHEMA = {
  title: "actionflow.Chunk",
  description: "A chunk the policy returned, its latency, prefix and the loop's merge decision",
  type: "object",
  properties: {
    s0: { type: "integer", description: "step of the observation" },
    step: { type: "integer", description: "the loop's next step at arrival" },
    latency_s: { type: "number" },
    prefix_steps: { type: "integer" },
    from_rest: { type: "boolean" },
    decision: { type: "string" },
    actions: { type: "array", items: { type: "array", items: { type: "number" } } },
  },
} as const;

const FOXGLOVE_LOG_SCHEMA = {
  title: "foxglove.Log",
  description: "A log message",
  type: "object",
  properties: {
    timestamp: {
      type: "object",
      properties: { sec: { type: "integer", minimum: 0 }, nsec: { type: "integer", minimum: 0, maximum: 999999999 } },
    },
    level: { type: "integer", enum: [0, 1, 2, 3, 4, 5] },
    message: { type: "string" },
    name: { type: "string" },
    file: { type: "string" },
    line: { type: "integer", minimum: 0 },
  },
} as const;

/** The definitions of a ROS 2 message type: the type first, then every type it uses. */
export function ros2Definitions(type: string): MessageDefinition[] {
  const defs = ros2humble as Record<string, MessageDefinition>;
  const out: MessageDefinition[] = [];
  const seen = new Set<string>();
  const visit = (t: string): void => {
    if (seen.has(t)) return;
    seen.add(t);
    const d = defs[t];
    if (!d) throw new Error(`run log: no ROS 2 definition for ${t}`);
    out.push(d);
    for (const f of d.definitions) if (f.isComplex) visit(f.type);
  };
  visit(type);
  return out;
}

/** ROS 2 schema name of a ROS type name (`sensor_msgs/JointState` -> `sensor_msgs/msg/JointState`). */
function ros2Name(type: string): string {
  const [pkg, name] = type.split("/");
  return `${pkg}/msg/${name}`;
}

class FileWritable implements IWritable {
  private pos = 0n;
  constructor(private readonly fh: FileHandle) {}
  async write(buffer: Uint8Array): Promise<unknown> {
    let off = 0;
    while (off < buffer.length) {
      const { bytesWritten } = await this.fh.write(buffer, off, buffer.length - off);
      off += bytesWritten;
    }
    this.pos += BigInt(buffer.length);
    return undefined;
  }
  position(): bigint {
    return this.pos;
  }
}

/** The run log; see the module comment. Create with {@link RunLog.open}, finish with {@link RunLog.close}. */
export class RunLog {
  private queue: Item[] = [];
  private droppedN = 0;
  private recordsN = 0;
  private error?: string;
  private draining?: Promise<void>;
  private timer?: NodeJS.Timeout;
  private closed = false;
  private readonly cdr = new Map<string, MessageWriter>();
  private readonly wallOffsetS: number;
  private readonly cap: number;

  private constructor(
    private readonly fh: FileHandle,
    private readonly out: FileWritable,
    private readonly writer: McapWriter,
    private readonly channels: Record<Exclude<Item["k"], "feat" | "person">, number>,
    private readonly personChannel: number | undefined,
    private readonly featureChannels: ReadonlyMap<string, number>,
    private readonly opts: RunLogOptions,
  ) {
    this.wallOffsetS = Date.now() / 1000 - opts.now();
    this.cap = opts.queueSize ?? 16384;
    for (const t of [
      MSG.jointState,
      MSG.jointTrajectory,
      MSG.float64MultiArray,
      MSG.float32MultiArray,
      MSG.bool,
      MSG.diagnosticArray,
    ])
      this.cdr.set(t, new MessageWriter(ros2Definitions(t)));
    this.timer = setInterval(() => void this.drain(), (opts.flushEveryS ?? 0.2) * 1000);
    this.timer.unref();
  }

  /** Creates `path` (truncating it), writes the header, channels and metadata records. */
  static async open(path: string, opts: RunLogOptions): Promise<RunLog> {
    const fh = await openFile(path, "w");
    try {
      const out = new FileWritable(fh);
      const writer = new McapWriter({ writable: out, chunkSize: opts.chunkSize ?? 16 * 1024 });
      await writer.start({ profile: "ros2", library: "actionflow" });
      const p = opts.profile;
      const rosChannel = async (topic: string, type: string): Promise<number> => {
        const schemaId = await writer.registerSchema({
          name: ros2Name(type),
          encoding: "ros2msg",
          data: new TextEncoder().encode(stringify(ros2Definitions(type))),
        });
        return writer.registerChannel({ topic, schemaId, messageEncoding: "cdr", metadata: new Map() });
      };
      const jsonChannel = async (topic: string, schema: { title: string }): Promise<number> => {
        const schemaId = await writer.registerSchema({
          name: schema.title,
          encoding: "jsonschema",
          data: new TextEncoder().encode(JSON.stringify(schema)),
        });
        return writer.registerChannel({ topic, schemaId, messageEncoding: "json", metadata: new Map() });
      };
      const commandType = p.command_interface === "trajectory" ? MSG.jointTrajectory : MSG.float64MultiArray;
      const channels = {
        js: await rosChannel(p.ros.joint_states, MSG.jointState),
        cmd: await rosChannel(p.ros.command, commandType),
        diag: await rosChannel(p.ros.diagnostics, MSG.diagnosticArray),
        chunk: await jsonChannel(LOG_TOPICS.chunks, CHUNK_SCHEMA),
        log: await jsonChannel(LOG_TOPICS.events, FOXGLOVE_LOG_SCHEMA),
      };
      // one channel per observation feature topic, named as in the profile
      const featureChannels = new Map<string, number>();
      for (const f of p.features) featureChannels.set(f.feature, await rosChannel(f.topic, MSG.float32MultiArray));
      const personChannel =
        p.ros.intervention === undefined ? undefined : await rosChannel(p.ros.intervention, MSG.bool);
      const strings = (o: Record<string, unknown>): Map<string, string> =>
        new Map(Object.entries(o).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
      await writer.addMetadata({ name: "profile", metadata: strings(p as unknown as Record<string, unknown>) });
      await writer.addMetadata({ name: "policy", metadata: strings(opts.policyMeta ?? {}) });
      await writer.addMetadata({
        name: "command line",
        metadata: new Map([["argv", JSON.stringify(opts.argv ?? process.argv)]]),
      });
      const log = new RunLog(fh, out, writer, channels, personChannel, featureChannels, opts);
      log.recordsN += 3;
      return log;
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  /** A joint state received (positions in the profile's joint order). */
  jointState(s: JointStateSample): void {
    this.push({ k: "js", atS: s.atS, positions: Array.from(s.positions) });
  }

  /** The profile's observation features, each logged on its own topic. */
  get featureNames(): Iterable<string> {
    return this.featureChannels.keys();
  }

  /** An observation feature sample received (`feature` is the profile's feature name). */
  feature(feature: string, atS: number, values: ArrayLike<number>): void {
    if (!this.featureChannels.has(feature)) return;
    this.push({ k: "feat", atS, feature, values: Array.from(values) });
  }

  /**
   * A person took the robot over (`active`) or handed it back: a `std_msgs/Bool` on the profile's
   * intervention topic and an event line. Their commands are logged with {@link command}.
   */
  intervention(active: boolean, atS = this.opts.now()): void {
    if (this.personChannel !== undefined) this.push({ k: "person", atS, active });
    this.event(
      active ? "warning" : "info",
      active ? "intervention start" : "intervention end",
      active ? "a person has the robot" : "the policy has the robot again",
      atS,
    );
  }

  /** A command published (logged as the ROS message the link sent). */
  command(cmd: RobotCommand, atS = this.opts.now()): void {
    const points = cmd.kind === "positions" ? [Array.from(cmd.positions)] : cmd.points.map((p) => Array.from(p));
    this.push({ k: "cmd", atS, points, dtS: cmd.dtS });
  }

  /** Diagnostics published. */
  diagnostics(d: LoopDiagnostics, atS = this.opts.now()): void {
    this.push({ k: "diag", atS, d: { level: d.level, message: d.message, values: { ...d.values } } });
  }

  /** A chunk the policy returned and the loop's decision. */
  chunk(c: ChunkReport, actionDim: number, atS = this.opts.now()): void {
    const actions: number[][] = [];
    for (let i = 0; i + actionDim <= c.actions.length; i += actionDim)
      actions.push(Array.from(c.actions.subarray(i, i + actionDim)));
    this.push({ k: "chunk", atS, c: { ...c, actions } });
  }

  /** A `foxglove.Log` line on the events channel. */
  event(level: keyof typeof LOG_LEVEL, name: string, message: string, atS = this.opts.now()): void {
    this.push({ k: "log", atS, level: LOG_LEVEL[level], name, message });
  }

  /** A loop event as a `foxglove.Log` line (holds, overruns, dropped chunks, errors). */
  loopEvent(e: LoopEvent, atS = this.opts.now()): void {
    const { kind, ...rest } = e;
    const level =
      kind === "loop-error" || kind === "infer-error"
        ? "error"
        : kind === "resync" || kind === "rtc-recovered"
          ? "info"
          : "warning";
    this.event(level, `loop ${kind}`, JSON.stringify(rest), atS);
  }

  /** Counters so far. */
  stats(): RunLogResult {
    const r: RunLogResult = { records: this.recordsN, dropped: this.droppedN, bytes: Number(this.out.position()) };
    if (this.error !== undefined) r.error = this.error;
    return r;
  }

  /** Writes what is queued, the last chunk, the summary and index, and closes the file. */
  async close(): Promise<RunLogResult> {
    if (this.closed) return this.stats();
    this.closed = true;
    clearInterval(this.timer);
    await this.drain();
    await this.draining;
    if (this.error === undefined || !this.error.startsWith("write"))
      try {
        await this.writer.end();
      } catch (err) {
        this.error ??= `write: ${(err as Error).message}`;
      }
    await this.fh.close();
    return this.stats();
  }

  private push(item: Item): void {
    if (this.closed) return;
    if (this.queue.length >= this.cap) {
      this.droppedN++;
      return;
    }
    this.queue.push(item);
  }

  /**
   * Moves the queue into the file in slices of at most `sliceMs` of work (default 0.1 ms), yielding
   * to the event loop between slices so that a tick's timer is never held up by more than one slice.
   */
  private drain(): Promise<void> {
    if (this.draining) return this.draining;
    const sliceMs = this.opts.sliceMs ?? 0.1;
    const run = async (): Promise<void> => {
      let sliceStart = performance.now();
      while (this.queue.length > 0) {
        const item = this.queue.shift() as Item;
        if (this.error?.startsWith("write")) return;
        let data: Uint8Array | undefined;
        try {
          data = this.encode(item);
        } catch (err) {
          this.error ??= `serialize ${item.k}: ${(err as Error).message}`;
        }
        if (data !== undefined) {
          const t = BigInt(Math.round((this.wallOffsetS + item.atS) * 1e9));
          try {
            await this.writer.addMessage({
              channelId:
                item.k === "feat"
                  ? (this.featureChannels.get(item.feature) as number)
                  : item.k === "person"
                    ? (this.personChannel as number)
                    : this.channels[item.k],
              sequence: this.recordsN,
              logTime: t,
              publishTime: t,
              data,
            });
            this.recordsN++;
          } catch (err) {
            this.error ??= `write: ${(err as Error).message}`;
            return;
          }
        }
        if (performance.now() - sliceStart >= sliceMs) {
          await yieldTurn();
          sliceStart = performance.now();
        }
      }
    };
    this.draining = run().finally(() => {
      this.draining = undefined;
    });
    return this.draining;
  }

  private encode(item: Item): Uint8Array {
    const p = this.opts.profile;
    const wall = this.wallOffsetS + item.atS;
    const stamp = { sec: Math.floor(wall), nanosec: Math.round((wall - Math.floor(wall)) * 1e9) % 1e9 };
    const cdr = (type: string, msg: unknown): Uint8Array => (this.cdr.get(type) as MessageWriter).writeMessage(msg);
    switch (item.k) {
      case "js":
        return cdr(MSG.jointState, {
          header: { stamp, frame_id: "" },
          name: [...p.joints],
          position: item.positions,
          velocity: [],
          effort: [],
        });
      case "feat":
        return cdr(MSG.float32MultiArray, float32MultiArray(item.values));
      case "person":
        return cdr(MSG.bool, { data: item.active });
      case "cmd":
        // the conversion the ROS link publishes, in the ROS 2 layout
        return p.command_interface === "trajectory"
          ? cdr(MSG.jointTrajectory, jointTrajectory(2, p.joints, item.points, item.dtS))
          : cdr(MSG.float64MultiArray, float64MultiArray(item.points[0] as number[]));
      case "diag":
        return cdr(
          MSG.diagnosticArray,
          diagnosticArray(2, {
            level: item.d.level,
            name: `actionflow: ${p.name}`,
            message: item.d.message,
            hardwareId: p.name,
            values: item.d.values,
          }),
        );
      case "chunk": {
        const c = item.c;
        return json({
          s0: c.s0,
          step: c.step,
          latency_s: c.latencyS,
          prefix_steps: c.prefixSteps,
          from_rest: c.fromRest,
          decision: c.decision,
          actions: c.actions,
        });
      }
      case "log":
        return json({
          timestamp: { sec: stamp.sec, nsec: stamp.nanosec },
          level: item.level,
          message: item.message,
          name: item.name,
          file: "",
          line: 0,
        });
    }
  }
}

function json(v: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(v));
}
