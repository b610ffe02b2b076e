/**
 * The ZeroMQ policy server: a ROUTER socket speaking `zmq-protocol.ts` with msgpack-numpy payloads.
 *
 * Every request gets exactly one reply (an `error` one included); inference runs in the policy's
 * worker thread (`ThreadedPolicy`), so the socket keeps reading while chunks are computed and
 * concurrent requests batch. Sends are serialised (one pending send per socket: zeromq.js answers
 * EBUSY otherwise). Security is not optional: `auth` is CURVE with a ZAP allow-list of client keys,
 * or an explicit `{mode: "insecure"}`. A message over `maxMessageBytes` makes libzmq drop that
 * client's connection (it never reaches the server, so it cannot be answered).
 */
import * as zmq from "zeromq";
import { Rng } from "../../policy/random.ts";
import { PolicyBusyError } from "../../policy/runtime/threaded.ts";
import { decodeMsgpackNumpy, encodeMsgpackNumpy, type MsgValue } from "../codec/msgpack-numpy.ts";
import {
  BadRequestError,
  chunkArray,
  observationFrom,
  policyMetadata,
  promptFrom,
  type ServedPolicy,
} from "./served-policy.ts";
import {
  parseZmqRequest,
  ZmqRequestError,
  type ErrorCode,
  type RequestId,
  type ZmqReply,
  type ZmqRequest,
} from "./zmq-protocol.ts";
import { ZapHandler, isZ85Key, type CurveKeyPair, type ZapDecision } from "./zap.ts";

/** How clients are let in: CURVE with an allow-list, or explicitly nobody checked. */
export type ZmqAuth =
  | {
      mode: "curve";
      /** The server's keypair (Z85); clients need its public key. */
      serverKeys: CurveKeyPair;
      /** Client public keys (Z85) allowed in; everyone else fails the handshake. */
      allow: readonly string[];
    }
  | { mode: "insecure" };

/** Options of {@link ZmqPolicyServer.start}. */
export interface ZmqServerOptions {
  policy: ServedPolicy;
  /** Where the ROUTER binds, e.g. `tcp://127.0.0.1:5555` (port 0 or `*`: any free port). */
  endpoint: string;
  auth: ZmqAuth;
  /** Where a PUB socket publishes every served chunk and its timing (same auth), if at all. */
  pub?: string;
  /** Client key -> dataset key renames for observations. */
  keyMap?: Readonly<Record<string, string>>;
  /** Largest accepted message, bytes (default 16 MiB). */
  maxMessageBytes?: number;
  /** Where problems the server cannot reply to go (default: stderr). */
  log?: (message: string) => void;
  /** Called after each ZAP decision (CURVE only). */
  onAuth?: (d: ZapDecision) => void;
}

/** Counters since start. */
export interface ZmqServerStats {
  requests: number;
  chunks: number;
  errors: number;
}

const MAX_CLIENT_STREAMS = 4096;

/** A running ZeroMQ policy server. */
export class ZmqPolicyServer {
  /** The bound endpoint (the real port when 0 was asked). */
  readonly endpoint: string;
  /** The bound PUB endpoint, if any. */
  readonly pubEndpoint: string | undefined;

  private readonly counters: ZmqServerStats = { requests: 0, chunks: 0, errors: 0 };
  private readonly streams = new Map<string, Rng>();
  private sendTail: Promise<void> = Promise.resolve();
  private pubTail: Promise<void> = Promise.resolve();
  private readonly loop: Promise<void>;
  private readonly pending = new Set<Promise<void>>();
  private closing = false;

  private constructor(
    private readonly opts: ZmqServerOptions,
    private readonly context: zmq.Context,
    private readonly router: zmq.Router,
    private readonly zap: ZapHandler | undefined,
    private readonly pubSocket: zmq.Publisher | undefined,
  ) {
    this.endpoint = router.lastEndpoint ?? opts.endpoint;
    this.pubEndpoint = pubSocket ? (pubSocket.lastEndpoint ?? opts.pub) : undefined;
    this.loop = this.run();
  }

