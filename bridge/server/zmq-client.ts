/**
 * A TypeScript client of the ZeroMQ policy server (a DEALER socket): `infer`, `metadata`, `reset`,
 * `ping`, each resolving with the matching reply. Requests may overlap: replies are matched by the
 * `id` the client puts on each request. Sends are serialised (one pending send per socket). An
 * `error` reply rejects with {@link ZmqServerError} carrying its code.
 */
import * as zmq from "zeromq";
import { decodeMsgpackNumpy, encodeMsgpackNumpy, NdArray, type MsgMap, type MsgValue } from "../codec/msgpack-numpy.ts";
import type { PolicyMetadata } from "./served-policy.ts";
import { parseZmqReply, type ErrorCode, type ZmqReply } from "./zmq-protocol.ts";
import type { CurveKeyPair } from "./zap.ts";

/** An `error` reply from the server. */
export class ZmqServerError extends Error {
  override readonly name = "ZmqServerError";
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Options of {@link ZmqPolicyClient.connect}. */
export interface ZmqClientOptions {
  /** The server's endpoint, e.g. `tcp://127.0.0.1:5555`. */
  endpoint: string;
  /** CURVE: the server's public key and this client's keypair (on the server's allow-list). */
  curve?: { serverPublicKey: string; keys: CurveKeyPair };
  /** Per-request timeout, ms (default 10 000): a request without a reply by then rejects. */
  timeoutMs?: number;
}

/** One `infer` call. */
export interface InferOptions {
  seed?: number;
  /** `[H * modelActionDim]` noise, N(0, I). */
  noise?: Float32Array;
  /** Raw committed actions `[d * A]` (real-time chunking) and how many steps of it to keep. */
  prefix?: Float32Array;
  prefixLen?: number;
  /** The task prompt, sent as the observation dict's `prompt` (a prompt-conditioned server policy reads it). */
  prompt?: string;
}

/** A chunk as the client receives it. */
export interface ClientChunk {
  /** Raw actions `[H * A]`, row-major over `shape`. */
  actions: Float32Array;
  shape: [number, number];
  timing: { infer_ms: number; total_ms: number; batch: number };
}

interface Waiter {
  resolve: (r: ZmqReply) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** A connected client; `close()` when done. */
export class ZmqPolicyClient {
  private readonly waiting = new Map<number, Waiter>();
  private nextId = 1;
  private sendTail: Promise<void> = Promise.resolve();
  private readonly loop: Promise<void>;
  private closed = false;
  private shapes: Promise<Record<string, number[]>> | undefined;

  private constructor(
    private readonly socket: zmq.Dealer,
    private readonly timeoutMs: number,
  ) {
    this.loop = this.run();
  }

  /** Connects (ZeroMQ connects lazily: the first request waits for the handshake). */
  static connect(opts: ZmqClientOptions): ZmqPolicyClient {
    const socket = new zmq.Dealer({
      linger: 0,
      ...(opts.curve
        ? {
            curveServerKey: opts.curve.serverPublicKey,
            curvePublicKey: opts.curve.keys.publicKey,
            curveSecretKey: opts.curve.keys.secretKey,
          }
        : {}),
    });
    socket.connect(opts.endpoint);
    return new ZmqPolicyClient(socket, opts.timeoutMs ?? 10_000);
  }

  /** The underlying socket's events (handshake failures: `handshake:error:auth`). */
  get events(): zmq.Socket["events"] {
    return this.socket.events;
  }

  /**
   * Samples a chunk for one raw observation (keys: dataset keys, model names or mapped client keys).
   * A plain `Float32Array` (a `Uint8Array`: a camera image, as uint8) is sent in the feature's shape
   * from the server's metadata (fetched once).
   */
  async infer(obs: Record<string, Float32Array | Uint8Array | NdArray>, opts: InferOptions = {}): Promise<ClientChunk> {
    const o: MsgMap = {};
    const shapes = Object.values(obs).some((v) => !(v instanceof NdArray)) ? await this.featureShapes() : {};
    for (const [k, v] of Object.entries(obs)) {
      if (v instanceof NdArray) o[k] = v;
      else {
        const shape = shapes[k] ?? [v.length];
        o[k] = v instanceof Uint8Array ? new NdArray("|u1", shape, v) : NdArray.float32(v, shape);
      }
    }
    if (opts.prompt !== undefined) o["prompt"] = opts.prompt;
    const r = await this.request({
      type: "infer",
      obs: o,
      ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
      ...(opts.noise !== undefined ? { noise: NdArray.float32(opts.noise) } : {}),
      ...(opts.prefix !== undefined ? { prefix: NdArray.float32(opts.prefix) } : {}),
      ...(opts.prefixLen !== undefined ? { prefix_len: opts.prefixLen } : {}),
    });
    if (r.type !== "chunk") throw new Error(`expected a 'chunk' reply, got '${r.type}'`);
    return { actions: r.actions.toFloat32(), shape: [r.actions.shape[0]!, r.actions.shape[1]!], timing: r.timing };
  }

