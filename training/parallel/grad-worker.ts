/**
 * The gradient worker thread: holds a replica of the action head on its own tfjs instance and, per
 * `grad` message, loads the current parameters from shared memory, computes the loss and gradients
 * of its shard and writes the gradients back to shared memory. Started by `GradPool` through
 * `worker-entry.js`.
 */
import { parentPort } from "node:worker_threads";
import * as tf from "@tensorflow/tfjs";
import type { ActionHead } from "../../policy/net/head.ts";
import { buildHead } from "../../policy/net/network.ts";
import { featureSize } from "../../policy/net/head.ts";
import type { NamedArray } from "../../policy/net/tfjs-ops.ts";
import { TfjsOps } from "../../policy/net/tfjs-ops.ts";
import type { BackendName } from "../backend/registry.ts";
import { useBackend } from "../backend/registry.ts";
import { createParams, maskedLoss } from "../loss.ts";
import type { FromWorker, ParamLayout, ToWorker } from "./protocol.ts";
import { parseToWorker } from "./protocol.ts";

const port = parentPort;
if (!port) throw new Error("grad-worker.ts must run in a worker thread (started by GradPool)");

interface Replica {
  head: ActionHead;
  ops: TfjsOps;
  /** Per parameter, in layout order: its variable and its views into the shared buffers. */
  slots: { variable: tf.Variable; shape: number[]; params: Float32Array; grads: Float32Array }[];
}

let replica: Replica | undefined;

function send(m: FromWorker): void {
  port!.postMessage(m);
}

async function init(m: Extract<ToWorker, { type: "init" }>): Promise<void> {
  await useBackend(m.backend as BackendName);
  const params = new Float32Array(m.params);
  const grads = new Float32Array(m.grads);
  const views = new Map<string, { layout: ParamLayout; params: Float32Array; grads: Float32Array }>();
  let offset = 0;
  for (const l of m.layout) {
    const n = featureSize(l.shape);
    views.set(l.name, {
      layout: l,
      params: params.subarray(offset, offset + n),
      grads: grads.subarray(offset, offset + n),
    });
    offset += n;
  }
  if (offset !== params.length || offset !== grads.length) {
    throw new Error(
      `layout has ${offset} values but the shared buffers hold ${params.length} parameters and ${grads.length} gradients`,
    );
  }
  const weights = new Map<string, NamedArray>(
    [...views].map(([name, v]) => [name, { shape: v.layout.shape, data: v.params.slice() }]),
  );
  const head = buildHead(m.config);
  const ops = new TfjsOps({ seed: 0, weights });
  createParams(head, ops);
  const vars = ops.variables();
  if (vars.size !== views.size) {
    throw new Error(
      `the worker's head has ${vars.size} parameters, the main thread's ${views.size} (different head configs?)`,
    );
  }
  const slots = [...views].map(([name, v]) => ({
    variable: vars.get(name)!,
    shape: v.layout.shape,
    params: v.params,
    grads: v.grads,
  }));
  replica = { head, ops, slots };
}

function gradient(m: Extract<ToWorker, { type: "grad" }>): number {
  if (!replica) throw new Error("gradient worker got 'grad' before 'init'");
  const { head, ops, slots } = replica;
  tf.tidy(() => {
    for (const s of slots) s.variable.assign(tf.tensor(s.params, s.shape, "float32"));
  });
  return tf.tidy(() => {
    const { value, grads } = tf.variableGrads(
      () => maskedLoss(head, ops, m.shard, m.denominator),
      slots.map((s) => s.variable),
    );
    for (const s of slots) {
      const g = grads[s.variable.name];
      if (!g) throw new Error(`no gradient for a parameter of shape [${s.shape.join(", ")}]`);
      s.grads.set(g.dataSync() as Float32Array);
    }
    return value.dataSync()[0]!;
  });
}

async function handle(raw: unknown): Promise<void> {
  const m = parseToWorker(raw);
  switch (m.type) {
    case "init":
      await init(m);
      send({ type: "ready" });
      return;
    case "grad":
      send({ type: "grad", id: m.id, loss: gradient(m), tensors: tf.memory().numTensors });
      return;
    default: {
      const never: never = m;
      throw new Error(`unhandled message ${String(never)}`);
    }
  }
}

// Messages are handled strictly in order: a `grad` posted while `init` is still loading waits.
let chain: Promise<void> = Promise.resolve();
port.on("message", (raw: unknown) => {
  chain = chain
    .then(() => handle(raw))
    .catch((err: unknown) => {
      const e = err instanceof Error ? err : new Error(String(err));
      send({ type: "error", message: e.message, ...(e.stack ? { stack: e.stack } : {}) });
    });
});
