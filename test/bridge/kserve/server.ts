/**
 * A KServe v2 server for tests and benchmarks, standing in for Triton Inference Server (which
 * cannot run here): it serves a Triton model repository as Triton's onnxruntime backend does, from
 * the repository's own files (`<repo>/<model>/config.pbtxt`, the highest `<repo>/<model>/<n>/model.onnx`)
 * run by onnxruntime, over HTTP/REST (JSON and the binary tensor extension) and gRPC
 * (`inference.GRPCInferenceService`), with Triton's dynamic batching (requests of the same shapes
 * joined up to `max_batch_size`, waiting at most `max_queue_delay_microseconds`).
 *
 * Like Triton: the server is live at once; a model is `LOADING` until its session exists (and
 * `loadDelayMs` passed), then `READY`, or `UNAVAILABLE` when its config and model disagree; the
 * server is ready only when every model is (strict readiness). Errors are answered as Triton
 * answers them: HTTP status (400 invalid argument, 404 not found, 503 unavailable, 500 internal)
 * with `{"error": "..."}`, gRPC status (INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE, INTERNAL), and
 * the server keeps serving. Inference runs on this process's event loop (one batch at a time):
 * run it in its own process (`test/bridge/start-kserve.ts`) next to a real-time loop.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { readdir, readFile, stat } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as ort from "onnxruntime-node";
import protobuf from "protobufjs";
import {
  fromGrpcInferRequest,
  inferenceService,
  PROTO_DIR,
  toGrpcInferResponse,
  type GrpcInferRequest,
} from "../../../bridge/kserve/grpc-codec.ts";
import { HEADER_LENGTH } from "../../../bridge/kserve/http-transport.ts";
import {
  decodeRestInferRequest,
  encodeRestInferResponse,
  isDatatype,
  KServeProtocolError,
  type Datatype,
  type InferResponse,
  type RequestedOutput,
  type Tensor,
  type TensorData,
} from "../../../bridge/kserve/protocol.ts";
import { parseTextProto } from "./pbtxt.ts";

/** Options of {@link KServeTestServer.start}. */
export interface KServeTestServerOptions {
  /** The Triton model repository. */
  repo: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** HTTP port (default 0: any free port). */
  httpPort?: number;
  /** gRPC port (default 0: any free port). */
  grpcPort?: number;
  /** Models stay LOADING this long after start (default 0). */
  loadDelayMs?: number;
  /** Added to every inference before it is answered, ms (default 0): a slow server. */
  inferDelayMs?: number;
  /**
   * Offer Triton's model-configuration extension (default true). Without it `/config` answers 404
   * and gRPC `ModelConfig` UNIMPLEMENTED, and the metadata carries the model's parameters (as the
   * Open Inference Protocol allows) instead.
   */
  configEndpoint?: boolean;
  /** onnxruntime intra-op threads per model (default 1). */
  threads?: number;
}

/** A Triton-style error: a code both transports map to their statuses. */
class ServeError extends Error {
  constructor(
    readonly code: "INVALID_ARG" | "NOT_FOUND" | "UNAVAILABLE" | "INTERNAL" | "UNSUPPORTED" | "METHOD",
    message: string,
  ) {
    super(message);
  }
}

const HTTP_STATUS = {
  INVALID_ARG: 400,
  NOT_FOUND: 404,
  UNAVAILABLE: 503,
  INTERNAL: 500,
  UNSUPPORTED: 501,
  METHOD: 405,
} as const;
const GRPC_STATUS = {
  INVALID_ARG: grpc.status.INVALID_ARGUMENT,
  NOT_FOUND: grpc.status.NOT_FOUND,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  INTERNAL: grpc.status.INTERNAL,
  UNSUPPORTED: grpc.status.UNIMPLEMENTED,
  METHOD: grpc.status.UNIMPLEMENTED,
} as const;

/** `TYPE_FP32` -> `FP32`, and the onnxruntime tensor type of each datatype. */
const ORT_TYPES: Record<Datatype, ort.Tensor.Type> = {
  BOOL: "bool",
  UINT8: "uint8",
  UINT16: "uint16",
  UINT32: "uint32",
  UINT64: "uint64",
  INT8: "int8",
  INT16: "int16",
  INT32: "int32",
  INT64: "int64",
  FP32: "float32",
  FP64: "float64",
};
const FROM_ORT = Object.fromEntries(Object.entries(ORT_TYPES).map(([k, v]) => [v, k])) as Record<string, Datatype>;

