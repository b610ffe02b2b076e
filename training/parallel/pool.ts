/**
 * The main thread's side of data-parallel training: a pool of gradient worker threads, each with
 * its own tfjs instance and a replica of the action head, that compute the loss and gradients of
 * their shard of a batch while the main thread computes its own.
 *
 * tfjs-wasm runs single-threaded in Node, so this is how training uses more than one core.
 * Parameters go to the workers through one shared buffer, gradients come back through one shared
 * buffer per worker (see `protocol.ts`). Workers are unref'd while idle: a pool that was never
 * closed does not keep the process alive.
 */
import { Worker } from "node:worker_threads";
import type * as tf from "@tensorflow/tfjs";
import type { HeadConfig } from "../../policy/net/config.ts";
import { featureSize } from "../../policy/net/head.ts";
import type { LossInputs } from "../loss.ts";
import type { ParamLayout, ToWorker } from "./protocol.ts";
import { parseFromWorker } from "./protocol.ts";

/** Options of `GradPool`. */
export interface GradPoolOptions {
  /** The head every worker builds (with `buildHead`). */
  config: HeadConfig;
  /** tfjs backend the workers bring up, as `tf.getBackend()` names it (`wasm`, `cpu`, `tensorflow`). */
  backend: string;
  /** The parameters, in the order of the shared buffers. */
  layout: ParamLayout[];
  /** Worker threads to start (>= 1). */
  threads: number;
}

/** One worker's answer for its shard. */
export interface ShardGradient {
  /** The shard's loss (its share of the batch loss: summed squared error / the batch denominator). */
  loss: number;
  /** The worker's live tfjs tensors after the step (flat from step to step when nothing leaks). */
  workerTensors: number;
  /** The gradient of `loss` for parameter `name`, a view into shared memory valid until the next `gradients` call. */
  grad(name: string): Float32Array;
}

interface Pending {
  id: number;
  resolve: (r: { loss: number; tensors: number }) => void;
  reject: (err: Error) => void;
}

class Slot {
  readonly grads: Float32Array;
  readonly ready: Promise<void>;
  pending: Pending | undefined;
  failure: Error | undefined;
  private markReady!: () => void;
  private markFailed!: (err: Error) => void;

  constructor(
    readonly index: number,
    readonly worker: Worker,
    grads: SharedArrayBuffer,
  ) {
    this.grads = new Float32Array(grads);
    this.ready = new Promise<void>((resolve, reject) => {
      this.markReady = resolve;
      this.markFailed = reject;
    });
    this.ready.catch(() => undefined); // observed through `gradients`
    worker.on("message", (raw: unknown) => this.onMessage(raw));
    worker.on("error", (err: Error) =>
      this.fail(new Error(`gradient worker ${index} crashed: ${err.message}`, { cause: err })),
    );
    worker.on("exit", (code: number) => this.fail(new Error(`gradient worker ${index} exited (code ${code})`)));
  }

  private onMessage(raw: unknown): void {
    let m;
    try {
      m = parseFromWorker(raw);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    switch (m.type) {
      case "ready":
        this.markReady();
        return;
      case "grad": {
        const p = this.pending;
        if (!p || p.id !== m.id) {
          this.fail(new Error(`gradient worker ${this.index} answered step ${m.id}, expected ${p ? p.id : "none"}`));
          return;
        }
        this.pending = undefined;
        p.resolve({ loss: m.loss, tensors: m.tensors });
        return;
      }
      case "error":
        this.fail(new Error(`gradient worker ${this.index}: ${m.message}`));
        return;
      default: {
        const never: never = m;
        this.fail(new Error(`unhandled message ${String(never)}`));
      }
    }
  }

  /** Marks the worker unusable and rejects whoever waits on it; the first failure wins. */
  fail(err: Error): void {
    this.failure ??= err;
    this.markFailed(this.failure);
    const p = this.pending;
    this.pending = undefined;
    p?.reject(this.failure);
  }
}

/**
 * Gradient worker threads. Call `writeParams`, then `gradients` (await it before the next call),
 * and `close()` when done.
 */
export class GradPool {
  readonly threads: number;
  private readonly layout: ParamLayout[];
  private readonly offsets = new Map<string, { offset: number; size: number }>();
  private readonly params: Float32Array;
  private readonly slots: Slot[] = [];
  private nextId = 0;
  private closed = false;

