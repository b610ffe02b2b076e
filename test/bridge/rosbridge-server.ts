/**
 * A rosbridge v2 server for tests, with no ROS install: a real `ws` WebSocket server on 127.0.0.1
 * speaking rosbridge's JSON ops (`advertise`, `unadvertise`, `publish`, `subscribe`, `unsubscribe`,
 * `call_service` for `/rosapi/topic_type`), routing messages between its clients, and standing in
 * for the ROS graph behind it: every published message is converted as rosbridge converts it
 * (missing fields filled with defaults; an unknown field, a wrong type or a non-finite number is an
 * error that only shows in the log, as rosbridge sends no `status` op for it) and recorded as the
 * ROS node on that topic would receive it.
 *
 * Dialects: ROS 1 (type names `pkg/Type` only, time `{secs, nsecs}`, Header with `seq`) and ROS 2
 * (`pkg/Type` or `pkg/msg/Type`, time `{sec, nanosec}`, no `seq`).
 *
 * The server can be stopped and started again on the same port ({@link TestRosbridge.stop},
 * {@link TestRosbridge.start}); the ROS side (recordings, topic types, node subscriptions) persists,
 * as the ROS graph outlives a rosbridge restart.
 */
import { WebSocketServer } from "ws";
import type { WebSocket } from "ws";
import type { AddressInfo } from "node:net";

/** ROS 1 or ROS 2 conventions. */
export type RosDialect = 1 | 2;

/** One message as a ROS node on the topic received it. */
export interface DeliveredMessage {
  topic: string;
  /** Canonical `pkg/Type`. */
  type: string;
  /** The converted message (defaults filled in). */
  msg: Record<string, unknown>;
  /** Which client published it (-1: the ROS side, via {@link TestRosbridge.publishFromRos}). */
  client: number;
  /** How many times the server had been started when it arrived (1 for the first run). */
  run: number;
  /** `performance.now()` at arrival, ms. */
  atMs: number;
}

type Field = string; // "float64", "float64[]", "time", "duration", or a message type (optionally "[]")

const MSGS: Record<string, Record<string, Field>> = {
  "std_msgs/Header": { seq: "uint32", stamp: "time", frame_id: "string" },
  "std_msgs/Bool": { data: "bool" },
  "std_msgs/MultiArrayDimension": { label: "string", size: "uint32", stride: "uint32" },
  "std_msgs/MultiArrayLayout": { dim: "std_msgs/MultiArrayDimension[]", data_offset: "uint32" },
  "std_msgs/Float64MultiArray": { layout: "std_msgs/MultiArrayLayout", data: "float64[]" },
  "std_msgs/Float32MultiArray": { layout: "std_msgs/MultiArrayLayout", data: "float32[]" },
  "sensor_msgs/JointState": {
    header: "std_msgs/Header",
    name: "string[]",
    position: "float64[]",
    velocity: "float64[]",
    effort: "float64[]",
  },
  "trajectory_msgs/JointTrajectoryPoint": {
    positions: "float64[]",
    velocities: "float64[]",
    accelerations: "float64[]",
    effort: "float64[]",
    time_from_start: "duration",
  },
  "trajectory_msgs/JointTrajectory": {
    header: "std_msgs/Header",
    joint_names: "string[]",
    points: "trajectory_msgs/JointTrajectoryPoint[]",
  },
  "sensor_msgs/Image": {
    header: "std_msgs/Header",
    height: "uint32",
    width: "uint32",
    encoding: "string",
    is_bigendian: "uint8",
    step: "uint32",
    data: "uint8[]",
  },
  "sensor_msgs/CompressedImage": { header: "std_msgs/Header", format: "string", data: "uint8[]" },
  "diagnostic_msgs/KeyValue": { key: "string", value: "string" },
  "diagnostic_msgs/DiagnosticStatus": {
    level: "byte",
    name: "string",
    message: "string",
    hardware_id: "string",
    values: "diagnostic_msgs/KeyValue[]",
  },
  "diagnostic_msgs/DiagnosticArray": { header: "std_msgs/Header", status: "diagnostic_msgs/DiagnosticStatus[]" },
};

class ConversionError extends Error {}

/** Options of {@link TestRosbridge.create}. */
export interface TestRosbridgeOptions {
  /** ROS dialect; default 2. */
  dialect?: RosDialect;
  /** Port; 0 (default) picks a free one. */
  port?: number;
}