  /** Feature shapes by dataset key, model name and mapped client key (fetched once). */
  private async featureShapes(): Promise<Record<string, number[]>> {
    this.shapes ??= this.metadata().then((m) => {
      const out: Record<string, number[]> = {};
      for (const f of m.features) out[f.key] = out[f.name] = f.shape;
      for (const [client, key] of Object.entries(m.key_map)) if (out[key]) out[client] = out[key];
      return out;
    });
    return this.shapes;
  }

  /** The policy's metadata. */
  async metadata(): Promise<PolicyMetadata> {
    const r = await this.request({ type: "metadata" });
    if (r.type !== "metadata") throw new Error(`expected a 'metadata' reply, got '${r.type}'`);
    return r.metadata;
  }

  /** Restarts this client's noise stream from `seed`. */
  async reset(seed: number): Promise<void> {
    const r = await this.request({ type: "reset", seed });
    if (r.type !== "reset") throw new Error(`expected a 'reset' reply, got '${r.type}'`);
  }

  /** Round trip; resolves with the server's clock, ms since the epoch. */
  async ping(): Promise<number> {
    const r = await this.request({ type: "ping" });
    if (r.type !== "pong") throw new Error(`expected a 'pong' reply, got '${r.type}'`);
    return r.time_ms;
  }

  /** Sends raw frames (tests: malformed requests); resolves when sent. Replies to them carry id null. */
  async sendRaw(frames: Array<Uint8Array | string>): Promise<void> {
    await this.enqueue(frames);
  }

  /** Sends any request map and resolves with its reply (`error` replies reject). */
  async request(body: MsgMap): Promise<ZmqReply> {
    if (this.closed) throw new Error("zmq client: closed");
    const id = this.nextId++;
    const payload = encodeMsgpackNumpy({ ...body, id } as MsgValue);
    const reply = new Promise<ZmqReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(
          new Error(`zmq client: no reply to request ${id} ('${String(body["type"])}') within ${this.timeoutMs} ms`),
        );
      }, this.timeoutMs);
      this.waiting.set(id, { resolve, reject, timer });
    });
    // The timeout covers the send too: a DEALER's send waits while no handshake has completed.
    this.enqueue([payload]).catch((err: unknown) => {
      const w = this.waiting.get(id);
      if (!w) return;
      this.waiting.delete(id);
      clearTimeout(w.timer);
      w.reject(new Error(`zmq client: send failed: ${(err as Error).message}`, { cause: err }));
    });
    const r = await reply;
    if (r.type === "error") throw new ZmqServerError(r.code, r.message);
    return r;
  }

  /** Replies that arrived for no waiting request (e.g. errors for raw frames), oldest first. */
  readonly unmatched: ZmqReply[] = [];

  /** Closes the socket; waiting requests reject. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
    await this.loop;
    for (const [, w] of this.waiting) {
      clearTimeout(w.timer);
      w.reject(new Error("zmq client: closed"));
    }
    this.waiting.clear();
  }

  private enqueue(frames: Array<Uint8Array | string>): Promise<void> {
    const sent = this.sendTail.then(() => this.socket.send(frames));
    this.sendTail = sent.catch(() => undefined);
    return sent;
  }

  private async run(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        let r: ZmqReply;
        try {
          r = parseZmqReply(decodeMsgpackNumpy(frames[frames.length - 1]!));
        } catch {
          continue;
        }
        const w = typeof r.id === "number" ? this.waiting.get(r.id) : undefined;
        if (!w) {
          this.unmatched.push(r);
          if (this.unmatched.length > 1000) this.unmatched.shift();
          continue;
        }
        this.waiting.delete(r.id as number);
        clearTimeout(w.timer);
        w.resolve(r);
      }
    } catch (err) {
      if (!this.socket.closed) throw err;
    }
  }
}
