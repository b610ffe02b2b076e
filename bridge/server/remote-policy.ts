/**
 * Policies across the network as the one {@link ChunkPolicy} the control loop drives, and the other
 * way round: {@link ZmqChunkPolicy} (over {@link ZmqPolicyClient}, prefix supported) and
 * {@link OpenpiChunkPolicy} (over {@link OpenpiPolicyClient}; the openpi protocol carries no prefix,
 * so a request with one is refused), and {@link servedChunkPolicy}, which makes any `ChunkPolicy`
 * (the scripted expert) servable by both servers.
 */
import type { ChunkPolicy, ChunkRequest, Observation } from "../../policy/chunk-policy.ts";
import type { FeatureIO } from "../../policy/onnx/graphs.ts";
import type { TimedChunk } from "../../policy/runtime/threaded.ts";
import { matchPrompt } from "../../policy/net/prompt.ts";
import { NdArray } from "../codec/msgpack-numpy.ts";
import { OpenpiPolicyClient, type OpenpiClientOptions } from "./openpi-client.ts";
import type { PolicyMetadata, ServedPolicy } from "./served-policy.ts";
import { ZmqPolicyClient, type ZmqClientOptions } from "./zmq-client.ts";

function checkShape(meta: PolicyMetadata, shape: readonly number[], where: string): void {
  if (shape[0] !== meta.horizon || shape[1] !== meta.action_dim)
    throw new Error(
      `${where}: the server sent a chunk of shape [${shape.join(", ")}], its metadata says [${meta.horizon}, ${meta.action_dim}]`,
    );
}

/**
 * The rates a remote policy announces: `fps` (a positive number, or null/absent: unknown) and
 * `rtc_max_delay` (an integer in 0..horizon-1; absent from servers older than the field: 0, as for
 * a policy not trained with a prefix). Throws naming the field and value when either is malformed.
 */
export function remoteRates(meta: PolicyMetadata, where: string): { fps?: number; rtcMaxDelay: number } {
  const fps: unknown = meta.fps;
  if (fps !== null && fps !== undefined && !(typeof fps === "number" && Number.isFinite(fps) && fps > 0))
    throw new Error(`${where}: metadata 'fps' must be a positive number or null, got ${JSON.stringify(fps)}`);
  const rtc: unknown = meta.rtc_max_delay ?? 0;
  if (typeof rtc !== "number" || !Number.isInteger(rtc) || rtc < 0 || rtc >= meta.horizon)
    throw new Error(
      `${where}: metadata 'rtc_max_delay' must be an integer in 0..${meta.horizon - 1} (below the horizon), got ${JSON.stringify(rtc)}`,
    );
  return { ...(typeof fps === "number" ? { fps } : {}), rtcMaxDelay: rtc };
}

/**
 * The prompts a remote policy announces (`prompts`: a list of strings, absent for a policy that
 * takes none). Throws naming the field when it is malformed.
 */
export function remotePrompts(meta: PolicyMetadata, where: string): string[] | undefined {
  const p: unknown = meta["prompts"];
  if (p === undefined || p === null) return undefined;
  if (!Array.isArray(p) || p.length === 0 || !p.every((x) => typeof x === "string"))
    throw new Error(`${where}: metadata 'prompts' must be a non-empty list of strings, got ${JSON.stringify(p)}`);
  return p as string[];
}

/** A policy served over ZeroMQ; `sampleChunk` may overlap (replies matched by id). `close()` when done. */
export class ZmqChunkPolicy implements ChunkPolicy {
  readonly horizon: number;
  readonly actionDim: number;
  readonly fps?: number;
  /** From the server's metadata: a real-time loop in `rtc` refuses a larger delay (see `bridge/merge.ts`). */
  readonly rtcMaxDelay: number;
  /** The prompts the served policy knows (from its metadata); absent when it takes none. */
  readonly prompts?: readonly string[];
  /** The served policy takes any prompt text (metadata `any_prompt`: a text encoder). */
  readonly anyPrompt?: boolean;
  private prompt: string | undefined;

