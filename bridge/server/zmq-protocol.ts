/**
 * The ZeroMQ policy protocol: one msgpack-numpy map per message, tagged by `type`.
 *
 * A client (DEALER, or REQ: the empty delimiter frame is kept and echoed) sends one frame holding a
 * request; the server (ROUTER) answers every request with exactly one reply frame, `error` included:
 * a malformed frame, an unknown type, a missing or mis-shaped feature, a NaN, a full queue. Replies
 * carry the request's `id` (any msgpack int or string the client chose; null when the request had
 * none or could not be read).
 *
 * | request                                                             | reply                                                    |
 * |---------------------------------------------------------------------|----------------------------------------------------------|
 * | `{type:"infer", id?, obs:{key: array}, seed?, noise?, prefix?, prefix_len?}` | `{type:"chunk", id, actions:(H,A) f4, timing:{infer_ms, total_ms, batch}}` |
 * | `{type:"metadata", id?}`                                            | `{type:"metadata", id, metadata:{features, horizon, action_dim, fps, rtc_max_delay, solver, steps, key_map}}` |
 * | `{type:"reset", id?, seed}`                                         | `{type:"reset", id, seed}`                                |
 * | `{type:"ping", id?}`                                                | `{type:"pong", id, time_ms}`                              |
 * | anything wrong                                                      | `{type:"error", id, code, message}`                       |
 *
 * `obs` carries the features as the openpi protocol does (`openpi-protocol.ts`): vectors as float
 * arrays, cameras as uint8 `(h, w, 3)`, resized with padding to the policy's size.
 * `reset` restarts the noise stream of this client only (seeded `infer` calls are unaffected).
 * The PUB stream (optional) publishes `["chunk", {client, id, actions, timing, time_ms}]` for every
 * served chunk.
 */
import { NdArray, NpScalar, isMsgMap, type MsgMap, type MsgValue } from "../codec/msgpack-numpy.ts";
import type { PolicyMetadata } from "./served-policy.ts";

/** A request id as the client chose it. */
export type RequestId = number | string | null;

/** Client -> server. */
export type ZmqRequest =
  | {
      type: "infer";
      id: RequestId;
      obs: MsgMap;
      seed?: number;
      noise?: Float32Array;
      prefix?: Float32Array;
      prefixLen?: number;
    }
  | { type: "metadata"; id: RequestId }
  | { type: "reset"; id: RequestId; seed: number }
  | { type: "ping"; id: RequestId };

/** Why a request was refused. */
export type ErrorCode = "malformed" | "unknown_type" | "bad_request" | "busy" | "internal";

/** Server -> client. */
export type ZmqReply =
  | {
      type: "chunk";
      id: RequestId;
      actions: NdArray;
      timing: { infer_ms: number; total_ms: number; batch: number };
    }
  | { type: "metadata"; id: RequestId; metadata: PolicyMetadata }
  | { type: "reset"; id: RequestId; seed: number }
  | { type: "pong"; id: RequestId; time_ms: number }
  | { type: "error"; id: RequestId; code: ErrorCode; message: string };

/** A request that cannot be served; `code` goes into the error reply. */
export class ZmqRequestError extends Error {
  override readonly name = "ZmqRequestError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly id: RequestId = null,
  ) {
    super(message);
  }
}

function idOf(o: MsgMap): RequestId {
  const id = o["id"];
  if (id === undefined || id === null) return null;
  if (typeof id === "number" || typeof id === "string") return id;
  if (typeof id === "bigint") return Number(id);
  throw new ZmqRequestError("malformed", "request 'id' must be an integer or a string");
}

function intField(o: MsgMap, key: string, id: RequestId): number | undefined {
  let v = o[key];
  if (v === undefined || v === null) return undefined;
  if (v instanceof NpScalar) v = typeof v.value === "boolean" ? Number(v.value) : v.value;
  if (typeof v === "bigint") v = Number(v);
  if (typeof v !== "number" || !Number.isSafeInteger(v))
    throw new ZmqRequestError("bad_request", `request '${key}' must be an integer, got ${String(v)}`, id);
  return v;
}