/** One input or output of a model's configuration, as the server uses it. */
interface IoConfig {
  name: string;
  datatype: Datatype;
  dims: number[];
  reshape?: number[];
  optional: boolean;
}

type ModelState = "LOADING" | "READY" | "UNAVAILABLE";

/** One model of the repository. */
interface Model {
  name: string;
  version: string;
  state: ModelState;
  reason?: string;
  /** The parsed `inference.ModelConfig` (snake_case, enums by name). */
  config: Record<string, unknown>;
  maxBatch: number;
  /** Whether `dynamic_batching` is configured (else every request runs alone). */
  dynamic: boolean;
  queueDelayMs: number;
  inputs: IoConfig[];
  outputs: IoConfig[];
  parameters: Record<string, string>;
  session?: ort.InferenceSession;
  batcher?: Batcher;
}

let modelConfigType: protobuf.Type | undefined;

/** `inference.ModelConfig` from the repository's `.proto` subset (field names kept snake_case). */
export function modelConfigProto(): protobuf.Type {
  if (!modelConfigType) {
    const root = new protobuf.Root();
    root.loadSync(join(PROTO_DIR, "model_config.proto"), { keepCase: true });
    modelConfigType = root.lookupType("inference.ModelConfig");
  }
  return modelConfigType;
}

function ioConfig(v: Record<string, unknown>, where: string): IoConfig {
  const dt = String(v["data_type"]).replace(/^TYPE_/, "");
  if (!isDatatype(dt)) throw new Error(`${where}: data_type ${String(v["data_type"])} is not supported here`);
  const reshape = v["reshape"] as { shape?: number[] } | null | undefined;
  return {
    name: String(v["name"]),
    datatype: dt,
    dims: (v["dims"] as number[]).map(Number),
    ...(reshape ? { reshape: (reshape.shape ?? []).map(Number) } : {}),
    optional: v["optional"] === true,
  };
}

/** The batches one model runs: requests queued until a batch is full or the oldest waited the queue delay. */
class Batcher {
  private queue: Array<{
    feeds: Record<string, ort.Tensor>;
    batch: number;
    key: string;
    resolve: (out: Record<string, ort.Tensor>) => void;
    reject: (e: Error) => void;
  }> = [];
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  /** Batches run and their sizes (requests). */
  readonly sizes: number[] = [];
  /** Milliseconds onnxruntime spent on all batches. */
  computeMs = 0;

  constructor(
    private readonly model: Model,
    private readonly session: ort.InferenceSession,
  ) {}

  run(feeds: Record<string, ort.Tensor>, batch: number): Promise<Record<string, ort.Tensor>> {
    const key = Object.entries(feeds)
      .map(([k, t]) => `${k}:${t.dims.slice(1).join("x")}`)
      .join(";");
    return new Promise((resolve, reject) => {
      this.queue.push({ feeds, batch, key, resolve, reject });
      this.schedule();
    });
  }

  private queued(): number {
    return this.queue.reduce((a, q) => a + q.batch, 0);
  }

  private schedule(): void {
    if (this.running) return;
    const m = this.model;
    if (!m.dynamic || m.maxBatch === 0 || this.queued() >= m.maxBatch || m.queueDelayMs === 0) {
      clearTimeout(this.timer);
      this.timer = undefined;
      setImmediate(() => void this.flush());
    } else this.timer ??= setTimeout(() => void this.flush(), m.queueDelayMs);
  }

  private async flush(): Promise<void> {
    this.timer = undefined;
    if (this.running || this.queue.length === 0) return;
    this.running = true;
    const first = this.queue[0]!;
    const cap = Math.max(1, this.model.maxBatch);
    const take: typeof this.queue = [];
    let n = 0;
    for (const q of this.queue) {
      if (take.length > 0 && !this.model.dynamic) break;
      if (q.key !== first.key || (take.length > 0 && n + q.batch > cap)) continue;
      take.push(q);
      n += q.batch;
    }
    this.queue = this.queue.filter((q) => !take.includes(q));
    this.sizes.push(take.length);
    try {
      const feeds = take.length === 1 ? first.feeds : concatFeeds(take.map((q) => q.feeds));
      const t0 = performance.now();
      const out = await this.session.run(feeds);
      this.computeMs += performance.now() - t0;
      let at = 0;
      for (const q of take) {
        q.resolve(take.length === 1 ? out : sliceOutputs(out, at, q.batch));
        at += q.batch;
      }
    } catch (err) {
      const e = new ServeError(
        "INTERNAL",
        `onnxruntime failed on model '${this.model.name}': ${(err as Error).message}`,
      );
      for (const q of take) q.reject(e);
    } finally {
      this.running = false;
      if (this.queue.length > 0) this.schedule();
    }
  }
}