  private constructor(
    private readonly client: ZmqPolicyClient,
    /** The server's metadata. */
    readonly metadata: PolicyMetadata,
    /** The endpoint, for reports. */
    readonly source: string,
  ) {
    this.horizon = metadata.horizon;
    this.actionDim = metadata.action_dim;
    const rates = remoteRates(metadata, `zmq policy ${source}`);
    if (rates.fps !== undefined) this.fps = rates.fps;
    this.rtcMaxDelay = rates.rtcMaxDelay;
    const prompts = remotePrompts(metadata, `zmq policy ${source}`);
    if (prompts) this.prompts = prompts;
    if (prompts && metadata["any_prompt"] === true) this.anyPrompt = true;
  }

  /**
   * Sets the prompt sent with later requests that name none (takes effect at the next chunk); throws
   * naming the known prompts when the served policy does not know `text`. Ignored when it takes none.
   */
  setPrompt(text: string): void {
    if (this.prompts) this.prompt = matchPrompt({ prompts: this.prompts, anyPrompt: this.anyPrompt }, text);
  }

  /** Connects and fetches the metadata (rejects when the server does not answer within the timeout). */
  static async connect(opts: ZmqClientOptions): Promise<ZmqChunkPolicy> {
    const client = ZmqPolicyClient.connect(opts);
    let meta: PolicyMetadata;
    try {
      meta = await client.metadata();
    } catch (err) {
      await client.close();
      throw new Error(`zmq policy ${opts.endpoint}: ${(err as Error).message}`, { cause: err });
    }
    try {
      return new ZmqChunkPolicy(client, meta, opts.endpoint);
    } catch (err) {
      await client.close();
      throw err;
    }
  }

  /** Raw actions `[horizon * actionDim]`; the prefix, noise and seed are sent along. */
  async sampleChunk(obs: Observation, req: ChunkRequest = {}): Promise<Float32Array> {
    // in the metadata's shape when the size fits, else as sent (the server refuses it, naming the key)
    // a Uint8Array (a camera image) goes as uint8
    const shaped: Record<string, NdArray> = {};
    for (const [k, v] of Object.entries(obs)) {
      const f = this.metadata.features.find((x) => x.key === k || x.name === k);
      const fits = f !== undefined && f.shape.reduce((a, b) => a * b, 1) === v.length;
      const shape = fits ? f.shape : [v.length];
      shaped[k] = v instanceof Uint8Array ? new NdArray("|u1", shape, v) : NdArray.float32(v, shape);
    }
    const prompt = req.prompt ?? this.prompt;
    const c = await this.client.infer(shaped, {
      ...(prompt !== undefined ? { prompt } : {}),
      ...(req.prefix !== undefined ? { prefix: req.prefix } : {}),
      ...(req.prefixLen !== undefined ? { prefixLen: req.prefixLen } : {}),
      ...(req.noise !== undefined ? { noise: req.noise } : {}),
      ...(req.seed !== undefined ? { seed: req.seed } : {}),
    });
    checkShape(this.metadata, c.shape, `zmq policy ${this.source}`);
    return c.actions;
  }

  /** Restarts the server's noise stream for this client (sent asynchronously; a failure is reported on stderr). */
  reset(seed: number): void {
    this.client.reset(seed).catch((err: unknown) => {
      process.stderr.write(`zmq policy ${this.source}: reset failed: ${(err as Error).message}\n`);
    });
  }

  /** Closes the socket. */
  async close(): Promise<void> {
    await this.client.close();
  }
}

/** A policy served by an openpi-compatible WebSocket server. `close()` when done. */
export class OpenpiChunkPolicy implements ChunkPolicy {
  readonly horizon: number;
  readonly actionDim: number;
  readonly fps?: number;
  /**
   * From the server's metadata. The openpi protocol carries no prefix, so `rtc` cannot run over it;
   * the value is kept so that a caller can report what the policy was trained for.
   */
  readonly rtcMaxDelay: number;
  /** The prompts the served policy knows (from its metadata); absent when it takes none. */
  readonly prompts?: readonly string[];
  /** The served policy takes any prompt text (metadata `any_prompt`: a text encoder). */
  readonly anyPrompt?: boolean;
  private prompt: string | undefined;

