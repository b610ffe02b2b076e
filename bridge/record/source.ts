/**
 * Where `dataset convert` reads a recording from: one file's topics, with their message types, and
 * its messages in log-time order, decoded on demand into the layout rosbridge delivers for the
 * recording's ROS version (plain arrays; time `{sec, nanosec}` on ROS 2, `{secs, nsecs}` on ROS 1),
 * so the parsers of `../ros/protocol.ts` read them. One adapter per container: MCAP
 * (`convert-mcap.ts`), ROS 1 bags (`bag-source.ts`).
 */

/** One recorded message. */
export interface RecordedMessage {
  topic: string;
  /** When the recorder received it (the MCAP log time, the bag's record time), seconds. */
  logTimeS: number;
  /** The message as rosbridge delivers it; throws when its bytes do not decode. */
  decode(): Record<string, unknown>;
}

/** A recording opened for reading. */
export interface MessageSource {
  /** The file, for error messages. */
  readonly file: string;
  /** `mcap` (ROS 2 bag or run log) or `bag` (ROS 1). */
  readonly format: "mcap" | "bag";
  /** Every topic of the file and its message type, `pkg/Type` (ROS 2's `pkg/msg/Type` shortened). */
  readonly topics: ReadonlyMap<string, string>;
  /** The messages on `topics`, in log-time order (read once). */
  messages(topics: ReadonlySet<string>): AsyncIterable<RecordedMessage>;
  /** Releases the file; call once done, read or not. */
  close(): Promise<void>;
}

/** `pkg/Type` of a ROS 1 or ROS 2 type name (`sensor_msgs/msg/JointState` -> `sensor_msgs/JointState`). */
export function shortTypeName(type: string): string {
  return type.replace(/\/msg\//, "/");
}

/** Typed arrays (as the ROS readers return them) to plain arrays, as rosbridge delivers messages. */
export function plain(v: unknown): unknown {
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v as unknown as ArrayLike<number>);
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === "object" && v !== null)
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, plain(x)]));
  return v;
}