function floatArrayField(o: MsgMap, key: string, id: RequestId): Float32Array | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  let x: Float32Array;
  if (v instanceof NdArray) x = v.toFloat32();
  else if (Array.isArray(v) && v.every((e) => typeof e === "number")) x = Float32Array.from(v as number[]);
  else throw new ZmqRequestError("bad_request", `request '${key}' must be a numeric array`, id);
  for (let i = 0; i < x.length; i++)
    if (!Number.isFinite(x[i]!))
      throw new ZmqRequestError("bad_request", `request '${key}' has a non-finite value ${x[i]} at index ${i}`, id);
  return x;
}

/** Parses a decoded request (from `unknown`); throws {@link ZmqRequestError} naming what is wrong. */
export function parseZmqRequest(m: MsgValue): ZmqRequest {
  if (!isMsgMap(m)) throw new ZmqRequestError("malformed", "a request must be a msgpack map with a 'type'");
  const o = m;
  const id = idOf(o);
  const type = o["type"];
  if (typeof type !== "string") throw new ZmqRequestError("malformed", "request has no string 'type'", id);
  switch (type) {
    case "infer": {
      const obs = o["obs"];
      if (
        typeof obs !== "object" ||
        obs === null ||
        Array.isArray(obs) ||
        obs instanceof Uint8Array ||
        obs instanceof NdArray ||
        obs instanceof NpScalar
      )
        throw new ZmqRequestError("bad_request", "'infer' needs 'obs', a map of observation arrays", id);
      const seed = intField(o, "seed", id);
      const noise = floatArrayField(o, "noise", id);
      const prefix = floatArrayField(o, "prefix", id);
      const prefixLen = intField(o, "prefix_len", id);
      return {
        type,
        id,
        obs,
        ...(seed !== undefined ? { seed } : {}),
        ...(noise !== undefined ? { noise } : {}),
        ...(prefix !== undefined ? { prefix } : {}),
        ...(prefixLen !== undefined ? { prefixLen } : {}),
      };
    }
    case "metadata":
      return { type, id };
    case "reset": {
      const seed = intField(o, "seed", id);
      if (seed === undefined) throw new ZmqRequestError("bad_request", "'reset' needs an integer 'seed'", id);
      return { type, id, seed };
    }
    case "ping":
      return { type, id };
    default:
      throw new ZmqRequestError(
        "unknown_type",
        `unknown request type '${type}' (expected infer, metadata, reset or ping)`,
        id,
      );
  }
}

/** Parses a decoded reply (the client's side); throws a `TypeError` naming what is wrong. */
export function parseZmqReply(m: MsgValue): ZmqReply {
  if (!isMsgMap(m)) throw new TypeError("a reply must be a msgpack map with a 'type'");
  const o = m;
  const id = (o["id"] ?? null) as RequestId;
  switch (o["type"]) {
    case "chunk": {
      const a = o["actions"];
      const t = o["timing"] as Record<string, unknown> | undefined;
      if (!(a instanceof NdArray) || a.shape.length !== 2 || typeof t !== "object" || t === null)
        throw new TypeError("'chunk' reply without an (H, A) 'actions' array and 'timing'");
      return {
        type: "chunk",
        id,
        actions: a,
        timing: { infer_ms: Number(t["infer_ms"]), total_ms: Number(t["total_ms"]), batch: Number(t["batch"]) },
      };
    }
    case "metadata":
      if (typeof o["metadata"] !== "object" || o["metadata"] === null)
        throw new TypeError("'metadata' reply without 'metadata'");
      return { type: "metadata", id, metadata: o["metadata"] as unknown as PolicyMetadata };
    case "reset":
      return { type: "reset", id, seed: Number(o["seed"]) };
    case "pong":
      return { type: "pong", id, time_ms: Number(o["time_ms"]) };
    case "error":
      return {
        type: "error",
        id,
        code: String(o["code"]) as ErrorCode,
        message: String(o["message"]),
      };
    default:
      throw new TypeError(`unknown reply type '${String(o["type"])}'`);
  }
}