  private constructor(
    private readonly client: OpenpiPolicyClient,
    readonly source: string,
  ) {
    const m = client.metadata;
    this.horizon = m.horizon;
    this.actionDim = m.action_dim;
    const rates = remoteRates(m, `openpi policy ${source}`);
    if (rates.fps !== undefined) this.fps = rates.fps;
    this.rtcMaxDelay = rates.rtcMaxDelay;
    const prompts = remotePrompts(m, `openpi policy ${source}`);
    if (prompts) this.prompts = prompts;
    if (prompts && m["any_prompt"] === true) this.anyPrompt = true;
  }

  /** As {@link ZmqChunkPolicy.setPrompt}. */
  setPrompt(text: string): void {
    if (this.prompts) this.prompt = matchPrompt({ prompts: this.prompts, anyPrompt: this.anyPrompt }, text);
  }

  /** Connects and reads the metadata frame (rejects on malformed `fps` or `rtc_max_delay`). */
  static async connect(opts: OpenpiClientOptions): Promise<OpenpiChunkPolicy> {
    const client = await OpenpiPolicyClient.connect(opts);
    try {
      return new OpenpiChunkPolicy(client, opts.url);
    } catch (err) {
      client.close();
      throw err;
    }
  }

  /** The server's metadata. */
  get metadata(): PolicyMetadata {
    return this.client.metadata;
  }

  /** Raw actions `[horizon * actionDim]`; rejects a request with a prefix, noise or seed (the protocol has none). */
  async sampleChunk(obs: Observation, req: ChunkRequest = {}): Promise<Float32Array> {
    if (req.prefix !== undefined || req.noise !== undefined || req.seed !== undefined)
      throw new Error(
        `openpi policy ${this.source}: the openpi protocol carries no prefix, noise or seed (use --via zmq for real-time chunking)`,
      );
    const prompt = req.prompt ?? this.prompt;
    const c = await this.client.infer(obs, prompt !== undefined ? { prompt } : {});
    checkShape(this.metadata, c.shape, `openpi policy ${this.source}`);
    return c.actions;
  }

  /** Nothing to do: an openpi server keeps no per-client state worth resetting. */
  reset(seed: number): void {
    void seed;
  }

  /** Closes the connection. */
  close(): void {
    this.client.close();
  }
}

/** Options of {@link servedChunkPolicy}. */
export interface ServedChunkPolicyOptions {
  /** The observation features a request must carry (name, dataset key, raw shape). */
  features: readonly FeatureIO[];
  /** What the metadata reports as the solver (default `none`). */
  solver?: string;
}

/**
 * Any {@link ChunkPolicy} as a {@link ServedPolicy} (the scripted expert over the network):
 * `features` are announced and checked by the servers, `steps` is 0, timings are measured here.
 */
export function servedChunkPolicy(policy: ChunkPolicy, opts: ServedChunkPolicyOptions): ServedPolicy {
  return {
    horizon: policy.horizon,
    actionDim: policy.actionDim,
    // A scripted policy draws no noise; a client's noise stream is sized as its actions.
    modelActionDim: policy.actionDim,
    ...(policy.fps !== undefined ? { fps: policy.fps } : {}),
    ...(policy.rtcMaxDelay !== undefined ? { rtcMaxDelay: policy.rtcMaxDelay } : {}),
    features: opts.features,
    solver: opts.solver ?? "none",
    steps: 0,
    sampleChunk: (obs, req) => policy.sampleChunk(obs, req),
    reset: (seed) => policy.reset(seed),
    async sampleChunkTimed(obs: Observation, req?: ChunkRequest): Promise<TimedChunk> {
      const t0 = performance.now();
      const actions = await policy.sampleChunk(obs, req);
      const ms = performance.now() - t0;
      return { actions, inferMs: ms, totalMs: ms, batch: 1 };
    },
  };
}
