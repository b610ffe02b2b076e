/**
 * {@link KServeTransport} over gRPC (`@grpc/grpc-js`): `inference.GRPCInferenceService` with tensors
 * in `raw_input_contents` / `raw_output_contents`. Every call carries a gRPC deadline: past it the
 * call ends with DEADLINE_EXCEEDED and its reply, if one comes, is dropped by the library.
 * Reconnection backs off from 100 ms to at most 1 s (grpc-js defaults: 1 s to 120 s), so a server
 * that comes back is found within about a second; calls never wait for a connection
 * (`waitForReady` false): while the server is down they fail at once with UNAVAILABLE.
 */
import * as grpc from "@grpc/grpc-js";
import { fromGrpcInferResponse, inferenceService, toGrpcInferRequest, type GrpcInferResponse } from "./grpc-codec.ts";
import {
  KServeProtocolError,
  parseModelConfig,
  parseModelMetadata,
  type InferRequest,
  type InferResponse,
  type ModelConfigInfo,
  type ModelMetadata,
} from "./protocol.ts";
import { KServeError, type CallOptions, type KServeTransport } from "./transport.ts";

type Unary = (
  req: unknown,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res: unknown) => void,
) => grpc.ClientUnaryCall;

/** Connection-level UNAVAILABLE (no server there, or the connection broke) rather than the server's own answer. */
const CONNECTION_FAILURE =
  /no connection established|connection dropped|failed to connect|ECONNREFUSED|ECONNRESET|EPIPE/i;

/**
 * The address a gRPC URL names: `grpc://host:port`, `grpcs://host:port` (TLS), `http(s)://host:port`
 * (the scheme only picks TLS) or plain `host:port`.
 */
export function grpcTarget(url: string): { target: string; tls: boolean } {
  const m = /^(grpcs?|https?):\/\/([^/]+)\/?$/.exec(url);
  if (m) return { target: m[2]!, tls: m[1] === "grpcs" || m[1] === "https" };
  if (/^[^/:]+:\d+$/.test(url) || /^\[[^\]]+\]:\d+$/.test(url)) return { target: url, tls: false };
  throw new KServeError(
    `KServe URL '${url}': the grpc protocol needs grpc://host:port (or host:port; grpcs:// for TLS)`,
    "rejected",
  );
}

/** The gRPC adapter. */
export class GrpcTransport implements KServeTransport {
  readonly protocol = "grpc";
  readonly url: string;
  private readonly client: grpc.Client;

  constructor(url: string) {
    const { target, tls } = grpcTarget(url);
    this.url = url.replace(/\/+$/, "");
    const Service = inferenceService();
    this.client = new Service(target, tls ? grpc.credentials.createSsl() : grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": -1,
      "grpc.max_send_message_length": -1,
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 1000,
    });
  }

  async serverLive(o: CallOptions): Promise<boolean> {
    return ((await this.unary("ServerLive", {}, o)) as { live: boolean }).live === true;
  }

  async serverReady(o: CallOptions): Promise<boolean> {
    return this.readiness("ServerReady", {}, o);
  }

  async modelReady(model: string, version: string | undefined, o: CallOptions): Promise<boolean> {
    return this.readiness("ModelReady", { name: model, version: version ?? "" }, o);
  }

  async modelMetadata(model: string, version: string | undefined, o: CallOptions): Promise<ModelMetadata> {
    const where = `${this.url} ModelMetadata '${model}'`;
    return parseModelMetadata(
      await this.unary("ModelMetadata", { name: model, version: version ?? "" }, o, model),
      where,
    );
  }

  async modelConfig(model: string, version: string | undefined, o: CallOptions): Promise<ModelConfigInfo | undefined> {
    let r: unknown;
    try {
      r = await this.unary("ModelConfig", { name: model, version: version ?? "" }, o, model);
    } catch (err) {
      if (err instanceof KServeError && err.status === "UNIMPLEMENTED") return undefined;
      throw err;
    }
    const config = (r as { config?: unknown }).config;
    return parseModelConfig(config, `${this.url} ModelConfig '${model}'`);
  }

  async infer(model: string, version: string | undefined, req: InferRequest, o: CallOptions): Promise<InferResponse> {
    const r = (await this.unary("ModelInfer", toGrpcInferRequest(model, version, req), o, model)) as GrpcInferResponse;
    try {
      return fromGrpcInferResponse(r);
    } catch (err) {
      if (err instanceof KServeProtocolError)
        throw new KServeError(`${this.url} ModelInfer '${model}': ${err.message}`, "protocol", undefined, {
          cause: err,
        });
      throw err;
    }
  }

  close(): void {
    this.client.close();
  }

  /** A readiness call: an error reply (other than no connection at all) means not ready. */
  private async readiness(method: string, req: unknown, o: CallOptions): Promise<boolean> {
    try {
      return ((await this.unary(method, req, o)) as { ready: boolean }).ready === true;
    } catch (err) {
      if (err instanceof KServeError && (err.kind === "rejected" || err.kind === "unavailable")) return false;
      throw err;
    }
  }

  private unary(method: string, req: unknown, o: CallOptions, model?: string): Promise<unknown> {
    const fn = (this.client as unknown as Record<string, Unary>)[method];
    if (!fn) throw new Error(`GrpcTransport: no method ${method}`);
    const what = `${this.url} ${method}${model !== undefined ? ` '${model}'` : ""}`;
    return new Promise((resolve, reject) => {
      fn.call(
        this.client,
        req,
        new grpc.Metadata(),
        { deadline: Date.now() + Math.max(1, o.timeoutMs) },
        (err: grpc.ServiceError | null, res: unknown) => {
          if (!err) return resolve(res);
          const name = grpc.status[err.code] ?? String(err.code);
          if (err.code === grpc.status.DEADLINE_EXCEEDED)
            return reject(
              new KServeError(`${what}: no reply within ${o.timeoutMs} ms`, "timeout", name, { cause: err }),
            );
          if (err.code === grpc.status.UNAVAILABLE && CONNECTION_FAILURE.test(err.details))
            return reject(
              new KServeError(
                `KServe server ${this.url} is not reachable (${method}: ${err.details})`,
                "unreachable",
                name,
                {
                  cause: err,
                },
              ),
            );
          reject(
            new KServeError(
              `${what}: ${name}: ${err.details}`,
              err.code === grpc.status.UNAVAILABLE ? "unavailable" : "rejected",
              name,
              { cause: err },
            ),
          );
        },
      );
    });
  }
}
