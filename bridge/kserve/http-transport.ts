/**
 * {@link KServeTransport} over HTTP/REST (Node's `fetch`, connections kept alive): infer requests
 * and responses with the binary tensor extension by default (a JSON header plus raw little-endian
 * tensors, `Inference-Header-Content-Length`), or all JSON (`binary: false`). Every call has a
 * deadline: at `timeoutMs` the request is aborted and a reply arriving later is never read.
 */
import {
  decodeRestInferResponse,
  encodeRestInferRequest,
  errorMessage,
  parseJsonText,
  parseModelConfig,
  parseModelMetadata,
  type InferRequest,
  type InferResponse,
  type ModelConfigInfo,
  type ModelMetadata,
  type RestBody,
} from "./protocol.ts";
import { KServeError, type CallOptions, type KServeTransport } from "./transport.ts";

/** The header carrying the JSON header's length in a binary-extension body. */
export const HEADER_LENGTH = "inference-header-content-length";

/** Options of {@link HttpTransport}. */
export interface HttpTransportOptions {
  /** Send inputs and ask for outputs as binary data (default true); false: JSON `data` arrays. */
  binary?: boolean;
}

interface Reply {
  status: number;
  body: Buffer;
  headerLength?: number;
}

/** The REST adapter; `url` is the server's base, e.g. `http://127.0.0.1:8000`. */
export class HttpTransport implements KServeTransport {
  readonly protocol = "http";
  readonly url: string;
  private readonly binary: boolean;
  private closed = false;

  constructor(url: string, opts: HttpTransportOptions = {}) {
    let u: URL;
    try {
      u = new URL(url);
    } catch (err) {
      throw new KServeError(`KServe URL '${url}' is not a URL (expected http://host:port)`, "rejected", undefined, {
        cause: err,
      });
    }
    if (u.protocol !== "http:" && u.protocol !== "https:")
      throw new KServeError(`KServe URL '${url}': the http protocol needs an http:// or https:// URL`, "rejected");
    this.url = url.replace(/\/+$/, "");
    this.binary = opts.binary ?? true;
  }

  async serverLive(o: CallOptions): Promise<boolean> {
    return (await this.call("GET", "/v2/health/live", undefined, o)).status === 200;
  }

  async serverReady(o: CallOptions): Promise<boolean> {
    return (await this.call("GET", "/v2/health/ready", undefined, o)).status === 200;
  }

  async modelReady(model: string, version: string | undefined, o: CallOptions): Promise<boolean> {
    return (await this.call("GET", `${modelPath(model, version)}/ready`, undefined, o)).status === 200;
  }

  async modelMetadata(model: string, version: string | undefined, o: CallOptions): Promise<ModelMetadata> {
    const path = modelPath(model, version);
    const r = this.ok(await this.call("GET", path, undefined, o), "GET", path);
    return parseModelMetadata(parseJsonText(r.body.toString("utf8"), this.where(path)), this.where(path));
  }

  async modelConfig(model: string, version: string | undefined, o: CallOptions): Promise<ModelConfigInfo | undefined> {
    const path = `${modelPath(model, version)}/config`;
    const r = await this.call("GET", path, undefined, o);
    if (r.status === 404 || r.status === 405 || r.status === 501) return undefined;
    this.ok(r, "GET", path);
    return parseModelConfig(parseJsonText(r.body.toString("utf8"), this.where(path)), this.where(path));
  }

  async infer(model: string, version: string | undefined, req: InferRequest, o: CallOptions): Promise<InferResponse> {
    const path = `${modelPath(model, version)}/infer`;
    const r = this.ok(
      await this.call("POST", path, encodeRestInferRequest(req, { binary: this.binary }), o),
      "POST",
      path,
    );
    try {
      return decodeRestInferResponse(r.body, r.headerLength);
    } catch (err) {
      throw new KServeError(`${this.where(path)}: ${(err as Error).message}`, "protocol", r.status, { cause: err });
    }
  }

  close(): void {
    this.closed = true;
  }

  private where(path: string): string {
    return `${this.url}${path}`;
  }

  private ok(r: Reply, method: string, path: string): Reply {
    if (r.status === 200) return r;
    throw new KServeError(
      `${method} ${this.where(path)}: HTTP ${r.status}: ${errorMessage(r.body.toString("utf8"))}`,
      r.status === 503 ? "unavailable" : "rejected",
      r.status,
    );
  }

  private async call(method: "GET" | "POST", path: string, body: RestBody | undefined, o: CallOptions): Promise<Reply> {
    if (this.closed) throw new KServeError(`${this.where(path)}: the client was closed`, "unreachable");
    const headers: Record<string, string> = {};
    if (body) {
      headers["content-type"] = body.headerLength !== undefined ? "application/octet-stream" : "application/json";
      if (body.headerLength !== undefined) headers[HEADER_LENGTH] = String(body.headerLength);
    }
    const signal = AbortSignal.timeout(Math.max(1, Math.ceil(o.timeoutMs)));
    try {
      const res = await fetch(this.where(path), {
        method,
        headers,
        ...(body ? { body: body.body } : {}),
        signal,
      });
      const buf = Buffer.from(await res.arrayBuffer());
      const hl = res.headers.get(HEADER_LENGTH);
      return { status: res.status, body: buf, ...(hl !== null ? { headerLength: Number(hl) } : {}) };
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      if (e.name === "TimeoutError" || e.name === "AbortError" || signal.aborted)
        throw new KServeError(
          `${method} ${this.where(path)}: no reply within ${o.timeoutMs} ms`,
          "timeout",
          undefined,
          {
            cause: err,
          },
        );
      const why = e.cause?.code ?? e.cause?.message ?? e.message;
      throw new KServeError(
        `KServe server ${this.url} is not reachable (${method} ${path}: ${why})`,
        "unreachable",
        undefined,
        {
          cause: err,
        },
      );
    }
  }
}

/** `/v2/models/<m>` or `/v2/models/<m>/versions/<v>`, names URL-encoded. */
export function modelPath(model: string, version: string | undefined): string {
  return `/v2/models/${encodeURIComponent(model)}${version ? `/versions/${encodeURIComponent(version)}` : ""}`;
}
