/**
 * An `OnnxPolicy` in a worker thread, with batching: the policy the servers and the real-time loop
 * use, because onnxruntime-node's `session.run` blocks the thread it runs on (a 10-step chunk of
 * the default head blocks for 8-15 ms), and sockets, timers and watchdogs must not wait for it.
 *
 * Requests queue on the main thread; whenever a worker is idle, everything queued (up to
 * `maxBatch`) goes to it as one batch and runs as ONE `session.run` over the graph's batch
 * dimension. So requests that arrive while a run is in flight are gathered into the next run, and
 * throughput grows with the number of concurrent callers. The queue is bounded: past `maxQueue`
 * waiting requests `sampleChunk` rejects with {@link PolicyBusyError} at once (answer `busy`, do not
 * grow without limit).
 *
 * Noise is drawn on the main thread, in arrival order, exactly as `OnnxPolicy.sampleChunk` draws it
 * (given noise, else `new Rng(seed)`, else the policy's own stream restarted by `reset(seed)`), so
 * a chunk equals `OnnxPolicy.sampleChunk` on the same observation and noise up to float rounding.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { ChunkPolicy, ChunkRequest, Observation } from "../chunk-policy.ts";
import type { FeatureIO } from "../onnx/graphs.ts";
import { matchPrompt } from "../net/prompt.ts";
import { Rng } from "../random.ts";
import {
  parseFromInferenceWorker,
  type ItemResult,
  type LoadSpec,
  type PolicyInfo,
  type ToInferenceWorker,
  type WorkItem,
} from "./worker-protocol.ts";

/** Options of {@link ThreadedPolicy.start}. */
export interface ThreadedPolicyOptions {
  /** onnxruntime intra-op threads of each worker (default `OnnxPolicy`'s, 1: the fastest at batch 1). */
  threads?: number;
  /**
   * Worker threads, each with its own session (default 1). With more than one, idle workers share
   * the queue (each takes its part, up to `maxBatch`): more cores busy when one batched run cannot
   * use them all, at the cost of one model copy per worker.
   */
  workers?: number;
  /** Execution providers of each worker's session (default `["cpu"]`; see `OnnxPolicyOptions`). */
  executionProviders?: readonly string[];
  /** Seed of the policy's own noise stream (default 0). */
  seed?: number;
  /** Most requests in one batched run (default 64). */
  maxBatch?: number;
  /** Most requests waiting for the worker before `sampleChunk` answers busy (default 1024). */
  maxQueue?: number;
  /**
   * How long an idle worker waits for more requests before it runs a lone one, ms (default 0:
   * run at once; concurrent requests still batch behind a run in flight).
   */
  batchWindowMs?: number;
  /** The chunk's action rate, Hz, announced instead of the export's `actionflow.fps` (for exports without it). */
  fps?: number;
  /** Solver steps / solver when a checkpoint without `policy.onnx` is exported in memory. */
  steps?: number;
  solver?: string;
}

/**
 * The worker count a server uses by default: one single-threaded session per core, at most 4 (each
 * worker holds its own thread and session: the serve bench's resident memory grew from ~390 MB
 * with 1 worker to ~500-560 MB with 2). A batch-1 chunk of the default head is faster on one
 * onnxruntime thread than on two, and batching saves little compute per chunk (1.24x at batch 32
 * on 2 cores), so throughput comes from running batches side by side.
 */
