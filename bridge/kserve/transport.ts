/**
 * What the KServe policy needs from a KServe v2 server, whatever carries it: one interface, one
 * adapter per protocol (`http-transport.ts`: REST with the binary tensor extension;
 * `grpc-transport.ts`: `inference.GRPCInferenceService`), and the one error type both raise, whose
 * `kind` tells a caller whether the server was reached at all.
 */
import type { InferRequest, InferResponse, ModelConfigInfo, ModelMetadata } from "./protocol.ts";

/** The two ways to reach a KServe v2 server. */
export const KSERVE_PROTOCOLS = ["http", "grpc"] as const;
/** `http` (REST, binary tensor extension) or `grpc`. */
export type KServeProtocol = (typeof KSERVE_PROTOCOLS)[number];

/**
 * Why a call failed: `unreachable` (no connection, or it broke before a reply: the request may not
 * have reached the server), `timeout` (no reply within the deadline; a late reply is never
 * delivered), `unavailable` (the server answered 503 / UNAVAILABLE: not ready, overloaded),
 * `rejected` (any other error reply: a bad request, an unknown model, an internal error), and
 * `protocol` (a reply that breaks the protocol).
 */
export type KServeErrorKind = "unreachable" | "timeout" | "unavailable" | "rejected" | "protocol";

/** A failed call to a KServe server; the message names the URL (and the model when there is one). */
export class KServeError extends Error {
  override readonly name = "KServeError";
  constructor(
    message: string,
    readonly kind: KServeErrorKind,
    /** HTTP status or gRPC status name of an error reply. */
    readonly status?: number | string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Per-call options. */
export interface CallOptions {
  /** Milliseconds until the call fails with a `timeout` (the request is cancelled). */
  timeoutMs: number;
}

/** A connection to one KServe v2 server (the model and version are per call). */
export interface KServeTransport {
  readonly protocol: KServeProtocol;
  /** The server's address as given, for messages. */
  readonly url: string;
  /** `GET /v2/health/live` / `ServerLive`. */
  serverLive(o: CallOptions): Promise<boolean>;
  /** `GET /v2/health/ready` / `ServerReady`. */
  serverReady(o: CallOptions): Promise<boolean>;
  /** `GET /v2/models/<m>[/versions/<v>]/ready` / `ModelReady`. */
  modelReady(model: string, version: string | undefined, o: CallOptions): Promise<boolean>;
  /** `GET /v2/models/<m>[/versions/<v>]` / `ModelMetadata`. */
  modelMetadata(model: string, version: string | undefined, o: CallOptions): Promise<ModelMetadata>;
  /**
   * `GET /v2/models/<m>[/versions/<v>]/config` / `ModelConfig` (Triton's model-configuration
   * extension); undefined when the server does not offer it (404 / UNIMPLEMENTED).
   */
  modelConfig(model: string, version: string | undefined, o: CallOptions): Promise<ModelConfigInfo | undefined>;
  /** `POST /v2/models/<m>[/versions/<v>]/infer` / `ModelInfer`. */
  infer(model: string, version: string | undefined, req: InferRequest, o: CallOptions): Promise<InferResponse>;
  /** Closes connections; later calls fail. */
  close(): void;
}

/** The address part of a URL for messages: `http://host:8000`, `grpc://host:8001`. */
export function describeUrl(url: string): string {
  return url.replace(/\/+$/, "");
}