function concatFeeds(all: ReadonlyArray<Record<string, ort.Tensor>>): Record<string, ort.Tensor> {
  const out: Record<string, ort.Tensor> = {};
  for (const name of Object.keys(all[0]!)) {
    const parts = all.map((f) => f[name]!);
    const total = parts.reduce((a, t) => a + t.dims[0]!, 0);
    const first = parts[0]!;
    const per = first.data.length / first.dims[0]!;
    const Ctor = (first.data as TensorData).constructor as new (n: number) => TensorData;
    const data = new Ctor(per * total);
    let at = 0;
    for (const t of parts) {
      (data as Float32Array).set(t.data as Float32Array, at);
      at += t.data.length;
    }
    out[name] = new ort.Tensor(first.type, data as Float32Array, [total, ...first.dims.slice(1)]);
  }
  return out;
}

function sliceOutputs(out: Record<string, ort.Tensor>, at: number, batch: number): Record<string, ort.Tensor> {
  const res: Record<string, ort.Tensor> = {};
  for (const [name, t] of Object.entries(out)) {
    const per = t.data.length / t.dims[0]!;
    const data = (t.data as Float32Array).slice(at * per, (at + batch) * per);
    res[name] = new ort.Tensor(t.type, data, [batch, ...t.dims.slice(1)]);
  }
  return res;
}

/** See the module doc. */
export class KServeTestServer {
  /** Infer requests answered (errors included) and errors, per transport. */
  readonly counts = { http: 0, grpc: 0, errors: 0 };

  private constructor(
    private readonly opts: KServeTestServerOptions,
    private readonly models: Map<string, Model>,
    private readonly http: Server,
    private readonly grpcServer: grpc.Server,
    readonly httpPort: number,
    readonly grpcPort: number,
  ) {}

  /** `http://host:port` of the REST endpoint. */
  get httpUrl(): string {
    return `http://${this.opts.host ?? "127.0.0.1"}:${this.httpPort}`;
  }

  /** `grpc://host:port` of the gRPC endpoint. */
  get grpcUrl(): string {
    return `grpc://${this.opts.host ?? "127.0.0.1"}:${this.grpcPort}`;
  }