  /** Binds the sockets (and the ZAP handler) and starts serving. */
  static async start(opts: ZmqServerOptions): Promise<ZmqPolicyServer> {
    const maxMessageSize = opts.maxMessageBytes ?? 16 * 1024 * 1024;
    const context = new zmq.Context({ blocky: false });
    const security = securityOptions(opts.auth);
    let zap: ZapHandler | undefined;
    if (opts.auth.mode === "curve") {
      zap = new ZapHandler({
        context,
        allow: opts.auth.allow,
        ...(opts.onAuth !== undefined ? { onDecision: opts.onAuth } : {}),
      });
      await zap.start();
    }
    const router = new zmq.Router({ context, linger: 0, maxMessageSize, ...security });
    let pub: zmq.Publisher | undefined;
    try {
      await router.bind(anyPort(opts.endpoint));
      if (opts.pub !== undefined) {
        pub = new zmq.Publisher({ context, linger: 0, ...security });
        await pub.bind(anyPort(opts.pub));
      }
    } catch (err) {
      router.close();
      pub?.close();
      await zap?.close();
      throw new Error(
        `zmq server: cannot bind ${opts.endpoint}${opts.pub ? ` / ${opts.pub}` : ""}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    return new ZmqPolicyServer(opts, context, router, zap, pub);
  }

  /** Counters since start. */
  stats(): ZmqServerStats {
    return { ...this.counters };
  }

  /** Stops reading, answers what is in flight, closes the sockets. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await Promise.allSettled([...this.pending]);
    await this.sendTail;
    await this.pubTail;
    this.router.close();
    this.pubSocket?.close();
    await this.loop;
    await this.zap?.close();
  }

  private log(message: string): void {
    (this.opts.log ?? ((m: string) => process.stderr.write(`zmq server: ${m}\n`)))(message);
  }

  private async run(): Promise<void> {
    try {
      for await (const frames of this.router) {
        if (this.closing) break;
        const work = this.handle(frames).catch((err: unknown) => this.log(`internal error: ${String(err)}`));
        this.pending.add(work);
        void work.finally(() => this.pending.delete(work));
      }
    } catch (err) {
      if (!this.router.closed) this.log(`receive loop stopped: ${(err as Error).message}`);
    }
  }

  private async handle(frames: Buffer[]): Promise<void> {
    const [client, ...rest] = frames;
    if (!client) return;
    // DEALER: [payload]; REQ: ["", payload] (the delimiter is echoed back).
    const envelope: Buffer[] = rest.length === 2 && rest[0]!.length === 0 ? [rest[0]!] : [];
    const body = rest.slice(envelope.length);
    this.counters.requests++;
    if (body.length !== 1) {
      this.reply(client, envelope, errorReply(null, "malformed", `expected one payload frame, got ${body.length}`));
      return;
    }
    let req: ZmqRequest;
    try {
      req = parseZmqRequest(decodeMsgpackNumpy(body[0]!, { maxBinBytes: this.opts.maxMessageBytes }));
    } catch (err) {
      const e = err as Error;
      const r =
        err instanceof ZmqRequestError
          ? errorReply(err.id, err.code, e.message)
          : errorReply(null, "malformed", e.message);
      this.reply(client, envelope, r);
      return;
    }
    this.reply(client, envelope, await this.answer(client, req));
  }

  private async answer(client: Buffer, req: ZmqRequest): Promise<ZmqReply> {
    const policy = this.opts.policy;
    switch (req.type) {
      case "ping":
        return { type: "pong", id: req.id, time_ms: Date.now() };
      case "metadata":
        return { type: "metadata", id: req.id, metadata: policyMetadata(policy, this.opts.keyMap) };
      case "reset":
        this.stream(client, req.seed);
        return { type: "reset", id: req.id, seed: req.seed };
      case "infer": {
        try {
          const obs = observationFrom(req.obs, policy.features, this.opts.keyMap);
          const prompt = promptFrom(req.obs, policy);
          const own =
            req.noise === undefined && req.seed === undefined ? this.streams.get(client.toString("hex")) : undefined;
          const noise = req.noise ?? own?.normalArray(policy.horizon * policy.modelActionDim);
          const t = await policy.sampleChunkTimed(obs, {
            ...(noise !== undefined ? { noise } : {}),
            ...(req.seed !== undefined ? { seed: req.seed } : {}),
            ...(req.prefix !== undefined ? { prefix: req.prefix } : {}),
            ...(req.prefixLen !== undefined ? { prefixLen: req.prefixLen } : {}),
            ...(prompt !== undefined ? { prompt } : {}),
          });
          const timing = { infer_ms: t.inferMs, total_ms: t.totalMs, batch: t.batch };
          const actions = chunkArray(t.actions, policy.horizon, policy.actionDim);
          this.publish(client, req.id, actions, timing);
          return { type: "chunk", id: req.id, actions, timing };
        } catch (err) {
          const e = err as Error;
          const code = err instanceof PolicyBusyError ? "busy" : "bad_request";
          if (!(err instanceof BadRequestError) && code !== "busy") this.log(`infer ${String(req.id)}: ${e.message}`);
          return errorReply(req.id, code, e.message);
        }
      }
      default: {
        const never: never = req;
        return errorReply(null, "internal", `unhandled request ${String(never)}`);
      }
    }
  }

  private stream(client: Buffer, seed: number): Rng {
    const key = client.toString("hex");
    this.streams.delete(key);
    if (this.streams.size >= MAX_CLIENT_STREAMS) this.streams.delete(this.streams.keys().next().value!);
    const rng = new Rng(seed);
    this.streams.set(key, rng);
    return rng;
  }

  private reply(client: Buffer, envelope: Buffer[], r: ZmqReply): void {
    if (r.type === "error") this.counters.errors++;
    if (r.type === "chunk") this.counters.chunks++;
    let payload: Uint8Array;
    try {
      payload = encodeMsgpackNumpy(r as unknown as MsgValue);
    } catch (err) {
      payload = encodeMsgpackNumpy(errorReply(r.id, "internal", (err as Error).message) as unknown as MsgValue);
    }
    this.sendTail = this.sendTail
      .then(() => this.router.send([client, ...envelope, payload]))
      .catch((err: unknown) => this.log(`reply to ${client.toString("hex")} failed: ${(err as Error).message}`));
  }

  private publish(client: Buffer, id: RequestId, actions: MsgValue, timing: MsgValue): void {
    const pub = this.pubSocket;
    if (!pub) return;
    const payload = encodeMsgpackNumpy({ client: client.toString("hex"), id, actions, timing, time_ms: Date.now() });
    this.pubTail = this.pubTail
      .then(() => pub.send(["chunk", payload]))
      .catch((err: unknown) => this.log(`publish failed: ${(err as Error).message}`));
  }
}

function errorReply(id: RequestId, code: ErrorCode, message: string): ZmqReply {
  return { type: "error", id, code, message };
}

/** `tcp://host:0` -> `tcp://host:*` (libzmq's any-port syntax). */
function anyPort(endpoint: string): string {
  return endpoint.replace(/^(tcp:\/\/.+):0$/, "$1:*");
}

function securityOptions(
  auth: ZmqAuth,
): Partial<{ curveServer: boolean; curveSecretKey: string; curvePublicKey: string; zapDomain: string }> {
  switch (auth.mode) {
    case "insecure":
      return {};
    case "curve":
      if (!isZ85Key(auth.serverKeys.publicKey) || !isZ85Key(auth.serverKeys.secretKey))
        throw new Error("zmq server: the server keypair must be two 40-character Z85 keys (actionflow keys)");
      if (auth.allow.length === 0) throw new Error("zmq server: CURVE needs at least one allowed client key");
      return {
        curveServer: true,
        curveSecretKey: auth.serverKeys.secretKey,
        curvePublicKey: auth.serverKeys.publicKey,
        zapDomain: "actionflow",
      };
    default: {
      const never: never = auth;
      throw new Error(`unknown auth ${String(never)}`);
    }
  }
}