  constructor(opts: GradPoolOptions) {
    if (!Number.isInteger(opts.threads) || opts.threads < 1)
      throw new Error(`GradPool: threads must be an integer >= 1, got ${opts.threads}`);
    this.threads = opts.threads;
    this.layout = opts.layout.map((l) => ({ name: l.name, shape: l.shape.slice() }));
    let total = 0;
    for (const l of this.layout) {
      const size = featureSize(l.shape);
      this.offsets.set(l.name, { offset: total, size });
      total += size;
    }
    const paramsBuffer = new SharedArrayBuffer(total * 4);
    this.params = new Float32Array(paramsBuffer);
    for (let i = 0; i < opts.threads; i++) {
      const grads = new SharedArrayBuffer(total * 4);
      const worker = new Worker(new URL("./worker-entry.js", import.meta.url), { name: `actionflow-grad-${i}` });
      worker.unref();
      this.slots.push(new Slot(i, worker, grads));
      const init: ToWorker = {
        type: "init",
        config: opts.config,
        backend: opts.backend,
        layout: this.layout,
        params: paramsBuffer,
        grads,
      };
      worker.postMessage(init);
    }
  }

  /** Resolves once every worker has built its replica (rejects with the first worker's failure). */
  async ready(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.ready));
  }

  /** Copies the current parameters (by layout name) into the shared buffer the workers read. */
  writeParams(vars: ReadonlyMap<string, tf.Tensor>): void {
    for (const l of this.layout) {
      const v = vars.get(l.name);
      if (!v) throw new Error(`GradPool.writeParams: no parameter '${l.name}'`);
      const { offset, size } = this.offsets.get(l.name)!;
      if (v.size !== size)
        throw new Error(`GradPool.writeParams: '${l.name}' has ${v.size} values, the layout ${size}`);
      this.params.set(v.dataSync() as Float32Array, offset);
    }
  }

  /**
   * Loss and gradients of each non-empty shard (shard i goes to worker i), at the parameters last
   * written by `writeParams`; answers in shard order, empty shards left out. At most `threads` shards.
   */
  async gradients(shards: LossInputs[], denominator: number): Promise<ShardGradient[]> {
    if (this.closed) throw new Error("GradPool: gradients() after close()");
    if (shards.length > this.slots.length)
      throw new Error(`GradPool: ${shards.length} shards for ${this.slots.length} workers`);
    const work: Promise<ShardGradient>[] = [];
    shards.forEach((shard, i) => {
      if (shard.size === 0) return;
      const slot = this.slots[i]!;
      work.push(this.run(slot, shard, denominator));
    });
    const settled = await Promise.allSettled(work);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
    if (failed) throw failed.reason as Error;
    return settled.map((s) => (s as PromiseFulfilledResult<ShardGradient>).value);
  }

  private async run(slot: Slot, shard: LossInputs, denominator: number): Promise<ShardGradient> {
    if (slot.failure) throw slot.failure;
    if (slot.pending) throw new Error(`gradient worker ${slot.index} is still busy (await each gradients() call)`);
    const id = this.nextId++;
    const answer = new Promise<{ loss: number; tensors: number }>((resolve, reject) => {
      slot.pending = { id, resolve, reject };
    });
    const message: ToWorker = { type: "grad", id, shard, denominator };
    slot.worker.ref();
    try {
      slot.worker.postMessage(message);
      const { loss, tensors } = await answer;
      return {
        loss,
        workerTensors: tensors,
        grad: (name: string): Float32Array => {
          const at = this.offsets.get(name);
          if (!at) throw new Error(`GradPool: no parameter '${name}'`);
          return slot.grads.subarray(at.offset, at.offset + at.size);
        },
      };
    } finally {
      slot.worker.unref();
    }
  }

  /** Stops every worker (pending `gradients` calls reject); resolves when all have exited. Idempotent. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      for (const s of this.slots) s.fail(new Error(`gradient worker ${s.index}: pool closed`));
    }
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