interface Client {
  id: number;
  ws: WebSocket;
  subs: Set<string>;
  pubs: Set<string>;
}

/** The test rosbridge server; see the module comment. */
export class TestRosbridge {
  /** Messages as ROS nodes received them, in arrival order. */
  readonly delivered: DeliveredMessage[] = [];
  /** What rosbridge would have logged (conversion errors, type conflicts, bad ops). */
  readonly errors: string[] = [];
  /** Raw ops received from clients, for protocol assertions. */
  readonly ops: { client: number; op: string; topic?: string }[] = [];
  private wss?: WebSocketServer;
  private readonly clients = new Set<Client>();
  private readonly topicTypes = new Map<string, string>();
  private readonly rosHandlers = new Map<string, ((msg: Record<string, unknown>) => void)[]>();
  private nextClient = 0;
  private runs = 0;
  private port: number;
  readonly dialect: RosDialect;

  private constructor(opts: TestRosbridgeOptions) {
    this.dialect = opts.dialect ?? 2;
    this.port = opts.port ?? 0;
  }

  /** Creates and starts a server on 127.0.0.1. */
  static async create(opts: TestRosbridgeOptions = {}): Promise<TestRosbridge> {
    const s = new TestRosbridge(opts);
    await s.start();
    return s;
  }

  /** `ws://127.0.0.1:<port>`. */
  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** Number of connected clients. */
  get clientCount(): number {
    return this.clients.size;
  }

  /** How many times the server has been started. */
  get run(): number {
    return this.runs;
  }

  /** Starts listening (again, on the same port after {@link stop}). */
  async start(): Promise<void> {
    if (this.wss) throw new Error("TestRosbridge.start: already running");
    const wss = new WebSocketServer({ host: "127.0.0.1", port: this.port });
    await new Promise<void>((resolve, reject) => {
      wss.once("listening", resolve);
      wss.once("error", reject);
    });
    this.port = (wss.address() as AddressInfo).port;
    this.wss = wss;
    this.runs++;
    wss.on("connection", (ws) => this.accept(ws));
  }

  /** Drops every client connection and stops listening (the ROS side is kept). */
  async stop(): Promise<void> {
    const wss = this.wss;
    if (!wss) return;
    this.wss = undefined;
    for (const c of this.clients) c.ws.terminate();
    this.clients.clear();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  }

  /** Declares a topic's type on the ROS side (as a ROS node advertising it would). */
  declareTopic(topic: string, type: string): void {
    this.topicTypes.set(topic, this.canonicalType(type));
  }

  /** Publishes from the ROS side (a ROS node): converted, recorded and routed to subscribed clients. */
  publishFromRos(topic: string, type: string, msg: unknown): void {
    this.declareTopic(topic, type);
    this.route(-1, topic, msg);
  }

  /** Calls `fn` with every message a ROS node subscribed to `topic` receives. */
  onRosMessage(topic: string, fn: (msg: Record<string, unknown>) => void): void {
    const list = this.rosHandlers.get(topic) ?? [];
    list.push(fn);
    this.rosHandlers.set(topic, list);
  }

  /** Delivered messages on `topic`. */
  received(topic: string): DeliveredMessage[] {
    return this.delivered.filter((d) => d.topic === topic);
  }

  private accept(ws: WebSocket): void {
    const client: Client = { id: this.nextClient++, ws, subs: new Set(), pubs: new Set() };
    this.clients.add(client);
    ws.on("message", (data, isBinary) => {
      if (isBinary) {
        this.errors.push(`client ${client.id}: binary frame (only JSON is supported)`);
        return;
      }
      let value: unknown;
      try {
        value = JSON.parse(String(data));
      } catch {
        this.errors.push(`client ${client.id}: invalid JSON`);
        return;
      }
      this.handle(client, value);
    });
    ws.on("close", () => this.clients.delete(client));
    ws.on("error", () => this.clients.delete(client));
  }

