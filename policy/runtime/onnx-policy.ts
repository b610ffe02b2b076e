/**
 * The real-time sampler: an exported `sample` graph run by onnxruntime-node.
 *
 * `OnnxPolicy.load(path)` accepts an `.onnx` file, a run or checkpoint folder holding
 * `policy.onnx`, or a run/checkpoint folder without one (the checkpoint is then exported in
 * memory with the defaults: euler, 10 steps). An export whose weights digest differs from the
 * folder's checkpoint is refused: a stale file never drives a robot.
 *
 * `sampleChunk` validates every input (missing feature, wrong length, NaN/Inf: errors name the
 * feature and index), draws the noise from a seeded `Rng` unless given, and refuses an output
 * holding NaN/Inf. Calls may overlap: `session.run` calls are serialised by a promise queue.
 *
 * Noise: an explicit `noise` or `seed` wins; otherwise, after `reset(seed)`, each call draws its own
 * seed from `new Rng(seed).fork()` and samples its noise from `new Rng(thatSeed)` (so an episode
 * reset with seed S replays alone); before any reset the noise comes from one stream seeded by
 * `OnnxPolicyOptions.seed`.
 *
 * Prompts: a policy whose export lists `actionflow.prompts` takes a task prompt with every chunk
 * (`ChunkRequest.prompt`, else the one `setPrompt` set); the text is matched to the vocabulary
 * (case, spacing and final punctuation ignored) and fed as its index, or as its vector when the
 * prompt is an embedding from a `--task-embeddings` table. A missing or unknown prompt is refused
 * naming the known ones. A policy whose prompt comes from a text encoder (`anyPrompt`) takes any
 * text: a known prompt is fed its stored vector, any other is embedded by the encoder kept beside
 * the model (`text-encoder/`) once, when first used, and cached (the last
 * {@link PROMPT_CACHE_SIZE} texts), never per chunk. A policy without prompts ignores both.
 */
