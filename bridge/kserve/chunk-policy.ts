/**
 * A policy served by a KServe v2 server (Triton Inference Server, or any server speaking the Open
 * Inference Protocol that serves the repository `actionflow export --triton` writes) as the one
 * {@link ChunkPolicy} the control loop drives: `KServeChunkPolicy.connect({url, model, protocol})`.
 *
 * Start-up checks, each failure an error naming the URL and the model: the server is live (else
 * "not reachable"), the model is ready, the server is ready, and the model's metadata matches what
 * this client sends: `obs.<name>` FP32 `[-1, ...rawShape]` per feature, `noise` FP32 `[-1, H, A]`
 * (flow heads), `prefix` FP32 `[-1, H, rawA]` and `prefix_len` INT64 `[-1]` (or `[-1, 1]` as
 * Triton declares it), output `actions` FP32 `[-1, H, rawA]`; no other required input. The horizon,
 * dims, fps, rtc_max_delay and features come from the `actionflow.*` parameters of the model
 * configuration (Triton's `/config` endpoint or gRPC `ModelConfig`), else from the optional
 * `parameters` of the metadata.
 *
 * `sampleChunk` validates the observation as the local ONNX policy does (missing feature, wrong
 * length, NaN/Inf refused, naming the feature), draws the noise here with the same seeded streams
 * as `OnnxPolicy` (so a chunk equals the local policy's for the same seed), sends real-time
 * chunking's prefix as `prefix`/`prefix_len`, and refuses a reply that is not this request's (its
 * `id`), not `[1, H, rawA]`, or holds NaN/Inf.
 *
 * Timeouts and retries never deliver a stale chunk: every call has one deadline (`timeoutMs`) that
 * covers its retries; at the deadline the request is cancelled and a late reply is never read. A
 * failed send (connection refused or broken, HTTP 503, gRPC UNAVAILABLE) is retried at once, with
 * the same observation and noise, only within `retryWithinMs` of the call (the observation is still
 * current); after that the call fails and the caller asks again with a fresh observation. While the
 * server stays unreachable (or answers 503 / UNAVAILABLE) the policy backs off (50 ms doubling to 1 s): a call in a back-off
 * window waits for its end and then fails without sending its (by then old) observation, so the
 * loop holds, reports about one error per back-off, and the first request after the server returns
 * carries an observation taken at that moment. Chunks of an older connection epoch are the loop's
 * to discard (`bridge/loop.ts`).
 */
import type { ChunkPolicy, ChunkRequest, Observation } from "../../policy/chunk-policy.ts";
import { obsInputName } from "../../policy/onnx/graphs.ts";
import { FeaturesMetadataSchema, type FeatureIO } from "../../policy/onnx/schema.ts";
import { parseJson } from "../../policy/io/json.ts";
import { Rng } from "../../policy/random.ts";
import { GrpcTransport } from "./grpc-transport.ts";
import { HttpTransport } from "./http-transport.ts";
import type { InferResponse, ModelConfigInfo, ModelMetadata, Tensor, TensorMetadata } from "./protocol.ts";
import { KServeError, type KServeProtocol, type KServeTransport } from "./transport.ts";

/** Options of {@link KServeChunkPolicy.connect}. */
export interface KServeChunkPolicyOptions {
  /** The server: `http://host:8000` (REST) or `grpc://host:8001` (also `host:8001` with `protocol: "grpc"`). */
  url: string;
  /** The model's name in the repository (`actionflow export --triton --name`, default `policy`). */
  model: string;
  /** A model version (default: the server's choice, the latest). */
  version?: string;
  /** Default: `grpc` for a `grpc://` or `grpcs://` URL, else `http`. */
  protocol?: KServeProtocol;
  /** REST only: tensors as binary data (default true) or JSON arrays. */
  binary?: boolean;
  /** Deadline of one chunk request, retries included, ms (default 1000). */
  timeoutMs?: number;
  /** Immediate retries of a failed send (default 1). */
  retries?: number;
  /** A failed send is retried only this soon after the call began, ms (default 50). */
  retryWithinMs?: number;
  /** Deadline of each start-up call, ms (default 5000). */
  connectTimeoutMs?: number;
  /** Seed of the noise drawn before the first `reset` when a call gives neither noise nor seed (default 0). */
  seed?: number;
  /**
   * The observation keys the caller will send (a robot profile's `state_feature` and features): connect
   * fails when the model needs a feature that is not among them. Default: not checked.
   */
  observationKeys?: readonly string[];
  /** Use this transport instead of one made from `url` and `protocol` (tests, custom channels). */
  transport?: KServeTransport;
}