  private handle(client: Client, value: unknown): void {
    if (typeof value !== "object" || value === null || typeof (value as { op?: unknown }).op !== "string") {
      this.errors.push(`client ${client.id}: message without an op`);
      return;
    }
    const m = value as Record<string, unknown>;
    const op = m.op as string;
    const topic = typeof m.topic === "string" ? m.topic : undefined;
    this.ops.push({ client: client.id, op, ...(topic !== undefined ? { topic } : {}) });
    switch (op) {
      case "advertise": {
        if (topic === undefined || typeof m.type !== "string") return this.bad(client, op, "needs topic and type");
        let type: string;
        try {
          type = this.canonicalType(m.type);
        } catch (err) {
          return this.bad(client, op, (err as Error).message);
        }
        const known = this.topicTypes.get(topic);
        if (known !== undefined && known !== type)
          return this.bad(client, op, `TypeConflictException: ${topic} already has type ${known}, not ${type}`);
        this.topicTypes.set(topic, type);
        client.pubs.add(topic);
        return;
      }
      case "unadvertise":
        if (topic === undefined) return this.bad(client, op, "needs topic");
        client.pubs.delete(topic);
        return;
      case "subscribe": {
        if (topic === undefined) return this.bad(client, op, "needs topic");
        if (typeof m.type === "string") {
          let type: string;
          try {
            type = this.canonicalType(m.type);
          } catch (err) {
            return this.bad(client, op, (err as Error).message);
          }
          const known = this.topicTypes.get(topic);
          if (known !== undefined && known !== type)
            return this.bad(client, op, `TypeConflictException: ${topic} has type ${known}, not ${type}`);
          this.topicTypes.set(topic, type);
        }
        client.subs.add(topic);
        return;
      }
      case "unsubscribe":
        if (topic === undefined) return this.bad(client, op, "needs topic");
        client.subs.delete(topic);
        return;
      case "publish":
        if (topic === undefined) return this.bad(client, op, "needs topic");
        if (!client.pubs.has(topic) && !this.topicTypes.has(topic))
          return this.bad(client, op, `Cannot infer topic type for topic ${topic} as it is not yet advertised`);
        this.route(client.id, topic, m.msg);
        return;
      case "call_service":
        return this.callService(client, m);
      default:
        return this.bad(client, op, "unsupported op");
    }
  }