import { readFile, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import * as ort from "onnxruntime-node";
import { loadCheckpoint, resolveCheckpointDir, textEncoderBase } from "../checkpoint/checkpoint.ts";
import { exportOnnxBytes, weightsDigest } from "../onnx/export.ts";
import { obsInputName } from "../onnx/graphs.ts";
import { FeaturesMetadataSchema, PromptsMetadataSchema, type FeatureIO } from "../onnx/schema.ts";
import { matchPrompt, promptOneHot } from "../net/prompt.ts";
import { PromptEncoder, TEXT_ENCODER_MODEL, TEXT_ENCODER_TOKENIZER } from "../text/encoder.ts";
import { parseJson } from "../io/json.ts";
import { decodeModel, metadataOf } from "../onnx/proto.ts";
import type { ChunkPolicy, ChunkRequest, Observation } from "../chunk-policy.ts";
import { Rng } from "../random.ts";

/** Intra-op threads of an {@link OnnxPolicy} when `threads` is not given (see {@link OnnxPolicyOptions.threads}). */
export const DEFAULT_POLICY_THREADS = 1;

/** Options of `OnnxPolicy.load`. */
export interface OnnxPolicyOptions {
  /**
   * Intra-op threads (default {@link DEFAULT_POLICY_THREADS}, 1). At batch 1 one thread is the
   * fastest: on 2 idle cores the default transformer's 10-step chunk takes 5.2 ms on one thread
   * and 6.5 ms on two, whose synchronisation costs more than the small matmuls gain, and the other
   * cores stay free for the control loop. Give more for large batches (32: 155 ms on one, 112 ms
   * on two).
   */
  threads?: number;
  /**
   * Execution providers in order of preference (default `["cpu"]`; `"cuda"` needs the CUDA build of
   * onnxruntime-node, see `providers.ts`). A provider that cannot be loaded fails `load` with an
   * error naming it.
   */
  executionProviders?: readonly string[];
  /** Seed of the noise drawn when `sampleChunk` is given neither `noise` nor `seed`, until the first `reset` (default 0). */
  seed?: number;
  /** Used only when exporting a checkpoint in memory (no `policy.onnx`): solver steps (default 10). */
  steps?: number;
  /** Used only when exporting a checkpoint in memory: ODE solver (default euler). */
  solver?: string;
}

/** An exported action head on onnxruntime-node, as the closed-loop {@link ChunkPolicy}. */
export class OnnxPolicy implements ChunkPolicy {
  /** Chunk length H. */
  readonly horizon: number;
  /** Raw (dataset) action dim of each chunk step. */
  readonly actionDim: number;
  /** The rate of the chunk's actions in Hz, from the metadata key `actionflow.fps` when the export has it. */
  readonly fps?: number;
  /** The actions to execute per chunk the export recommends (`actionflow.n_action_steps`), when it has one. */
  readonly nActionSteps?: number;
  /** The model's padded action dim (the noise's last dim). */
  readonly modelActionDim: number;
  /**
   * The largest committed prefix (steps) the head was trained to continue (training-time RTC;
   * `actionflow.rtc_max_delay`), or 0 when it was trained without one (a prefix is then inpainted).
   */
  readonly rtcMaxDelay: number;
  /** Observation features: model name, dataset key, raw shape. */
  readonly features: readonly FeatureIO[];
  /** `flow` or `regression`. */
  readonly objective: string;
  /** Solver and steps baked into the graph (`none`/1 for regression heads). */
  readonly solver: string;
  readonly steps: number;
  /** All `metadata_props` of the model. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Where the model came from (file path, or `checkpoint <dir> (exported in memory)`). */
  readonly source: string;
  /** The task prompts the head knows, in vocabulary order (`actionflow.prompts`); absent: it takes no prompt. */
  readonly prompts?: readonly string[];
  /** The prompt feature's model name (graph input `obs.<name>`: int64 index, or float32 embedding), with `prompts`. */
  readonly promptFeature?: string;
  /**
   * True when the policy embeds any prompt text with its text encoder (`prompts` then lists those it
   * was trained on); absent for a closed vocabulary.
   */
  readonly anyPrompt?: boolean;
  /** The prompt as the policy will use it (a known spelling, or free text with `anyPrompt`). */
  private currentPrompt: string | undefined;
  /** The prompt's embedding source: the stored vectors, the encoder, and the cache of its outputs. */
  private readonly embedding?: {
    dim: number;
    vectors: Float32Array[];
    encoder?: PromptEncoder;
    cache: Map<string, Float32Array>;
  };

  private readonly session: ort.InferenceSession;
  private readonly rng: Rng;
  /** Per-call seeds after `reset(seed)`: `new Rng(seed).fork()`. */
  private seeds: Rng | undefined;
  private readonly needsNoise: boolean;
  private queue: Promise<unknown> = Promise.resolve();
  private released = false;

  private constructor(
    session: ort.InferenceSession,
    meta: Record<string, string>,
    source: string,
    seed: number,
    encoder: PromptEncoder | undefined,
  ) {
    this.session = session;
    this.metadata = meta;
    this.source = source;
    this.rng = new Rng(seed);
    const num = (key: string): number => {
      const v = Number(meta[key]);
      if (!Number.isInteger(v) || v < 1)
        throw new Error(`${source}: metadata '${key}' is missing or invalid (${meta[key]})`);
      return v;
    };
    if (meta["actionflow.graph"] !== "sample") {
      throw new Error(
        `${source}: not an actionflow sample graph (actionflow.graph = ${meta["actionflow.graph"] ?? "absent"}); load policy.onnx, not the velocity graph`,
      );
    }
    this.horizon = num("actionflow.horizon");
    this.actionDim = num("actionflow.action_dim");
    this.modelActionDim = num("actionflow.model_action_dim");
    this.steps = num("actionflow.steps");
    const rtc = meta["actionflow.rtc_max_delay"];
    this.rtcMaxDelay = rtc === undefined ? 0 : Number(rtc);
    if (!Number.isInteger(this.rtcMaxDelay) || this.rtcMaxDelay < 0 || this.rtcMaxDelay >= this.horizon)
      throw new Error(`${source}: metadata 'actionflow.rtc_max_delay' is invalid (${rtc})`);
    this.solver = meta["actionflow.solver"] ?? "unknown";
    this.objective = meta["actionflow.objective"] ?? "flow";
    const fps = meta["actionflow.fps"];
    if (fps !== undefined) {
      const hz = Number(fps);
      if (!(hz > 0) || !Number.isFinite(hz))
        throw new Error(`${source}: metadata 'actionflow.fps' is invalid (${fps})`);
      this.fps = hz;
    }
    const nSteps = meta["actionflow.n_action_steps"];
    if (nSteps !== undefined) {
      const n = Number(nSteps);
      if (!Number.isInteger(n) || n < 1 || n > this.horizon)
        throw new Error(
          `${source}: metadata 'actionflow.n_action_steps' is invalid (${nSteps}; an integer in [1, ${this.horizon}])`,
        );
      this.nActionSteps = n;
    }
    this.features = parseJson(
      meta["actionflow.features"] ?? "",
      FeaturesMetadataSchema,
      `${source}: metadata 'actionflow.features'`,
    );
    const promptsMeta = meta["actionflow.prompts"];
    if (promptsMeta !== undefined) {
      const p = parseJson(promptsMeta, PromptsMetadataSchema, `${source}: metadata 'actionflow.prompts'`);
      this.prompts = p.prompts;
      this.promptFeature = p.feature;
      const e = p.embedding;
      if (e !== undefined) {
        if (e.vectors.length !== p.prompts.length || e.vectors.some((v) => v.length !== e.dim))
          throw new Error(
            `${source}: metadata 'actionflow.prompts' has ${e.vectors.length} vectors for ${p.prompts.length} prompts (each must have ${e.dim} values)`,
          );
        if (e.source === "encoder") {
          if (encoder === undefined) throw new Error(`${source}: the prompt's text encoder was not loaded`);
          if (encoder.dim !== e.dim)
            throw new Error(
              `${source}: the text encoder ${encoder.source} gives ${encoder.dim} values, the policy takes ${e.dim}`,
            );
          this.anyPrompt = true;
        }
        this.embedding = {
          dim: e.dim,
          vectors: e.vectors.map((v) => Float32Array.from(v)),
          ...(e.source === "encoder" ? { encoder: encoder! } : {}),
          cache: new Map(),
        };
      }
    }
    this.needsNoise = session.inputNames.includes("noise");
    const expected = [
      ...this.features.map((f) => obsInputName(f.name)),
      ...(this.promptFeature !== undefined ? [obsInputName(this.promptFeature)] : []),
      "prefix",
      "prefix_len",
      ...(this.needsNoise ? ["noise"] : []),
    ];
    const missing = expected.filter((n) => !session.inputNames.includes(n));
    if (missing.length > 0)
      throw new Error(
        `${source}: graph inputs ${missing.join(", ")} are missing (has ${session.inputNames.join(", ")})`,
      );
    if (!session.outputNames.includes("actions")) throw new Error(`${source}: graph has no 'actions' output`);
  }

  /** Loads a sample graph from an `.onnx` file or a run/checkpoint folder (see the module doc). */
  static async load(path: string, opts: OnnxPolicyOptions = {}): Promise<OnnxPolicy> {
    const p = resolve(path);
    let info;
    try {
      info = await stat(p);
    } catch (err) {
      throw new Error(`${path}: no such file or folder`, { cause: err });
    }
    let bytes: Uint8Array;
    let source: string;
    let meta: Record<string, string>;
    /** The folder a text encoder's folder is looked up in: the model's, or the checkpoint's run. */
    let base: string | undefined;
    if (info.isFile()) {
      bytes = new Uint8Array(await readFile(p));
      source = p;
      base = dirname(p);
      meta = metadataOf(decodeModel(bytes, source));
    } else {
      const file = join(p, "policy.onnx");
      const ckptDir = await resolveCheckpointDir(p);
      if (await isFile(file)) {
        bytes = new Uint8Array(await readFile(file));
        source = file;
        base = p;
        meta = metadataOf(decodeModel(bytes, file));
        if (ckptDir) {
          const digest = await weightsDigest(ckptDir);
          if (meta["actionflow.weights_sha256"] !== digest) {
            throw new Error(
              `${file} was exported from other weights than the checkpoint ${ckptDir} (checkpoint ${meta["actionflow.checkpoint"] ?? "unknown"}); re-run 'actionflow export ${path}'`,
            );
          }
        }
      } else if (ckptDir) {
        const ckpt = await loadCheckpoint(ckptDir);
        const built = await exportOnnxBytes(ckpt, {
          ...(opts.steps !== undefined ? { steps: opts.steps } : {}),
          ...(opts.solver !== undefined ? { solver: opts.solver } : {}),
        });
        bytes = built.sample;
        source = `checkpoint ${ckptDir} (exported in memory)`;
        base = await textEncoderBase(ckptDir);
        meta = metadataOf(decodeModel(bytes, source));
      } else {
        throw new Error(`${path}: holds neither policy.onnx nor a checkpoint`);
      }
    }
    const providers = [...(opts.executionProviders ?? ["cpu"])];
    if (providers.length === 0) throw new Error(`${source}: executionProviders is empty (give at least "cpu")`);
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: providers,
      graphOptimizationLevel: "all",
      logSeverityLevel: 3,
      intraOpNumThreads: opts.threads ?? DEFAULT_POLICY_THREADS,
      interOpNumThreads: 1,
    };
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, sessionOptions);
    } catch (err) {
      throw sessionError(source, providers, err);
    }
    let encoder: PromptEncoder | undefined;
    try {
      encoder = await promptEncoderFor(meta, source, base);
      return new OnnxPolicy(session, meta, source, opts.seed ?? 0, encoder);
    } catch (err) {
      await encoder?.release();
      await session.release();
      throw err;
    }
  }

  /** Runs `runs` chunks (default 3) on zero observations so the first real call is not slow. */
  async warmup(opts: { runs?: number } = {}): Promise<void> {
    const obs: Record<string, Float32Array | Uint8Array> = {};
    for (const f of this.features)
      obs[f.name] = f.kind === "image" ? new Uint8Array(size(f.rawShape)) : new Float32Array(size(f.rawShape));
    const prompt = this.prompts?.[0];
    for (let i = 0; i < (opts.runs ?? 3); i++)
      await this.sampleChunk(obs, { seed: i, ...(prompt !== undefined ? { prompt } : {}) });
  }

  /**
   * Sets the prompt of later chunks that name none; takes effect at the next `sampleChunk`. Throws
   * naming the known prompts when `text` is not one of them (the previous prompt then stays). A
   * policy without prompts ignores it.
   */
  setPrompt(text: string): void {
    if (this.prompts === undefined) return;
    this.currentPrompt = matchPrompt({ prompts: this.prompts, anyPrompt: this.anyPrompt }, text);
  }

  /**
   * The vector `[promptDim]` the head sees for prompt `text`: the one-hot of its index (a closed
   * vocabulary), its stored embedding, or its text encoder's (cached). Throws as `sampleChunk` does
   * for an unknown prompt, and for a policy without prompts.
   */
  async promptVector(text: string): Promise<Float32Array> {
    if (this.prompts === undefined) throw new Error(`${this.source}: the policy takes no prompt`);
    const feed = await this.promptFeed(text);
    if (this.embedding !== undefined) return (feed!.data as Float32Array).slice();
    return promptOneHot(this.prompts.length, Number((feed!.data as BigInt64Array)[0]!));
  }

  /**
   * The feed of the prompt input for a chunk's prompt (`text`, else the one set; refused when there
   * is none or the policy does not know it): its index, its stored vector, or its embedding by the
   * text encoder (cached). Undefined for a policy without prompts.
   */
  private async promptFeed(text: string | undefined): Promise<ort.Tensor | undefined> {
    if (this.prompts === undefined || this.promptFeature === undefined) return undefined;
    const prompt =
      text !== undefined ? matchPrompt({ prompts: this.prompts, anyPrompt: this.anyPrompt }, text) : this.currentPrompt;
    if (prompt === undefined)
      throw new Error(
        `${this.source}: the policy is conditioned on a task prompt and none was given; give ${this.anyPrompt ? "any prompt, e.g. " : "one of "}${this.prompts.map((p) => JSON.stringify(p)).join(", ")}`,
      );
    const e = this.embedding;
    const known = this.prompts.indexOf(prompt);
    if (e === undefined) return new ort.Tensor("int64", BigInt64Array.of(BigInt(known)), [1]);
    let v = known >= 0 ? e.vectors[known] : e.cache.get(prompt);
    if (v === undefined) {
      [v] = await e.encoder!.embed([prompt]);
      if (e.cache.size >= PROMPT_CACHE_SIZE) e.cache.delete(e.cache.keys().next().value!);
      e.cache.set(prompt, v!);
    }
    return new ort.Tensor("float32", v!, [1, e.dim]);
  }

  /**
   * Samples one chunk for one observation: raw actions `[horizon * actionDim]`, row-major over
   * `[horizon, actionDim]`. `observation` maps each feature's model name (`state`) or dataset key
   * (`observation.state`) to its raw values `[...rawShape]`; other keys are ignored.
   */
  async sampleChunk(observation: Observation, opts: ChunkRequest = {}): Promise<Float32Array> {
    if (this.released) throw new Error(`${this.source}: the policy was released`);
    const feeds = this.feeds(observation, opts, await this.promptFeed(opts.prompt));
    const run = async (): Promise<Float32Array> => {
      const out = await this.session.run(feeds);
      const y = out["actions"];
      if (!y) throw new Error(`${this.source}: the model returned no 'actions'`);
      const actions = y.data as Float32Array;
      for (let i = 0; i < actions.length; i++) {
        if (!Number.isFinite(actions[i]!)) {
          throw new Error(
            `${this.source}: the model produced a non-finite action ${actions[i]} at step ${Math.floor(i / this.actionDim)}, dim ${i % this.actionDim}; refusing to return it`,
          );
        }
      }
      return actions.slice();
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /**
   * Starts a new episode: later calls without `noise` or `seed` take their seeds from
   * `new Rng(seed).fork()` (a stream of its own: the simulator's reset already draws from `Rng(seed)`).
   */
  reset(seed: number): void {
    this.seeds = new Rng(seed).fork();
  }

  /** Frees the onnxruntime session; later calls fail. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.queue;
    await this.session.release();
    await this.embedding?.encoder?.release();
  }

  private feeds(
    observation: Observation,
    opts: ChunkRequest,
    prompt: ort.Tensor | undefined,
  ): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const f of this.features) {
      const byName = observation[f.name];
      const byKey = f.key !== f.name ? observation[f.key] : undefined;
      if (byName !== undefined && byKey !== undefined && byName !== byKey) {
        throw new Error(`observation feature '${f.name}' is given twice, as '${f.name}' and as '${f.key}'`);
      }
      const x = byName ?? byKey;
      if (x === undefined) {
        throw new Error(
          `observation feature '${f.key}' (model name '${f.name}') is missing; got ${Object.keys(observation).join(", ") || "nothing"}`,
        );
      }
      const n = size(f.rawShape);
      if (f.kind === "image") {
        const [h, w] = f.rawShape as [number, number, number];
        if (!(x instanceof Uint8Array))
          throw new TypeError(
            `camera '${f.key}' must be uint8 RGB [${h}, ${w}, 3] (a Uint8Array), got a ${x.constructor.name}`,
          );
        if (x.length !== n)
          throw new Error(
            `camera '${f.key}' has ${x.length} bytes, expected ${n} (RGB [${h}, ${w}, 3]; resize it to ${w}x${h})`,
          );
        feeds[obsInputName(f.name)] = new ort.Tensor("uint8", x, [1, ...f.rawShape]);
        continue;
      }
      if (!(x instanceof Float32Array)) throw new TypeError(`observation feature '${f.key}' must be a Float32Array`);
      if (x.length !== n)
        throw new Error(
          `observation feature '${f.key}' has ${x.length} values, expected ${n} (shape [${f.rawShape.join(", ")}])`,
        );
      checkFinite(x, `observation feature '${f.key}'`);
      feeds[obsInputName(f.name)] = new ort.Tensor("float32", x, [1, ...f.rawShape]);
    }
    if (prompt !== undefined && this.promptFeature !== undefined) feeds[obsInputName(this.promptFeature)] = prompt;
    const H = this.horizon;
    if (this.needsNoise) {
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
      feeds["noise"] = new ort.Tensor("float32", noise, [1, H, this.modelActionDim]);
    }
    const A = this.actionDim;
    const prefix = new Float32Array(H * A);
    const given = opts.prefix;
    if (given !== undefined && opts.prefixLen === undefined && given.length % A !== 0) {
      throw new Error(`prefix has ${given.length} values, not a whole number of ${A}-dim actions`);
    }
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
    feeds["prefix"] = new ort.Tensor("float32", prefix, [1, H, A]);
    feeds["prefix_len"] = new ort.Tensor("int64", BigInt64Array.of(BigInt(len)), [1]);
    return feeds;
  }

  /**
   * Samples one chunk per item in ONE `session.run` over the graph's batch dimension (the
   * observations, noise and prefixes stacked as `[batch, ...]`): the throughput path of the policy
   * servers. Each item is validated alone, as `sampleChunk` would: a bad item gets its `Error` at
   * its index, the others their chunks (as do items whose output holds NaN/Inf). Results equal
   * `sampleChunk` on the same noise up to float rounding (batched kernels may sum in another order).
   * Runs are serialised with `sampleChunk`'s queue.
   */
  async sampleBatch(items: readonly BatchItem[]): Promise<Array<Float32Array | Error>> {
    if (this.released) throw new Error(`${this.source}: the policy was released`);
    const results: Array<Float32Array | Error | undefined> = new Array<Float32Array | Error | undefined>(items.length);
    const valid: number[] = [];
    const feeds: Array<Record<string, ort.Tensor>> = [];
    for (const [i, item] of items.entries()) {
      try {
        const opts = item.options ?? {};
        feeds.push(this.feeds(item.observation, opts, await this.promptFeed(opts.prompt)));
        valid.push(i);
      } catch (err) {
        results[i] = err instanceof Error ? err : new Error(String(err));
      }
    }
    if (valid.length > 0) {
      const batched = stackFeeds(feeds);
      const run = async (): Promise<void> => {
        const out = await this.session.run(batched);
        const y = out["actions"];
        if (!y) throw new Error(`${this.source}: the model returned no 'actions'`);
        const all = y.data as Float32Array;
        const n = this.horizon * this.actionDim;
        valid.forEach((itemIndex, b) => {
          const actions = all.slice(b * n, (b + 1) * n);
          const bad = actions.findIndex((v) => !Number.isFinite(v));
          results[itemIndex] =
            bad >= 0
              ? new Error(
                  `${this.source}: the model produced a non-finite action ${actions[bad]} at step ${Math.floor(bad / this.actionDim)}, dim ${bad % this.actionDim} (batch item ${itemIndex}); refusing to return it`,
                )
              : actions;
        });
      };
      const done = this.queue.then(run, run);
      this.queue = done.catch(() => undefined);
      await done;
    }
    return results as Array<Float32Array | Error>;
  }
}

/** How many free-text prompt embeddings an encoder policy keeps (the oldest is dropped first). */
export const PROMPT_CACHE_SIZE = 64;

/**
 * The text encoder of a model whose `actionflow.prompts` says its prompt comes from one: loaded from
 * the named folder in `base`; undefined for any other model. Throws naming the folder when it is
 * missing.
 */
async function promptEncoderFor(
  meta: Record<string, string>,
  source: string,
  base: string | undefined,
): Promise<PromptEncoder | undefined> {
  const raw = meta["actionflow.prompts"];
  if (raw === undefined) return undefined;
  const e = parseJson(raw, PromptsMetadataSchema, `${source}: metadata 'actionflow.prompts'`).embedding;
  if (e?.source !== "encoder") return undefined;
  if (base === undefined)
    throw new Error(`${source}: the prompt comes from a text encoder, but no folder holds its ${e.folder}/ folder`);
  const dir = join(base, e.folder);
  try {
    return await PromptEncoder.load(
      { model: join(dir, TEXT_ENCODER_MODEL), tokenizer: join(dir, TEXT_ENCODER_TOKENIZER) },
      { normalize: e.normalize },
    );
  } catch (err) {
    throw new Error(
      `${source}: the prompt comes from the text encoder in ${dir}, which cannot be loaded: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** One item of `OnnxPolicy.sampleBatch`: raw observations (by model name or dataset key) and the call's options. */
export interface BatchItem {
  observation: Observation;
  options?: ChunkRequest;
}

/** Stacks single-sample feeds `[1, ...]` into one batch `[n, ...]` per input. */
function stackFeeds(feeds: ReadonlyArray<Record<string, ort.Tensor>>): Record<string, ort.Tensor> {
  const first = feeds[0]!;
  if (feeds.length === 1) return first;
  const out: Record<string, ort.Tensor> = {};
  for (const [name, t0] of Object.entries(first)) {
    const per = t0.data.length;
    const dims = [feeds.length, ...t0.dims.slice(1)];
    if (t0.type === "int64") {
      const data = new BigInt64Array(per * feeds.length);
      feeds.forEach((f, b) => data.set(f[name]!.data as BigInt64Array, b * per));
      out[name] = new ort.Tensor("int64", data, dims);
    } else if (t0.type === "uint8") {
      // a camera: stays uint8 RGB
      const data = new Uint8Array(per * feeds.length);
      feeds.forEach((f, b) => data.set(f[name]!.data as Uint8Array, b * per));
      out[name] = new ort.Tensor("uint8", data, dims);
    } else {
      const data = new Float32Array(per * feeds.length);
      feeds.forEach((f, b) => data.set(f[name]!.data as Float32Array, b * per));
      out[name] = new ort.Tensor("float32", data, dims);
    }
  }
  return out;
}

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function checkFinite(x: Float32Array, what: string): void {
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i]!)) throw new Error(`${what} has a non-finite value ${x[i]} at index ${i}`);
  }
}

/** The error of a failed `InferenceSession.create`, naming the execution providers when one is not the CPU. */
function sessionError(source: string, providers: readonly string[], err: unknown): Error {
  const why = err instanceof Error ? err.message : String(err);
  const others = providers.filter((p) => p !== "cpu");
  if (others.length === 0) return new Error(`${source}: onnxruntime could not load the model: ${why}`, { cause: err });
  const hint = others.includes("cuda")
    ? "; the CUDA provider needs onnxruntime-node's CUDA build (reinstall it with ONNXRUNTIME_NODE_INSTALL=cuda12) and CUDA 12 with cuDNN 9, or use --provider cpu"
    : "; use --provider cpu";
  return new Error(
    `${source}: onnxruntime could not create a session with execution provider ${others.map((p) => `'${p}'`).join(", ")} (${why})${hint}`,
    { cause: err },
  );
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}