/** Counters of a {@link KServeChunkPolicy}. */
export interface KServeStats {
  /** `sampleChunk` calls. */
  calls: number;
  /** Chunks returned. */
  chunks: number;
  /** Immediate re-sends after a failed send. */
  retries: number;
  /** Calls that hit their deadline. */
  timeouts: number;
  /** Calls failed inside a back-off window without sending. */
  heldBack: number;
  /** Calls that failed (timeouts and held-back calls included). */
  errors: number;
}

/** The `actionflow.*` parameters the client needs, checked. */
interface ModelFacts {
  horizon: number;
  actionDim: number;
  modelActionDim: number;
  fps?: number;
  rtcMaxDelay: number;
  features: FeatureIO[];
  noise: boolean;
  solver: string;
  steps: number;
}

const now = (): number => performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function positiveInt(p: Record<string, string>, key: string, where: string): number {
  const v = Number(p[key]);
  if (!Number.isInteger(v) || v < 1)
    throw new Error(`${where}: parameter '${key}' must be a positive integer, got ${JSON.stringify(p[key] ?? null)}`);
  return v;
}

/** Reads and checks the actionflow parameters of a served model. */
function modelFacts(p: Record<string, string>, where: string): ModelFacts {
  if (p["actionflow.graph"] === undefined)
    throw new Error(
      `${where}: the model has no actionflow parameters (actionflow.graph, actionflow.horizon, ...); serve a repository written by 'actionflow export <run> --triton <repo>'`,
    );
  if (p["actionflow.graph"] !== "sample")
    throw new Error(
      `${where}: parameter 'actionflow.graph' is '${p["actionflow.graph"]}', not 'sample' (serve policy.onnx)`,
    );
  const horizon = positiveInt(p, "actionflow.horizon", where);
  const actionDim = positiveInt(p, "actionflow.action_dim", where);
  const modelActionDim = positiveInt(p, "actionflow.model_action_dim", where);
  const rtc = Number(p["actionflow.rtc_max_delay"] ?? 0);
  if (!Number.isInteger(rtc) || rtc < 0 || rtc >= horizon)
    throw new Error(
      `${where}: parameter 'actionflow.rtc_max_delay' must be an integer in 0..${horizon - 1}, got ${JSON.stringify(p["actionflow.rtc_max_delay"])}`,
    );
  const fpsText = p["actionflow.fps"];
  const fps = fpsText === undefined ? undefined : Number(fpsText);
  if (fps !== undefined && !(Number.isFinite(fps) && fps > 0))
    throw new Error(`${where}: parameter 'actionflow.fps' must be a positive number, got ${JSON.stringify(fpsText)}`);
  const features = parseJson(
    p["actionflow.features"] ?? "",
    FeaturesMetadataSchema,
    `${where}: parameter 'actionflow.features'`,
  );
  const noise = (p["actionflow.noise"] ?? "input") === "input";
  return {
    horizon,
    actionDim,
    modelActionDim,
    ...(fps !== undefined ? { fps } : {}),
    rtcMaxDelay: rtc,
    features,
    noise,
    solver: p["actionflow.solver"] ?? "unknown",
    steps: Number(p["actionflow.steps"] ?? 0),
  };
}

/** Whether a served shape (`-1`: any) accepts `dims`. */
function shapeFits(served: readonly number[], dims: readonly number[]): boolean {
  return served.length === dims.length && served.every((d, i) => d === -1 || d === dims[i]);
}

/** An input the client sends: name, datatype and the shape of one request (batch 1). */
interface Planned {
  name: string;
  datatype: "FP32" | "INT64";
  shape: number[];
}