export function defaultServeWorkers(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/** `sampleChunk` refused a request because `maxQueue` requests already wait. */
export class PolicyBusyError extends Error {
  override readonly name = "PolicyBusyError";
}

/** A chunk with where its time went. */
export interface TimedChunk {
  /** Raw actions `[horizon * actionDim]`, row-major over `[horizon, actionDim]`. */
  actions: Float32Array;
  /** The batched run that produced it, ms (worker side, one `session.run`). */
  inferMs: number;
  /** From `sampleChunk` to the answer, ms (queueing + run + messaging). */
  totalMs: number;
  /** Requests in its run. */
  batch: number;
}

/** Counters since start. */
export interface ThreadedPolicyStats {
  requests: number;
  batches: number;
  largestBatch: number;
  busy: number;
  queued: number;
}

interface Pending {
  item: WorkItem;
  /** The buffers of the item's camera copies, moved (not copied again) to the worker. */
  transfer: ArrayBuffer[];
  t0: number;
  resolve: (c: TimedChunk) => void;
  reject: (err: Error) => void;
}

/** An `OnnxPolicy` in a worker thread that batches concurrent requests. Call `close()` when done. */
export class ThreadedPolicy implements ChunkPolicy {
  readonly horizon: number;
  readonly actionDim: number;
  /** The chunk's action rate, Hz: `ThreadedPolicyOptions.fps`, else the export's `actionflow.fps`, else absent. */
  readonly fps?: number;
  /** The actions per chunk the export recommends (`actionflow.n_action_steps`), when it has one. */
  readonly nActionSteps?: number;
  /** The largest prefix the head was trained to continue (`actionflow.rtc_max_delay`; 0: not prefix-trained). */
  readonly rtcMaxDelay: number;
  /** The model's padded action dim (the noise's last dim). */
  readonly modelActionDim: number;
  /** Observation features: model name, dataset key, raw shape. */
  readonly features: readonly FeatureIO[];
  readonly objective: string;
  readonly solver: string;
  readonly steps: number;
  readonly source: string;
  /**
   * The export's metadata as the worker read it. Its rate and prefix keys are parsed and checked
   * once, into {@link ThreadedPolicy.fps} and {@link ThreadedPolicy.rtcMaxDelay}: read those.
   */
  readonly metadata: Readonly<Record<string, string>>;
  /** The task prompts the head knows, in vocabulary order; absent: it takes no prompt (see `OnnxPolicy.prompts`). */
  readonly prompts?: readonly string[];
  /** True when the policy embeds any prompt text (see `OnnxPolicy.anyPrompt`). */
  readonly anyPrompt?: boolean;

  private currentPrompt: string | undefined;
  private rng: Rng;
  private readonly queue: Pending[] = [];
  private readonly slots: Slot[];
  private nextId = 0;
  private failure: Error | undefined;
  private closed = false;
  private windowTimer: NodeJS.Timeout | undefined;
  private readonly counters = { requests: 0, batches: 0, largestBatch: 0, busy: 0 };

  private constructor(
    workers: Worker[],
    info: PolicyInfo,
    private readonly opts: ThreadedPolicyOptions,
  ) {
    this.horizon = info.horizon;
    this.actionDim = info.actionDim;
    const fps = opts.fps ?? info.fps;
    if (fps !== undefined) this.fps = fps;
    if (info.nActionSteps !== undefined) this.nActionSteps = info.nActionSteps;
    this.rtcMaxDelay = info.rtcMaxDelay;
    this.modelActionDim = info.modelActionDim;
    this.features = info.features;
    this.objective = info.objective;
    this.solver = info.solver;
    this.steps = info.steps;
    this.source = info.source;
    this.metadata = info.metadata;
    if (info.prompts !== undefined) this.prompts = info.prompts;
    if (info.anyPrompt === true) this.anyPrompt = true;
    this.rng = new Rng(opts.seed ?? 0);
    this.slots = workers.map((worker, index) => {
      const slot: Slot = { index, worker, inFlight: undefined };
      worker.on("message", (raw: unknown) => this.onMessage(slot, raw));
      worker.on("error", (err: Error) =>
        this.fail(new Error(`inference worker ${index} crashed: ${err.message}`, { cause: err })),
      );
      worker.on("exit", (code: number) => this.fail(new Error(`inference worker ${index} exited (code ${code})`)));
      worker.unref();
      return slot;
    });
  }

  /** Starts a worker that loads `path` (an `.onnx` file or a run/checkpoint folder, as `OnnxPolicy.load`). */
  static async start(path: string, opts: ThreadedPolicyOptions = {}): Promise<ThreadedPolicy> {
    for (const [k, v] of [
      ["maxBatch", opts.maxBatch],
      ["maxQueue", opts.maxQueue],
    ] as const) {
      if (v !== undefined && (!Number.isInteger(v) || v < 1))
        throw new Error(`ThreadedPolicy: ${k} must be an integer >= 1, got ${v}`);
    }
    const n = opts.workers ?? 1;
    if (!Number.isInteger(n) || n < 1) throw new Error(`ThreadedPolicy: workers must be an integer >= 1, got ${n}`);
    const workers: Worker[] = [];
    const infos = await Promise.allSettled(
      Array.from({ length: n }, (_, i) => {
        const worker = new Worker(new URL("./inference-worker-entry.js", import.meta.url), {
          name: `actionflow-inference-${i}`,
        });
        workers.push(worker);
        return ThreadedPolicy.load(worker, opts, path);
      }),
    );
    const failed = infos.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw failed.reason as Error;
    }
    const info = (infos[0] as PromiseFulfilledResult<PolicyInfo>).value;
    return new ThreadedPolicy(workers, info, opts);
  }

  private static async load(worker: Worker, opts: ThreadedPolicyOptions, path: string): Promise<PolicyInfo> {
    const load: LoadSpec = {
      path,
      ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
      ...(opts.executionProviders !== undefined ? { executionProviders: [...opts.executionProviders] } : {}),
      ...(opts.steps !== undefined ? { steps: opts.steps } : {}),
      ...(opts.solver !== undefined ? { solver: opts.solver } : {}),
    };
    let detach = (): void => undefined;
    return new Promise<PolicyInfo>((resolve, reject) => {
      const onMessage = (raw: unknown): void => {
        try {
          const m = parseFromInferenceWorker(raw);
          if (m.type === "ready") resolve(m.info);
          else if (m.type === "error") reject(new Error(`inference worker: ${m.message}`));
          else reject(new Error(`inference worker sent '${m.type}' before 'ready'`));
        } catch (err) {
          reject(err as Error);
        }
      };
      const onError = (err: Error): void =>
        reject(new Error(`inference worker crashed: ${err.message}`, { cause: err }));
      const onExit = (code: number): void => reject(new Error(`inference worker exited (code ${code}) while loading`));
      worker.on("message", onMessage).on("error", onError).on("exit", onExit);
      detach = () => worker.off("message", onMessage).off("error", onError).off("exit", onExit);
      const init: ToInferenceWorker = { type: "init", load };
      worker.postMessage(init);
    }).finally(() => {
      // Only our own listeners: Worker keeps internal ones (ref counting of its port).
      detach();
    });
  }

  /** Samples a chunk (see `ChunkPolicy.sampleChunk`); rejects with `PolicyBusyError` when the queue is full. */
  async sampleChunk(obs: Observation, req: ChunkRequest = {}): Promise<Float32Array> {
    return (await this.sampleChunkTimed(obs, req)).actions;
  }

  /** `sampleChunk` with the run's timing and batch size (what the servers report). */
  sampleChunkTimed(obs: Observation, req: ChunkRequest = {}): Promise<TimedChunk> {
    if (this.closed) return Promise.reject(new Error(`${this.source}: the threaded policy was closed`));
    if (this.failure) return Promise.reject(this.failure);
    if (this.queue.length >= (this.opts.maxQueue ?? 1024)) {
      this.counters.busy++;
      return Promise.reject(
        new PolicyBusyError(
          `policy busy: ${this.queue.length} requests already wait (maxQueue ${this.opts.maxQueue ?? 1024})`,
        ),
      );
    }
    const n = this.horizon * this.modelActionDim;
    let noise: Float32Array;
    if (req.noise !== undefined) {
      if (req.noise.length !== n)
        return Promise.reject(
          new Error(`noise has ${req.noise.length} values, expected ${n} ([${this.horizon}, ${this.modelActionDim}])`),
        );
      noise = req.noise.slice();
    } else noise = (req.seed !== undefined ? new Rng(req.seed) : this.rng).normalArray(n);
    let observation: WorkItem["observation"];
    let transfer: ArrayBuffer[];
    try {
      ({ observation, transfer } = this.workObservation(obs));
    } catch (err) {
      return Promise.reject(err as Error);
    }
    let prompt: string | undefined;
    if (this.prompts !== undefined) {
      try {
        prompt =
          req.prompt !== undefined
            ? matchPrompt({ prompts: this.prompts, anyPrompt: this.anyPrompt }, req.prompt)
            : this.currentPrompt;
      } catch (err) {
        return Promise.reject(err as Error);
      }
      if (prompt === undefined)
        return Promise.reject(
          new Error(
            `${this.source}: the policy is conditioned on a task prompt and none was given; give ${this.anyPrompt ? "any prompt, e.g. " : "one of "}${this.prompts.map((p) => JSON.stringify(p)).join(", ")}`,
          ),
        );
    }
    const item: WorkItem = {
      observation,
      noise,
      ...(prompt !== undefined ? { prompt } : {}),
      ...(req.prefix !== undefined ? { prefix: req.prefix } : {}),
      ...(req.prefixLen !== undefined ? { prefixLen: req.prefixLen } : {}),
    };
    this.counters.requests++;
    return new Promise<TimedChunk>((resolve, reject) => {
      this.queue.push({ item, transfer, t0: performance.now(), resolve, reject });
      this.schedule();
    });
  }

  /**
   * The observation as a work item carries it: a camera feature (`kind: "image"`) must be a
   * Uint8Array of exactly `height * width * 3` bytes, any other feature a Float32Array; throws
   * naming the feature otherwise. Each camera is copied once into a buffer of its own, which the
   * batch then transfers to the worker (the caller keeps its array; no second copy on the way).
   */
  private workObservation(obs: Observation): { observation: WorkItem["observation"]; transfer: ArrayBuffer[] } {
    const cameras = new Map(this.features.filter((f) => f.kind === "image").map((f) => [f.key, f]));
    for (const f of cameras.values()) cameras.set(f.name, f);
    const observation: WorkItem["observation"] = {};
    const transfer: ArrayBuffer[] = [];
    for (const [k, v] of Object.entries(obs)) {
      const camera = cameras.get(k);
      if (camera !== undefined) {
        const [h, w, c] = camera.rawShape as [number, number, number];
        if (!(v instanceof Uint8Array))
          throw new TypeError(
            `${this.source}: camera '${camera.key}' must be a Uint8Array of ${h * w * c} RGB bytes ([${h}, ${w}, ${c}]), got a ${v.constructor.name}`,
          );
        if (v.length !== h * w * c)
          throw new RangeError(
            `${this.source}: camera '${camera.key}' has ${v.length} bytes, expected ${h * w * c} ([${h}, ${w}, ${c}] uint8 RGB)`,
          );
        const copy = v.slice();
        transfer.push(copy.buffer);
        observation[k] = copy;
      } else {
        if (!(v instanceof Float32Array))
          throw new TypeError(
            `${this.source}: observation '${k}' must be a Float32Array (only camera features take uint8), got a ${v.constructor.name}`,
          );
        observation[k] = v;
      }
    }
    return { observation, transfer };
  }

  /**
   * Sets the prompt of later requests that name none (requests already queued keep theirs); throws
   * naming the known prompts when `text` is not one of them. A policy without prompts ignores it.
   */
  setPrompt(text: string): void {
    if (this.prompts === undefined) return;
    this.currentPrompt = matchPrompt({ prompts: this.prompts, anyPrompt: this.anyPrompt }, text);
  }

  /** Restarts the policy's own noise stream from `seed` (requests already queued keep their noise). */
  reset(seed: number): void {
    this.rng = new Rng(seed);
  }

  /** Counters since start. */
  stats(): ThreadedPolicyStats {
    return { ...this.counters, queued: this.queue.length };
  }

  /**
   * Stops the workers; queued and in-flight requests reject at once. A worker is terminated only after
   * its run in flight has ended (at most 10 s): terminating one inside an onnxruntime run aborts the
   * whole process. Idempotent.
   */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      const busy = this.slots.filter((s) => s.inFlight !== undefined);
      this.fail(new Error(`${this.source}: the threaded policy was closed`));
      await Promise.all(busy.map((s) => runEnded(s.worker, 10_000)));
    }
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private idle(): Slot[] {
    return this.slots.filter((s) => !s.inFlight);
  }

  private schedule(): void {
    if (this.queue.length === 0 || this.failure || this.idle().length === 0) return;
    const window = this.opts.batchWindowMs ?? 0;
    // Gather for a while only when nothing runs (a run in flight gathers by itself).
    if (window > 0 && this.idle().length === this.slots.length && this.queue.length < (this.opts.maxBatch ?? 64)) {
      this.windowTimer ??= setTimeout(() => {
        this.windowTimer = undefined;
        this.dispatch();
      }, window);
      return;
    }
    this.dispatch();
  }

  private dispatch(): void {
    if (this.windowTimer) {
      clearTimeout(this.windowTimer);
      this.windowTimer = undefined;
    }
    let idle = this.idle();
    while (idle.length > 0 && this.queue.length > 0 && !this.failure) {
      const slot = idle[0]!;
      const take = Math.min(this.opts.maxBatch ?? 64, Math.ceil(this.queue.length / idle.length));
      const batch = this.queue.splice(0, take);
      const id = this.nextId++;
      slot.inFlight = { id, batch };
      this.counters.batches++;
      this.counters.largestBatch = Math.max(this.counters.largestBatch, batch.length);
      const message: ToInferenceWorker = { type: "batch", id, items: batch.map((p) => p.item) };
      slot.worker.ref();
      try {
        slot.worker.postMessage(
          message,
          batch.flatMap((p) => p.transfer),
        );
      } catch (err) {
        this.fail(
          new Error(`could not send a batch to inference worker ${slot.index}: ${(err as Error).message}`, {
            cause: err,
          }),
        );
        return;
      }
      idle = idle.slice(1);
    }
  }

  private onMessage(slot: Slot, raw: unknown): void {
    let m;
    try {
      m = parseFromInferenceWorker(raw);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    switch (m.type) {
      case "ready":
        this.fail(new Error(`inference worker ${slot.index} sent 'ready' twice`));
        return;
      case "batch": {
        const f = slot.inFlight;
        if (!f || f.id !== m.id) {
          this.fail(new Error(`inference worker ${slot.index} answered batch ${m.id}, expected ${f ? f.id : "none"}`));
          return;
        }
        if (m.results.length !== f.batch.length) {
          this.fail(
            new Error(`inference worker ${slot.index} answered ${m.results.length} of ${f.batch.length} requests`),
          );
          return;
        }
        slot.inFlight = undefined;
        slot.worker.unref();
        const now = performance.now();
        f.batch.forEach((p, i) =>
          settle(p, m.results[i]!, { inferMs: m.runMs, totalMs: now - p.t0, batch: f.batch.length }),
        );
        this.schedule();
        return;
      }
      case "error":
        this.fail(new Error(`inference worker ${slot.index}: ${m.message}`));
        return;
      default: {
        const never: never = m;
        this.fail(new Error(`unhandled message ${String(never)}`));
      }
    }
  }

  /** Marks the policy unusable and rejects everything waiting; the first failure wins. */
  private fail(err: Error): void {
    this.failure ??= err;
    if (this.windowTimer) clearTimeout(this.windowTimer);
    const waiting: Pending[] = [];
    for (const slot of this.slots) {
      waiting.push(...(slot.inFlight?.batch ?? []));
      slot.inFlight = undefined;
    }
    waiting.push(...this.queue.splice(0));
    for (const p of waiting) p.reject(this.failure);
  }
}

interface Slot {
  index: number;
  worker: Worker;
  inFlight: { id: number; batch: Pending[] } | undefined;
}

/** Resolves when `worker` next posts a message or exits, or after `timeoutMs`. */
function runEnded(worker: Worker, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      worker.off("message", done).off("exit", done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    worker.on("message", done).on("exit", done);
  });
}

function settle(p: Pending, r: ItemResult, t: Omit<TimedChunk, "actions">): void {
  if (r.ok) p.resolve({ actions: r.actions, ...t });
  else p.reject(new Error(r.message));
}
