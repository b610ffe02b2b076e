/**
 * A TypeScript client of the openpi WebSocket policy protocol (`openpi-protocol.ts`), as openpi's
 * `WebsocketClientPolicy` speaks it: on connect the server sends the metadata frame; each request is
 * one binary msgpack-numpy observation dict, answered in order by one binary reply
 * `{actions (H, A), policy_timing, server_timing}`; an error comes back as a text frame and the
 * server closes the connection (every waiting request then rejects with that text).
 */
import WebSocket, { type RawData } from "ws";
import { decodeMsgpackNumpy, encodeMsgpackNumpy, NdArray, type MsgMap, type MsgValue } from "../codec/msgpack-numpy.ts";
import type { PolicyMetadata } from "./served-policy.ts";

/** Options of {@link OpenpiPolicyClient.connect}. */
export interface OpenpiClientOptions {
  /** `ws://host:port`. */
  url: string;
  /** Sent as `Authorization: Api-Key <key>` (openpi's client header). */
  apiKey?: string;
  /** Connect and per-request timeout, ms (default 10 000). */
  timeoutMs?: number;
}

/** One reply. */
export interface OpenpiChunk {
  /** Raw actions `[H * A]`, row-major over `shape`. */
  actions: Float32Array;
  shape: [number, number];
  /** The server's `policy_timing.infer_ms` and `server_timing.infer_ms`. */
  inferMs: number;
  serverMs: number;
}

interface Waiter {
  resolve: (m: MsgValue) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** A connected client; requests may be issued concurrently (answered in order); `close()` when done. */
export class OpenpiPolicyClient {
  private readonly waiting: Waiter[] = [];
  private failure: Error | undefined;

  private constructor(
    private readonly ws: WebSocket,
    /** The metadata frame the server sent on connect. */
    readonly metadata: PolicyMetadata,
    private readonly timeoutMs: number,
  ) {
    ws.on("message", (data: RawData, isBinary: boolean) => {
      if (!isBinary) return this.fail(new Error(`openpi server error: ${rawText(data)}`));
      const w = this.waiting.shift();
      if (!w) return;
      clearTimeout(w.timer);
      try {
        w.resolve(decodeMsgpackNumpy(rawBytes(data)));
      } catch (err) {
        w.reject(new Error("openpi client: undecodable reply", { cause: err }));
      }
    });
    ws.on("close", (code: number) =>
      this.fail(this.failure ?? new Error(`openpi client: connection closed (${code})`)),
    );
    ws.on("error", (err: Error) => this.fail(new Error(`openpi client: ${err.message}`, { cause: err })));
  }

  /** Connects and waits for the metadata frame. */
  static async connect(opts: OpenpiClientOptions): Promise<OpenpiPolicyClient> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const ws = new WebSocket(opts.url, {
      perMessageDeflate: false,
      ...(opts.apiKey !== undefined ? { headers: { Authorization: `Api-Key ${opts.apiKey}` } } : {}),
    });
    const meta = await new Promise<MsgValue>((resolve, reject) => {
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new Error(`openpi client: no metadata from ${opts.url} within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (err: Error | undefined, m?: MsgValue): void => {
        clearTimeout(timer);
        ws.off("message", onMessage);
        ws.off("error", onError);
        ws.off("unexpected-response", onRefused);
        if (err) reject(err);
        else resolve(m as MsgValue);
      };
      const onMessage = (data: RawData, isBinary: boolean): void => {
        if (!isBinary)
          return done(new Error(`openpi client: ${opts.url} sent text instead of metadata: ${rawText(data)}`));
        try {
          done(undefined, decodeMsgpackNumpy(rawBytes(data)));
        } catch (err) {
          done(new Error(`openpi client: undecodable metadata from ${opts.url}`, { cause: err }));
        }
      };
      const onError = (err: Error): void =>
        done(new Error(`openpi client: cannot connect to ${opts.url}: ${err.message}`, { cause: err }));
      const onRefused = (_req: unknown, res: { statusCode?: number }): void => {
        ws.on("error", () => {}); // terminating a refused handshake emits one last error
        ws.terminate();
        done(new Error(`openpi client: ${opts.url} refused the connection (HTTP ${res.statusCode ?? "?"})`));
      };
      ws.on("message", onMessage);
      ws.on("error", onError);
      ws.on("unexpected-response", onRefused);
    });
    return new OpenpiPolicyClient(ws, parseMetadata(meta, opts.url), timeoutMs);
  }

  /**
   * Samples a chunk for one raw observation (keys as the metadata names them; shapes from it when
   * the size fits; a `Uint8Array` goes as uint8, a camera image); `prompt` goes in the dict as
   * openpi's clients send it.
   */
  async infer(obs: Record<string, Float32Array | Uint8Array>, opts: { prompt?: string } = {}): Promise<OpenpiChunk> {
    if (this.failure) throw this.failure;
    const shapes: Record<string, number[]> = {};
    for (const f of this.metadata.features) shapes[f.key] = shapes[f.name] = f.shape;
    const dict: MsgMap = {};
    for (const [k, v] of Object.entries(obs)) {
      // in the metadata's shape when the size fits, else as given (the server refuses it, naming the key)
      const shape = shapes[k];
      const fits = shape && shape.reduce((a, b) => a * b, 1) === v.length ? shape : [v.length];
      dict[k] = v instanceof Uint8Array ? new NdArray("|u1", fits, v) : NdArray.float32(v, fits);
    }
    if (opts.prompt !== undefined) dict["prompt"] = opts.prompt;
    const reply = new Promise<MsgValue>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiting.indexOf(w);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new Error(`openpi client: no reply within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      const w: Waiter = { resolve, reject, timer };
      this.waiting.push(w);
    });
    this.ws.send(encodeMsgpackNumpy(dict));
    return parseChunk(await reply);
  }

  /** Closes the connection; waiting requests reject. */
  close(): void {
    this.fail(new Error("openpi client: closed"));
    this.ws.close(1000);
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiting.splice(0)) {
      clearTimeout(w.timer);
      w.reject(this.failure);
    }
  }
}

function isMap(m: MsgValue): m is MsgMap {
  return (
    typeof m === "object" && m !== null && !Array.isArray(m) && !(m instanceof Uint8Array) && !(m instanceof NdArray)
  );
}

function parseMetadata(m: MsgValue, url: string): PolicyMetadata {
  if (
    !isMap(m) ||
    typeof m["horizon"] !== "number" ||
    typeof m["action_dim"] !== "number" ||
    !Array.isArray(m["features"])
  )
    throw new Error(`openpi client: ${url} sent metadata without horizon, action_dim and features`);
  return m as unknown as PolicyMetadata;
}

function parseChunk(m: MsgValue): OpenpiChunk {
  if (!isMap(m) || !(m["actions"] instanceof NdArray) || m["actions"].shape.length !== 2)
    throw new Error("openpi client: a reply must carry 'actions' as a 2-D array");
  const a = m["actions"];
  const num = (v: MsgValue | undefined, k: string): number =>
    isMap(v ?? null) && typeof (v as MsgMap)[k] === "number" ? ((v as MsgMap)[k] as number) : NaN;
  return {
    actions: a.toFloat32(),
    shape: [a.shape[0]!, a.shape[1]!],
    inferMs: num(m["policy_timing"], "infer_ms"),
    serverMs: num(m["server_timing"], "infer_ms"),
  };
}

function rawBytes(data: RawData): Uint8Array {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return new Uint8Array(data);
}

function rawText(data: RawData): string {
  return Buffer.from(rawBytes(data)).toString("utf8");
}