/** A policy served by a KServe v2 server; see the module doc. `close()` when done. */
export class KServeChunkPolicy implements ChunkPolicy {
  readonly horizon: number;
  readonly actionDim: number;
  readonly fps?: number;
  readonly rtcMaxDelay: number;
  /** The model's padded action dim: the noise is `[horizon * modelActionDim]`. */
  readonly modelActionDim: number;
  /** Observation features: model name, dataset key, raw shape. */
  readonly features: readonly FeatureIO[];
  readonly solver: string;
  readonly steps: number;
  /** `kserve <protocol> <url> model '<m>'`, for messages. */
  readonly source: string;

  private readonly rng: Rng;
  private seeds: Rng | undefined;
  private nextId = 1;
  /** Back-off while the server is unreachable: no send before `retryAt` (performance.now() ms). */
  private backoffMs = 0;
  private retryAt = 0;
  private downSinceMs: number | undefined;
  private readonly counts: KServeStats = { calls: 0, chunks: 0, retries: 0, timeouts: 0, heldBack: 0, errors: 0 };
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly retryWithinMs: number;
  /** Whether the graph takes a `noise` input (flow heads). */
  private readonly noiseInput: boolean;

  private constructor(
    private readonly transport: KServeTransport,
    private readonly opts: KServeChunkPolicyOptions,
    facts: ModelFacts,
    private readonly prefixLenShape: number[],
    /** The model's metadata as the server reported it. */
    readonly metadata: ModelMetadata,
    /** The model's configuration, when the server offers the configuration endpoint. */
    readonly config: ModelConfigInfo | undefined,
  ) {
    this.horizon = facts.horizon;
    this.actionDim = facts.actionDim;
    this.modelActionDim = facts.modelActionDim;
    if (facts.fps !== undefined) this.fps = facts.fps;
    this.rtcMaxDelay = facts.rtcMaxDelay;
    this.features = facts.features;
    this.solver = facts.solver;
    this.steps = facts.steps;
    this.noiseInput = facts.noise;
    this.source = `kserve ${transport.protocol} ${transport.url} model '${opts.model}'${opts.version ? ` version ${opts.version}` : ""}`;
    this.rng = new Rng(opts.seed ?? 0);
    this.timeoutMs = opts.timeoutMs ?? 1000;
    this.retries = opts.retries ?? 1;
    this.retryWithinMs = opts.retryWithinMs ?? 50;
    for (const [k, v] of [
      ["timeoutMs", this.timeoutMs],
      ["retryWithinMs", this.retryWithinMs],
    ] as const)
      if (!(Number.isFinite(v) && v > 0)) throw new Error(`${this.source}: ${k} must be a positive number, got ${v}`);
    if (!Number.isInteger(this.retries) || this.retries < 0)
      throw new Error(`${this.source}: retries must be an integer >= 0, got ${this.retries}`);
  }

