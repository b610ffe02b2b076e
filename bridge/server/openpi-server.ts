/**
 * The openpi-compatible WebSocket policy server (`openpi-protocol.ts`): a Python program using
 * openpi's `WebsocketClientPolicy` works against it unchanged.
 *
 * Differences from openpi's own server, all on the side of safety: inference runs in the policy's
 * worker thread and concurrent clients batch (openpi infers on the event loop and blocks every
 * other client, openpi issue #717); the `Authorization: Api-Key <key>` header openpi's client sends
 * is checked (401 before the upgrade) unless auth is explicitly `insecure`; frames over
 * `maxPayloadBytes` close the connection (1009). An error goes back to that client only, as a text
 * frame followed by close 1011 (openpi's behaviour); the server keeps serving the others.
 * `GET /healthz` answers 200.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { timingSafeEqual, createHash } from "node:crypto";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import { decodeMsgpackNumpy, encodeMsgpackNumpy } from "../codec/msgpack-numpy.ts";
import { chunkArray, observationFrom, policyMetadata, promptFrom, type ServedPolicy } from "./served-policy.ts";
import { ERROR_CLOSE, parseOpenpiRequest, type OpenpiReply } from "./openpi-protocol.ts";

/** Who may connect: holders of an API key, or explicitly anyone. */
export type OpenpiAuth = { mode: "api-key"; keys: readonly string[] } | { mode: "insecure" };

/** Options of {@link OpenpiPolicyServer.start}. */
export interface OpenpiServerOptions {
  policy: ServedPolicy;
  /** `ws://host:port` to listen on (port 0: any free port). */
  url: string;
  auth: OpenpiAuth;
  /** Client key -> dataset key renames (`observation/state` -> `observation.state`). */
  keyMap?: Readonly<Record<string, string>>;
  /** Largest accepted frame, bytes (default 16 MiB). */
  maxPayloadBytes?: number;
  /** Where problems go (default: stderr). */
  log?: (message: string) => void;
}

/** Counters since start. */
export interface OpenpiServerStats {
  connections: number;
  refused: number;
  requests: number;
  chunks: number;
  errors: number;
}

/** A running openpi-compatible server. */
export class OpenpiPolicyServer {
  /** The bound `ws://host:port` (the real port when 0 was asked). */
  readonly url: string;
  private readonly counters: OpenpiServerStats = { connections: 0, refused: 0, requests: 0, chunks: 0, errors: 0 };

  private constructor(
    private readonly opts: OpenpiServerOptions,
    private readonly http: Server,
    private readonly wss: WebSocketServer,
    host: string,
  ) {
    const port = (http.address() as AddressInfo).port;
    this.url = `ws://${host}:${port}`;
  }

  /** Listens and starts serving. */
  static async start(opts: OpenpiServerOptions): Promise<OpenpiPolicyServer> {
    const u = new URL(opts.url);
    if (u.protocol !== "ws:") throw new Error(`openpi server: url '${opts.url}' must be ws://host:port`);
    const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
    const port = u.port === "" ? 8000 : Number(u.port);
    if (opts.auth.mode === "api-key" && (opts.auth.keys.length === 0 || opts.auth.keys.some((k) => k.length < 16)))
      throw new Error("openpi server: API keys must be given and at least 16 characters long");
    const wss = new WebSocketServer({
      noServer: true,
      maxPayload: opts.maxPayloadBytes ?? 16 * 1024 * 1024,
      perMessageDeflate: false,
    });
    const http = createServer((req, res) => {
      if (req.method === "GET" && (req.url ?? "").split("?")[0] === "/healthz") {
        res.writeHead(200, { "content-type": "text/plain" }).end("OK\n");
        return;
      }
      res.writeHead(426, { "content-type": "text/plain" }).end("this is a WebSocket policy server (GET /healthz)\n");
    });
    let server: OpenpiPolicyServer | undefined;
    http.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => server?.upgrade(req, socket, head));
    await new Promise<void>((resolve, reject) => {
      http.once("error", (err) =>
        reject(new Error(`openpi server: cannot listen on ${opts.url}: ${err.message}`, { cause: err })),
      );
      http.listen(port, host, () => resolve());
    });
    server = new OpenpiPolicyServer(opts, http, wss, u.hostname);
    return server;
  }

  /** Counters since start. */
  stats(): OpenpiServerStats {
    return { ...this.counters };
  }

  /** Closes every connection (1001) and stops listening. */
  async close(): Promise<void> {
    for (const ws of this.wss.clients) ws.close(1001, "server shutting down");
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }

  private log(message: string): void {
    (this.opts.log ?? ((m: string) => process.stderr.write(`openpi server: ${m}\n`)))(message);
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (!this.authorized(req)) {
      this.counters.refused++;
      socket.end("HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.connection(ws));
  }

  private authorized(req: IncomingMessage): boolean {
    const auth = this.opts.auth;
    if (auth.mode === "insecure") return true;
    const m = /^Api-Key\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "");
    if (!m) return false;
    const given = createHash("sha256").update(m[1]!).digest();
    return auth.keys.some((k) => timingSafeEqual(given, createHash("sha256").update(k).digest()));
  }

  private connection(ws: WebSocket): void {
    this.counters.connections++;
    const policy = this.opts.policy;
    ws.send(encodeMsgpackNumpy(policyMetadata(policy, this.opts.keyMap)));
    let chain: Promise<void> = Promise.resolve();
    let loopStart = performance.now();
    let prevTotalMs: number | undefined;
    let failed = false;
    ws.on("error", (err) => this.log(`connection error: ${err.message}`));
    ws.on("message", (data: RawData, isBinary: boolean) => {
      this.counters.requests++;
      // Answer in order, one request at a time per connection (openpi clients wait for each reply).
      chain = chain.then(async () => {
        if (failed || ws.readyState !== ws.OPEN) return;
        try {
          if (!isBinary) throw new Error("expected a binary msgpack frame, got a text frame");
          const bytes = toBytes(data);
          const dict = parseOpenpiRequest(decodeMsgpackNumpy(bytes));
          const obs = observationFrom(dict, policy.features, this.opts.keyMap);
          const prompt = promptFrom(dict, policy);
          const t0 = performance.now();
          const t = await policy.sampleChunkTimed(obs, prompt !== undefined ? { prompt } : {});
          const reply: OpenpiReply = {
            actions: chunkArray(t.actions, policy.horizon, policy.actionDim),
            policy_timing: { infer_ms: t.inferMs },
            server_timing: {
              infer_ms: performance.now() - t0,
              ...(prevTotalMs !== undefined ? { prev_total_ms: prevTotalMs } : {}),
            },
          };
          if (ws.readyState !== ws.OPEN) return;
          ws.send(encodeMsgpackNumpy(reply));
          this.counters.chunks++;
          const now = performance.now();
          prevTotalMs = now - loopStart;
          loopStart = now;
        } catch (err) {
          failed = true;
          this.counters.errors++;
          const e = err as Error;
          if (ws.readyState === ws.OPEN) {
            ws.send(`${e.name}: ${e.message}`);
            ws.close(ERROR_CLOSE.code, ERROR_CLOSE.reason);
          }
        }
      });
    });
  }
}

function toBytes(data: RawData): Uint8Array {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return new Uint8Array(data);
}