  /** Reads the repository, binds both ports and starts loading the models (the server is live at once). */
  static async start(opts: KServeTestServerOptions): Promise<KServeTestServer> {
    const models = await readRepository(opts.repo);
    const host = opts.host ?? "127.0.0.1";
    let self: KServeTestServer | undefined;
    const http = createServer((req, res) => {
      if (self) self.onHttp(req, res);
      else res.writeHead(503).end();
    });
    // idle keep-alive connections stay open a minute (Node's default, 5 s, races clients reusing them)
    http.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve, reject) => {
      http.once("error", reject);
      http.listen(opts.httpPort ?? 0, host, () => resolve());
    });
    const grpcServer = new grpc.Server({ "grpc.max_receive_message_length": -1, "grpc.max_send_message_length": -1 });
    let grpcPort: number;
    try {
      grpcPort = await new Promise<number>((resolve, reject) =>
        grpcServer.bindAsync(`${host}:${opts.grpcPort ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, port) =>
          err ? reject(err) : resolve(port),
        ),
      );
    } catch (err) {
      http.close();
      throw new Error(`gRPC port ${opts.grpcPort ?? 0} on ${host}: ${(err as Error).message}`, { cause: err });
    }
    self = new KServeTestServer(opts, models, http, grpcServer, (http.address() as AddressInfo).port, grpcPort);
    grpcServer.addService(inferenceService().service, self.grpcHandlers());
    void self.load();
    return self;
  }

  /** Whether every model is ready. */
  ready(): boolean {
    return [...this.models.values()].every((m) => m.state === "READY");
  }

  /** The model states (name -> state and, when unavailable, why). */
  states(): Record<string, { state: ModelState; reason?: string }> {
    return Object.fromEntries(
      [...this.models.values()].map((m) => [m.name, { state: m.state, ...(m.reason ? { reason: m.reason } : {}) }]),
    );
  }

  /** Milliseconds onnxruntime ran, over all models. */
  computeMs(): number {
    return [...this.models.values()].reduce((a, m) => a + (m.batcher?.computeMs ?? 0), 0);
  }

  /** Sizes (in requests) of every batch each model ran. */
  batchSizes(): Record<string, number[]> {
    return Object.fromEntries([...this.models.values()].map((m) => [m.name, [...(m.batcher?.sizes ?? [])]]));
  }

  /** Stops both endpoints (open connections are cut) and frees the onnxruntime inference sessions. */
  async close(): Promise<void> {
    this.grpcServer.forceShutdown();
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
    for (const m of this.models.values()) await m.session?.release();
  }

  private async load(): Promise<void> {
    if (this.opts.loadDelayMs) await new Promise((r) => setTimeout(r, this.opts.loadDelayMs));
    for (const m of this.models.values()) {
      if (m.state !== "LOADING") continue;
      try {
        const file = join(
          this.opts.repo,
          m.name,
          m.version,
          String(m.config["default_model_filename"] || "model.onnx"),
        );
        const session = await ort.InferenceSession.create(file, {
          intraOpNumThreads: this.opts.threads ?? 1,
          interOpNumThreads: 1,
          graphOptimizationLevel: "all",
          logSeverityLevel: 3,
        });
        checkAgainstModel(m, session);
        m.session = session;
        m.batcher = new Batcher(m, session);
        m.state = "READY";
      } catch (err) {
        m.state = "UNAVAILABLE";
        m.reason = (err as Error).message;
      }
    }
  }

  private model(name: string, version: string | undefined, need: "any" | "ready"): Model {
    const m = this.models.get(name);
    if (!m) throw new ServeError("NOT_FOUND", `Request for unknown model: '${name}' is not found`);
    if (version && version !== m.version)
      throw new ServeError("NOT_FOUND", `Request for unknown model: '${name}' version ${version} is not found`);
    if (need === "ready" && m.state !== "READY")
      throw new ServeError(
        "UNAVAILABLE",
        `Request for unknown model: '${name}' has no available versions${m.reason ? ` (${m.reason})` : ""}`,
      );
    return m;
  }

  private metadata(m: Model): Record<string, unknown> {
    const shape = (t: IoConfig): number[] => (m.maxBatch > 0 ? [-1, ...t.dims] : t.dims);
    return {
      name: m.name,
      versions: [m.version],
      platform: String(m.config["platform"]),
      inputs: m.inputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: shape(t) })),
      outputs: m.outputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: shape(t) })),
      ...(this.opts.configEndpoint === false ? { parameters: { ...m.parameters } } : {}),
    };
  }

  /** Validates a request as Triton does and runs it; outputs in the requested order (default: all). */
  private async infer(
    m: Model,
    id: string | undefined,
    inputs: Tensor[],
    wanted: string[] | undefined,
  ): Promise<InferResponse> {
    const pre = id ? `[request id: ${id}] ` : "";
    const byName = new Map<string, Tensor>();
    for (const t of inputs) {
      if (byName.has(t.name)) throw new ServeError("INVALID_ARG", `${pre}input '${t.name}' is given twice`);
      if (!m.inputs.some((c) => c.name === t.name))
        throw new ServeError("INVALID_ARG", `${pre}unexpected inference input '${t.name}' for model '${m.name}'`);
      byName.set(t.name, t);
    }
    const missing = m.inputs.filter((c) => !c.optional && !byName.has(c.name)).map((c) => c.name);
    if (missing.length > 0)
      throw new ServeError(
        "INVALID_ARG",
        `${pre}expected ${m.inputs.length} inputs but got ${inputs.length} inputs for model '${m.name}'. Got input(s) [${inputs.map((t) => `'${t.name}'`).join(", ")}], but missing required input(s) [${missing.map((x) => `'${x}'`).join(", ")}]. Please provide all required input(s).`,
      );
    let batch = 0;
    const feeds: Record<string, ort.Tensor> = {};
    for (const c of m.inputs) {
      const t = byName.get(c.name);
      if (!t) continue;
      if (t.datatype !== c.datatype)
        throw new ServeError(
          "INVALID_ARG",
          `${pre}inference input '${t.name}' data-type is '${t.datatype}', but model '${m.name}' expects '${c.datatype}'`,
        );
      const full = m.maxBatch > 0 ? [-1, ...c.dims] : c.dims;
      const fits = t.shape.length === full.length && full.every((d, i) => d === -1 || d === t.shape[i]);
      if (!fits)
        throw new ServeError(
          "INVALID_ARG",
          `${pre}unexpected shape for input '${t.name}' for model '${m.name}'. Expected [${full.join(",")}], got [${t.shape.join(",")}]`,
        );
      let shape = t.shape;
      if (m.maxBatch > 0) {
        const b = t.shape[0]!;
        if (batch === 0) batch = b;
        else if (b !== batch)
          throw new ServeError("INVALID_ARG", `${pre}input '${t.name}' has batch size ${b}, other inputs ${batch}`);
        if (b < 1 || b > m.maxBatch)
          throw new ServeError(
            "INVALID_ARG",
            `${pre}inference request batch-size must be <= ${m.maxBatch} for '${m.name}' (got ${b})`,
          );
        if (c.reshape) shape = [b, ...c.reshape];
      } else if (c.reshape) shape = c.reshape;
      feeds[c.name] = new ort.Tensor(ORT_TYPES[t.datatype], t.data as Float32Array, shape);
    }
    for (const w of wanted ?? [])
      if (!m.outputs.some((o) => o.name === w))
        throw new ServeError("INVALID_ARG", `${pre}unexpected inference output '${w}' for model '${m.name}'`);
    const out = await m.batcher!.run(feeds, m.maxBatch > 0 ? batch : 1);
    if (this.opts.inferDelayMs) await new Promise((r) => setTimeout(r, this.opts.inferDelayMs));
    const names = wanted ?? m.outputs.map((o) => o.name);
    return {
      modelName: m.name,
      modelVersion: m.version,
      ...(id !== undefined ? { id } : {}),
      outputs: names.map((name) => {
        const y = out[name];
        if (!y) throw new ServeError("INTERNAL", `model '${m.name}' produced no output '${name}'`);
        const datatype = FROM_ORT[y.type];
        if (!datatype) throw new ServeError("INTERNAL", `output '${name}' has type ${y.type}, which is not served`);
        return { name, datatype, shape: [...y.dims], data: y.data as TensorData };
      }),
    };
  }

  // -------------------------------------------------------------------------------------------
  // HTTP

  private onHttp(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", () => res.destroy());
    req.on("end", () => {
      this.route(req, Buffer.concat(chunks)).then(
        (r) => send(res, r.status, r.body, r.headers),
        (err: unknown) => {
          const e =
            err instanceof ServeError
              ? err
              : err instanceof KServeProtocolError
                ? new ServeError("INVALID_ARG", err.message)
                : new ServeError("INTERNAL", (err as Error).message ?? String(err));
          send(res, HTTP_STATUS[e.code], Buffer.from(JSON.stringify({ error: e.message })), {
            "content-type": "application/json",
          });
        },
      );
    });
  }

  private async route(
    req: IncomingMessage,
    body: Buffer,
  ): Promise<{ status: number; body: Buffer; headers: Record<string, string> }> {
    const path = (req.url ?? "/").split("?")[0]!;
    const json = (v: unknown, status = 200): { status: number; body: Buffer; headers: Record<string, string> } => ({
      status,
      body: Buffer.from(JSON.stringify(v)),
      headers: { "content-type": "application/json" },
    });
    const empty = (status: number): { status: number; body: Buffer; headers: Record<string, string> } => ({
      status,
      body: Buffer.alloc(0),
      headers: {},
    });
    const method = req.method ?? "GET";
    const health = /^\/v2\/health\/(live|ready)$/.exec(path);
    const models = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(?:\/(ready|config|infer))?$/.exec(path);
    const want = (m: string): void => {
      if (method !== m) throw new ServeError("METHOD", "Method Not Allowed");
    };
    if (health) {
      want("GET");
      return empty(health[1] === "live" || this.ready() ? 200 : 400);
    }
    if (path === "/v2") {
      want("GET");
      return json({
        name: "actionflow-test-kserve",
        version: "2.0.0",
        extensions: ["binary_tensor_data", "model_configuration"],
      });
    }
    if (!models) return json({ error: "Not Found" }, 404);
    const name = decodeURIComponent(models[1]!);
    const version = models[2] !== undefined ? decodeURIComponent(models[2]) : undefined;
    const kind = models[3];
    if (kind === "ready") {
      want("GET");
      const m = this.models.get(name);
      return empty(m && m.state === "READY" && (!version || version === m.version) ? 200 : 400);
    }
    if (kind === undefined) {
      want("GET");
      return json(this.metadata(this.model(name, version, "ready")));
    }
    if (kind === "config") {
      want("GET");
      if (this.opts.configEndpoint === false) return json({ error: "Not Found" }, 404);
      return json(this.model(name, version, "ready").config);
    }
    want("POST");
    this.counts.http++;
    try {
      const m = this.model(name, version, "ready");
      const hl = req.headers[HEADER_LENGTH];
      const r = decodeRestInferRequest(body, hl === undefined ? undefined : Number(hl));
      const wanted: RequestedOutput[] | undefined = r.outputs;
      const out = await this.infer(
        m,
        r.id,
        r.inputs,
        wanted?.map((o) => o.name),
      );
      const binary = (n: string): boolean => wanted?.find((o) => o.name === n)?.binary ?? r.binaryOutputs;
      const enc = encodeRestInferResponse(out, binary);
      return {
        status: 200,
        body: enc.body,
        headers: {
          "content-type": enc.headerLength !== undefined ? "application/octet-stream" : "application/json",
          ...(enc.headerLength !== undefined ? { [HEADER_LENGTH]: String(enc.headerLength) } : {}),
        },
      };
    } catch (err) {
      this.counts.errors++;
      throw err;
    }
  }

  // -------------------------------------------------------------------------------------------
  // gRPC

  private grpcHandlers(): grpc.UntypedServiceImplementation {
    type Call = grpc.ServerUnaryCall<Record<string, unknown>, unknown>;
    type Cb = grpc.sendUnaryData<unknown>;
    const handle =
      (fn: (req: Record<string, unknown>) => unknown) =>
      (call: Call, cb: Cb): void => {
        Promise.resolve()
          .then(() => fn(call.request))
          .then(
            (res) => cb(null, res),
            (err: unknown) => {
              const e =
                err instanceof ServeError
                  ? err
                  : err instanceof KServeProtocolError
                    ? new ServeError("INVALID_ARG", err.message)
                    : new ServeError("INTERNAL", (err as Error).message ?? String(err));
              cb({ code: GRPC_STATUS[e.code], details: e.message, name: "ServeError", message: e.message });
            },
          );
      };
    const version = (r: Record<string, unknown>): string | undefined =>
      r["version"] ? String(r["version"]) : undefined;
    return {
      ServerLive: handle(() => ({ live: true })),
      ServerReady: handle(() => ({ ready: this.ready() })),
      ModelReady: handle((r) => {
        const m = this.models.get(String(r["name"]));
        const v = version(r);
        return { ready: m !== undefined && m.state === "READY" && (!v || v === m.version) };
      }),
      ServerMetadata: handle(() => ({
        name: "actionflow-test-kserve",
        version: "2.0.0",
        extensions: ["binary_tensor_data", "model_configuration"],
      })),
      ModelMetadata: handle((r) => this.metadata(this.model(String(r["name"]), version(r), "ready"))),
      ModelConfig: handle((r) => {
        if (this.opts.configEndpoint === false) throw new ServeError("UNSUPPORTED", "ModelConfig is not offered");
        return { config: this.model(String(r["name"]), version(r), "ready").config };
      }),
      ModelInfer: handle(async (r) => {
        this.counts.grpc++;
        try {
          const q = r as unknown as GrpcInferRequest;
          const m = this.model(q.model_name, q.model_version || undefined, "ready");
          const decoded = fromGrpcInferRequest(q);
          return toGrpcInferResponse(await this.infer(m, decoded.id, decoded.inputs, decoded.outputs));
        } catch (err) {
          this.counts.errors++;
          throw err;
        }
      }),
    };
  }
}

function send(res: ServerResponse, status: number, body: Buffer, headers: Record<string, string>): void {
  if (res.destroyed) return;
  res.writeHead(status, { ...headers, "content-length": String(body.byteLength) });
  res.end(body);
}

/** Reads every `<repo>/<model>/config.pbtxt` (refusing the repository when one does not parse, as Triton does). */
async function readRepository(repo: string): Promise<Map<string, Model>> {
  let entries: string[];
  try {
    entries = await readdir(repo);
  } catch (err) {
    throw new Error(`model repository ${repo}: not a readable folder`, { cause: err });
  }
  const models = new Map<string, Model>();
  const type = modelConfigProto();
  for (const dir of entries.sort()) {
    const cfgPath = join(repo, dir, "config.pbtxt");
    const text = await readFile(cfgPath, "utf8").catch(() => undefined);
    if (text === undefined) continue;
    const config = parseTextProto(text, type, cfgPath);
    const name = String(config["name"] || dir);
    if (name !== dir) throw new Error(`${cfgPath}: name '${name}' differs from its folder '${dir}'`);
    if (!config["platform"] && !config["backend"]) throw new Error(`${cfgPath}: neither platform nor backend is given`);
    if (config["platform"] && config["platform"] !== "onnxruntime_onnx")
      throw new Error(`${cfgPath}: platform '${String(config["platform"])}': this server runs onnxruntime_onnx only`);
    config["backend"] ||= "onnxruntime";
    const versions: number[] = [];
    for (const v of await readdir(join(repo, dir))) {
      if (/^\d+$/.test(v) && (await stat(join(repo, dir, v))).isDirectory()) versions.push(Number(v));
    }
    const version = versions.sort((a, b) => b - a)[0];
    const maxBatch = Number(config["max_batch_size"]);
    const db = config["dynamic_batching"] as { max_queue_delay_microseconds?: number } | null | undefined;
    const params: Record<string, string> = {};
    for (const [k, v] of Object.entries((config["parameters"] ?? {}) as Record<string, { string_value?: string }>))
      params[k] = v.string_value ?? "";
    const model: Model = {
      name,
      version: String(version ?? ""),
      state: version === undefined ? "UNAVAILABLE" : "LOADING",
      ...(version === undefined ? { reason: `${join(repo, dir)} has no numeric version folder` } : {}),
      config,
      maxBatch,
      dynamic: Boolean(db),
      // without dynamic_batching every request runs alone, at once
      queueDelayMs: db ? Number(db.max_queue_delay_microseconds ?? 0) / 1000 : 0,
      inputs: (config["input"] as Array<Record<string, unknown>>).map((v, i) => ioConfig(v, `${cfgPath}: input[${i}]`)),
      outputs: (config["output"] as Array<Record<string, unknown>>).map((v, i) =>
        ioConfig(v, `${cfgPath}: output[${i}]`),
      ),
      parameters: params,
    };
    models.set(name, model);
  }
  if (models.size === 0) throw new Error(`model repository ${repo}: no <model>/config.pbtxt found`);
  return models;
}

/** What Triton checks when it loads an ONNX model: the config's inputs and outputs exist with these types and dims. */
function checkAgainstModel(m: Model, s: ort.InferenceSession): void {
  const check = (cfg: IoConfig[], meta: readonly ort.InferenceSession.ValueMetadata[], what: string): void => {
    for (const c of cfg) {
      const v = meta.find((x) => x.name === c.name);
      if (!v) throw new Error(`unable to load model '${m.name}': ${what} '${c.name}' is not in the model`);
      if (!v.isTensor) throw new Error(`unable to load model '${m.name}': ${what} '${c.name}' is not a tensor`);
      if (FROM_ORT[v.type] !== c.datatype)
        throw new Error(
          `unable to load model '${m.name}': ${what} '${c.name}' data-type is ${c.datatype} in the config, ${v.type} in the model`,
        );
      const dims = v.shape.map((d) => (typeof d === "number" ? d : -1));
      const want = m.maxBatch > 0 ? [-1, ...(c.reshape ?? c.dims)] : (c.reshape ?? c.dims);
      const ok = dims.length === want.length && dims.every((d, i) => d === -1 || want[i] === -1 || d === want[i]);
      if (!ok)
        throw new Error(
          `unable to load model '${m.name}': ${what} '${c.name}' dims [${want.join(",")}] in the config do not match [${dims.join(",")}] in the model`,
        );
    }
  };
  check(m.inputs, s.inputMetadata, "input");
  check(m.outputs, s.outputMetadata, "output");
}