  /**
   * Connects: runs the start-up checks (see the module doc) and resolves with the policy, or
   * rejects with an error naming the URL and the model.
   */
  static async connect(opts: KServeChunkPolicyOptions): Promise<KServeChunkPolicy> {
    const protocol = opts.protocol ?? (/^grpcs?:\/\//.test(opts.url) ? "grpc" : "http");
    const transport =
      opts.transport ??
      (protocol === "grpc"
        ? new GrpcTransport(opts.url)
        : new HttpTransport(opts.url, opts.binary !== undefined ? { binary: opts.binary } : {}));
    try {
      return await KServeChunkPolicy.check(transport, opts);
    } catch (err) {
      transport.close();
      throw err;
    }
  }

  private static async check(t: KServeTransport, opts: KServeChunkPolicyOptions): Promise<KServeChunkPolicy> {
    const call = { timeoutMs: opts.connectTimeoutMs ?? 5000 };
    const model = opts.model;
    const server = `KServe ${t.protocol} server ${t.url}`;
    const where = `model '${model}'${opts.version ? ` version ${opts.version}` : ""} at ${t.url}`;
    const wrap = (err: unknown, what: string): Error =>
      err instanceof KServeError && err.kind === "unreachable"
        ? new KServeError(`${err.message}; is the server running?`, err.kind, err.status, { cause: err })
        : new Error(`${what}: ${(err as Error).message}`, { cause: err });
    let live: boolean;
    try {
      live = await t.serverLive(call);
    } catch (err) {
      throw wrap(err, server);
    }
    if (!live) throw new Error(`${server} is not live (/v2/health/live)`);
    let ready: boolean;
    try {
      ready = await t.modelReady(model, opts.version, call);
    } catch (err) {
      throw wrap(err, where);
    }
    if (!ready) {
      // the metadata call says why: an unknown model, or one still loading
      const why = await t.modelMetadata(model, opts.version, call).then(
        () => "the server has it but it is not ready (loading, or failed to load)",
        (err: unknown) => (err as Error).message,
      );
      throw new Error(`${where} is not ready: ${why}`);
    }
    let serverReady: boolean;
    try {
      serverReady = await t.serverReady(call);
    } catch (err) {
      throw wrap(err, server);
    }
    if (!serverReady) throw new Error(`${server} is not ready (/v2/health/ready), although ${where} is`);
    let metadata: ModelMetadata;
    let config: ModelConfigInfo | undefined;
    try {
      metadata = await t.modelMetadata(model, opts.version, call);
      config = await t.modelConfig(model, opts.version, call);
    } catch (err) {
      throw wrap(err, where);
    }
    const facts = modelFacts(config?.parameters ?? metadata.parameters, where);
    const prefixLenShape = checkSignature(metadata, facts, where);
    if (opts.observationKeys) {
      const sent = new Set(opts.observationKeys);
      for (const f of facts.features)
        if (!sent.has(f.key) && !sent.has(f.name))
          throw new Error(
            `${where} needs observation feature '${f.key}' (shape [${f.rawShape.join(", ")}]), which is not among what the loop sends (${[...sent].join(", ") || "nothing"})`,
          );
    }
    return new KServeChunkPolicy(t, opts, facts, prefixLenShape, metadata, config);
  }

  /** Counters so far. */
  stats(): KServeStats {
    return { ...this.counts };
  }

  /**
   * Samples a chunk: raw actions `[horizon * actionDim]`, row-major over `[horizon, actionDim]`.
   * Rejects (a {@link KServeError} for transport failures) on a bad observation, a timeout, an
   * unreachable server or a reply that is not a finite chunk of this request.
   */
  async sampleChunk(observation: Observation, req: ChunkRequest = {}): Promise<Float32Array> {
    this.counts.calls++;
    try {
      const inputs = this.inputs(observation, req);
      const chunk = await this.send(inputs);
      this.counts.chunks++;
      return chunk;
    } catch (err) {
      this.counts.errors++;
      throw err;
    }
  }

  /** Starts a new episode: later calls without noise or seed draw their seeds from `new Rng(seed).fork()`. */
  reset(seed: number): void {
    this.seeds = new Rng(seed).fork();
  }

  /** Closes the connection. */
  close(): void {
    this.transport.close();
  }

  private async send(inputs: Tensor[]): Promise<Float32Array> {
    const t0 = now();
    if (t0 < this.retryAt) {
      // the server was unreachable or unavailable a moment ago: wait out the back-off, then hand
      // the call back unsent so that the caller retries with an observation taken now
      await sleep(this.retryAt - t0);
      // waited out: the next call is sent (a timer may fire a fraction of a millisecond early)
      this.retryAt = 0;
      this.counts.heldBack++;
      const down = this.downSinceMs !== undefined ? ((now() - this.downSinceMs) / 1000).toFixed(1) : "?";
      throw new KServeError(
        `${this.source}: the server has been unreachable or unavailable for ${down} s; this request was held back ${(now() - t0).toFixed(0)} ms and not sent (ask again with a fresh observation)`,
        "unreachable",
      );
    }
    const deadline = t0 + this.timeoutMs;
    const id = String(this.nextId++);
    for (let attempt = 0; ; attempt++) {
      const remaining = deadline - now();
      if (remaining <= 0) {
        this.counts.timeouts++;
        throw new KServeError(`${this.source}: no chunk within ${this.timeoutMs} ms`, "timeout");
      }
      let res: InferResponse;
      try {
        res = await this.transport.infer(
          this.opts.model,
          this.opts.version,
          { id, inputs, outputs: ["actions"] },
          {
            timeoutMs: remaining,
          },
        );
      } catch (err) {
        if (!(err instanceof KServeError)) throw err;
        const sendFailed = err.kind === "unreachable" || err.kind === "unavailable";
        if (sendFailed && attempt < this.retries && now() - t0 < this.retryWithinMs) {
          this.counts.retries++;
          continue;
        }
        if (sendFailed) {
          this.downSinceMs ??= t0;
          this.backoffMs = Math.min(1000, Math.max(50, this.backoffMs * 2));
          this.retryAt = now() + this.backoffMs;
        }
        if (err.kind === "timeout") this.counts.timeouts++;
        throw new KServeError(`${this.source}: ${err.message}`, err.kind, err.status, { cause: err });
      }
      this.backoffMs = 0;
      this.retryAt = 0;
      this.downSinceMs = undefined;
      if (now() > deadline) {
        // the transport enforces the deadline; this guards against one that does not
        this.counts.timeouts++;
        throw new KServeError(
          `${this.source}: the chunk came after the ${this.timeoutMs} ms deadline; discarded`,
          "timeout",
        );
      }
      return this.actions(res, id);
    }
  }

  private actions(res: InferResponse, id: string): Float32Array {
    if (res.id !== undefined && res.id !== id)
      throw new KServeError(`${this.source}: the reply is for request '${res.id}', not '${id}'; discarded`, "protocol");
    const y = res.outputs.find((t) => t.name === "actions");
    if (!y)
      throw new KServeError(
        `${this.source}: the reply has no 'actions' output (got ${res.outputs.map((t) => t.name).join(", ") || "none"})`,
        "protocol",
      );
    const H = this.horizon;
    const A = this.actionDim;
    if (y.datatype !== "FP32" || !shapeFits([1, H, A], y.shape))
      throw new KServeError(
        `${this.source}: 'actions' is ${y.datatype} [${y.shape.join(", ")}], expected FP32 [1, ${H}, ${A}]`,
        "protocol",
      );
    const actions = y.data as Float32Array;
    for (let i = 0; i < actions.length; i++)
      if (!Number.isFinite(actions[i]!))
        throw new KServeError(
          `${this.source}: the model produced a non-finite action ${actions[i]} at step ${Math.floor(i / A)}, dim ${i % A}; refusing to return it`,
          "protocol",
        );
    return actions.slice();
  }

  /** The request's tensors (batch 1), validated as the local ONNX policy validates its feeds. */
  private inputs(observation: Observation, opts: ChunkRequest): Tensor[] {
    const out: Tensor[] = [];
    for (const f of this.features) {
      const byName = observation[f.name];
      const byKey = f.key !== f.name ? observation[f.key] : undefined;
      if (byName !== undefined && byKey !== undefined && byName !== byKey)
        throw new Error(`observation feature '${f.name}' is given twice, as '${f.name}' and as '${f.key}'`);
      const x = byName ?? byKey;
      if (x === undefined)
        throw new Error(
          `observation feature '${f.key}' (model name '${f.name}') is missing; got ${Object.keys(observation).join(", ") || "nothing"}`,
        );
      if (!(x instanceof Float32Array)) throw new TypeError(`observation feature '${f.key}' must be a Float32Array`);
      const n = f.rawShape.reduce((a, b) => a * b, 1);
      if (x.length !== n)
        throw new Error(
          `observation feature '${f.key}' has ${x.length} values, expected ${n} (shape [${f.rawShape.join(", ")}])`,
        );
      checkFinite(x, `observation feature '${f.key}'`);
      out.push({ name: obsInputName(f.name), datatype: "FP32", shape: [1, ...f.rawShape], data: x });
    }
    const H = this.horizon;
    if (this.noiseInput) {
      const n = H * this.modelActionDim;
      let noise = opts.noise;
      if (noise !== undefined) {
        if (noise.length !== n)
          throw new Error(`noise has ${noise.length} values, expected ${n} ([${H}, ${this.modelActionDim}])`);
        checkFinite(noise, "noise");
      } else {
        const seed = opts.seed ?? this.seeds?.int(0x7fffffff);
        noise = (seed !== undefined ? new Rng(seed) : this.rng).normalArray(n);
      }
      out.push({ name: "noise", datatype: "FP32", shape: [1, H, this.modelActionDim], data: noise });
    }
    const A = this.actionDim;
    const prefix = new Float32Array(H * A);
    const given = opts.prefix;
    if (given !== undefined && opts.prefixLen === undefined && given.length % A !== 0)
      throw new Error(`prefix has ${given.length} values, not a whole number of ${A}-dim actions`);
    const len = opts.prefixLen ?? (given ? given.length / A : 0);
    if (!Number.isInteger(len) || len < 0 || len > H)
      throw new Error(`prefix length must be an integer in 0..${H} steps, got ${len}`);
    if (len > 0) {
      if (!given || given.length < len * A)
        throw new Error(`prefixLen ${len} needs a prefix of at least ${len * A} values, got ${given?.length ?? 0}`);
      const used = given.subarray(0, len * A);
      checkFinite(used, "prefix");
      prefix.set(used);
    }
    out.push({ name: "prefix", datatype: "FP32", shape: [1, H, A], data: prefix });
    out.push({
      name: "prefix_len",
      datatype: "INT64",
      shape: this.prefixLenShape,
      data: BigInt64Array.of(BigInt(len)),
    });
    return out;
  }
}

/**
 * Checks the served signature against what the client sends and returns the shape to send
 * `prefix_len` in (`[1]`, or `[1, 1]` where the server declares `[-1, 1]`).
 */
function checkSignature(m: ModelMetadata, f: ModelFacts, where: string): number[] {
  const H = f.horizon;
  const planned: Planned[] = [
    ...f.features.map((x) => ({ name: obsInputName(x.name), datatype: "FP32" as const, shape: [1, ...x.rawShape] })),
    ...(f.noise ? [{ name: "noise", datatype: "FP32" as const, shape: [1, H, f.modelActionDim] }] : []),
    { name: "prefix", datatype: "FP32", shape: [1, H, f.actionDim] },
  ];
  const describe = (t: TensorMetadata): string => `${t.datatype} [${t.shape.join(", ")}]`;
  const byName = new Map(m.inputs.map((t) => [t.name, t]));
  for (const p of planned) {
    const s = byName.get(p.name);
    if (!s)
      throw new Error(
        `${where}: the model has no input '${p.name}' (${p.datatype} [${["-1", ...p.shape.slice(1)].join(", ")}]) that actionflow sends; it has ${m.inputs.map((t) => t.name).join(", ") || "none"}`,
      );
    if (s.datatype !== p.datatype || !shapeFits(s.shape, p.shape))
      throw new Error(
        `${where}: input '${p.name}' is ${describe(s)}, but actionflow sends ${p.datatype} [${p.shape.join(", ")}]`,
      );
  }
  const len = byName.get("prefix_len");
  if (!len) throw new Error(`${where}: the model has no input 'prefix_len' (INT64 [-1]) that actionflow sends`);
  const lenShape = shapeFits(len.shape, [1]) ? [1] : shapeFits(len.shape, [1, 1]) ? [1, 1] : undefined;
  if (len.datatype !== "INT64" || !lenShape)
    throw new Error(`${where}: input 'prefix_len' is ${describe(len)}, but actionflow sends INT64 [1] (or [1, 1])`);
  const known = new Set([...planned.map((p) => p.name), "prefix_len"]);
  const extra = m.inputs.filter((t) => !known.has(t.name));
  if (extra.length > 0)
    throw new Error(
      `${where}: the model needs inputs actionflow does not send: ${extra.map((t) => `'${t.name}' ${describe(t)}`).join(", ")}`,
    );
  const y = m.outputs.find((t) => t.name === "actions");
  if (!y)
    throw new Error(
      `${where}: the model has no output 'actions'; it has ${m.outputs.map((t) => t.name).join(", ") || "none"}`,
    );
  if (y.datatype !== "FP32" || !shapeFits(y.shape, [1, H, f.actionDim]))
    throw new Error(`${where}: output 'actions' is ${describe(y)}, expected FP32 [-1, ${H}, ${f.actionDim}]`);
  return lenShape;
}

function checkFinite(x: Float32Array, what: string): void {
  for (let i = 0; i < x.length; i++)
    if (!Number.isFinite(x[i]!)) throw new Error(`${what} has a non-finite value ${x[i]} at index ${i}`);
}