  private callService(client: Client, m: Record<string, unknown>): void {
    const id = typeof m.id === "string" ? m.id : undefined;
    const service = typeof m.service === "string" ? m.service : "";
    const reply = (result: boolean, values: unknown): void => {
      client.ws.send(JSON.stringify({ op: "service_response", ...(id ? { id } : {}), service, result, values }));
    };
    if (service.replace(/^\//, "") === "rosapi/topic_type") {
      const args = m.args as { topic?: unknown } | undefined;
      const t = typeof args?.topic === "string" ? this.topicTypes.get(args.topic) : undefined;
      reply(true, { type: t ?? "" });
      return;
    }
    reply(false, `Service ${service} does not exist`);
  }

  private bad(client: Client, op: string, why: string): void {
    this.errors.push(`client ${client.id}: ${op}: ${why}`);
  }

  private route(from: number, topic: string, raw: unknown): void {
    const type = this.topicTypes.get(topic) as string;
    let msg: Record<string, unknown>;
    try {
      msg = MSGS[type] ? (this.convert(raw, type, "msg") as Record<string, unknown>) : (raw as Record<string, unknown>);
    } catch (err) {
      this.errors.push(`${from < 0 ? "ros" : `client ${from}`}: publish ${topic} [${type}]: ${(err as Error).message}`);
      return;
    }
    this.delivered.push({ topic, type, msg, client: from, run: this.runs, atMs: performance.now() });
    for (const fn of this.rosHandlers.get(topic) ?? []) fn(msg);
    const text = JSON.stringify({ op: "publish", topic, msg });
    for (const c of this.clients) if (c.subs.has(topic) && c.ws.readyState === c.ws.OPEN) c.ws.send(text);
  }

  private canonicalType(type: string): string {
    const parts = type.split("/");
    if (parts.length === 2 && parts.every((p) => /^\w+$/.test(p))) return type;
    if (
      this.dialect === 2 &&
      parts.length === 3 &&
      parts[1] === "msg" &&
      /^\w+$/.test(parts[0] ?? "") &&
      /^\w+$/.test(parts[2] ?? "")
    )
      return `${parts[0]}/${parts[2]}`;
    throw new Error(`InvalidMessageType: ${type} is not a ROS ${this.dialect} message type name`);
  }

  private fieldsOf(type: string): Record<string, Field> {
    const f = { ...(MSGS[type] as Record<string, Field>) };
    if (type === "std_msgs/Header" && this.dialect === 2) delete f.seq;
    return f;
  }

  private convert(value: unknown, field: Field, path: string): unknown {
    if (field === "uint8[]") {
      // rosbridge's JSON encoding: uint8[] arrives as base64 or a list of bytes, leaves as base64
      if (value === undefined) return "";
      if (typeof value === "string") {
        if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0)
          throw new ConversionError(`${path}: FieldTypeMismatchException: expected base64 for uint8[]`);
        return value;
      }
      if (!Array.isArray(value) || !value.every((v) => Number.isInteger(v) && v >= 0 && v <= 255))
        throw new ConversionError(`${path}: FieldTypeMismatchException: expected uint8[] (base64 or bytes)`);
      return Buffer.from(value as number[]).toString("base64");
    }
    if (field.endsWith("[]")) {
      const inner = field.slice(0, -2);
      if (value === undefined) return [];
      if (!Array.isArray(value)) throw new ConversionError(`${path}: expected an array for ${field}`);
      return value.map((v, i) => this.convert(v, inner, `${path}[${i}]`));
    }
    switch (field) {
      case "float64":
      case "float32":
        if (value === undefined) return 0;
        if (typeof value !== "number" || !Number.isFinite(value))
          throw new ConversionError(
            `${path}: FieldTypeMismatchException: expected ${field}, got ${JSON.stringify(value)}`,
          );
        return field === "float32" ? Math.fround(value) : value;
      case "uint8":
        if (value === undefined) return 0;
        if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 255)
          throw new ConversionError(
            `${path}: FieldTypeMismatchException: expected uint8, got ${JSON.stringify(value)}`,
          );
        return value;
      case "uint32":
      case "byte":
        if (value === undefined) return 0;
        if (typeof value !== "number" || !Number.isInteger(value) || value < 0)
          throw new ConversionError(
            `${path}: FieldTypeMismatchException: expected ${field}, got ${JSON.stringify(value)}`,
          );
        return value;
      case "bool":
        if (value === undefined) return false;
        if (typeof value !== "boolean")
          throw new ConversionError(`${path}: FieldTypeMismatchException: expected bool, got ${JSON.stringify(value)}`);
        return value;
      case "string":
        if (value === undefined) return "";
        if (typeof value !== "string")
          throw new ConversionError(
            `${path}: FieldTypeMismatchException: expected string, got ${JSON.stringify(value)}`,
          );
        return value;
      case "time":
      case "duration": {
        const [s, ns] = this.dialect === 1 ? ["secs", "nsecs"] : ["sec", "nanosec"];
        if (value === undefined) return { [s]: 0, [ns]: 0 };
        if (typeof value !== "object" || value === null)
          throw new ConversionError(`${path}: expected a ${field} object`);
        const o = value as Record<string, unknown>;
        for (const k of Object.keys(o))
          if (k !== s && k !== ns)
            throw new ConversionError(
              `${path}: NonexistentFieldException: ${field} has no field '${k}' in ROS ${this.dialect}`,
            );
        const sec = o[s] ?? 0;
        const nsec = o[ns] ?? 0;
        if (!Number.isInteger(sec) || !Number.isInteger(nsec) || (nsec as number) < 0 || (nsec as number) >= 1e9)
          throw new ConversionError(`${path}: FieldTypeMismatchException: bad ${field} ${JSON.stringify(value)}`);
        return { [s]: sec, [ns]: nsec };
      }
      default: {
        if (!MSGS[field]) throw new ConversionError(`${path}: unknown type ${field}`);
        if (value === undefined) value = {};
        if (typeof value !== "object" || value === null || Array.isArray(value))
          throw new ConversionError(`${path}: expected a ${field} object, got ${JSON.stringify(value)}`);
        const fields = this.fieldsOf(field);
        const o = value as Record<string, unknown>;
        for (const k of Object.keys(o))
          if (!(k in fields))
            throw new ConversionError(`${path}: NonexistentFieldException: ${field} has no field '${k}'`);
        const out: Record<string, unknown> = {};
        for (const [k, t] of Object.entries(fields)) out[k] = this.convert(o[k], t, `${path}.${k}`);
        return out;
      }
    }
  }
}
