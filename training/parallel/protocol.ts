/**
 * Messages between the gradient pool (main thread) and its worker threads, tagged by `type`.
 *
 * Parameters and gradients travel through shared memory, laid out flat in `layout` order: the main
 * thread writes the current parameters before posting `grad`; the worker writes its gradients
 * into its own buffer before answering `grad`. Neither touches a buffer while the other owns it.
 */
import type { HeadConfig } from "../../policy/net/config.ts";
import type { LossInputs } from "../loss.ts";

/** One parameter's place in the flat shared buffers. */
export interface ParamLayout {
  name: string;
  shape: number[];
}

/** Main -> worker. */
export type ToWorker =
  | {
      type: "init";
      config: HeadConfig;
      /** tfjs backend name as `tf.getBackend()` reports it. */
      backend: string;
      layout: ParamLayout[];
      /** Flat parameters (float32, shared, written by the main thread). */
      params: SharedArrayBuffer;
      /** Flat gradients (float32, shared, written by this worker). */
      grads: SharedArrayBuffer;
    }
  | { type: "grad"; id: number; shard: LossInputs; denominator: number };

/** Worker -> main. */
export type FromWorker =
  | { type: "ready" }
  | {
      type: "grad";
      id: number;
      loss: number;
      /** The worker's live tfjs tensors after the step (`tf.memory().numTensors`; flat when nothing leaks). */
      tensors: number;
    }
  | { type: "error"; message: string; stack?: string };

/** Parses a worker's message (from `unknown`); throws a `TypeError` naming what is wrong. */
export function parseFromWorker(m: unknown): FromWorker {
  if (typeof m !== "object" || m === null || !("type" in m))
    throw new TypeError(`gradient worker sent a message without a type: ${String(m)}`);
  const o = m as Record<string, unknown>;
  switch (o["type"]) {
    case "ready":
      return { type: "ready" };
    case "grad":
      if (typeof o["id"] !== "number" || typeof o["loss"] !== "number" || typeof o["tensors"] !== "number") {
        throw new TypeError("gradient worker sent 'grad' without a numeric id, loss and tensors");
      }
      return { type: "grad", id: o["id"], loss: o["loss"], tensors: o["tensors"] };
    case "error":
      return {
        type: "error",
        message: String(o["message"]),
        ...(typeof o["stack"] === "string" ? { stack: o["stack"] } : {}),
      };
    default:
      throw new TypeError(`gradient worker sent an unknown message type '${String(o["type"])}'`);
  }
}

/** Parses a message from the pool (from `unknown`); throws a `TypeError` naming what is wrong. */
export function parseToWorker(m: unknown): ToWorker {
  if (typeof m !== "object" || m === null || !("type" in m))
    throw new TypeError(`gradient worker got a message without a type: ${String(m)}`);
  const o = m as Record<string, unknown>;
  switch (o["type"]) {
    case "init":
      if (
        !(o["params"] instanceof SharedArrayBuffer) ||
        !(o["grads"] instanceof SharedArrayBuffer) ||
        !Array.isArray(o["layout"])
      ) {
        throw new TypeError("gradient worker got 'init' without shared params/grads buffers and a layout");
      }
      return m as ToWorker;
    case "grad":
      if (typeof o["id"] !== "number" || typeof o["denominator"] !== "number" || typeof o["shard"] !== "object") {
        throw new TypeError("gradient worker got 'grad' without id, denominator and shard");
      }
      return m as ToWorker;
    default:
      throw new TypeError(`gradient worker got an unknown message type '${String(o["type"])}'`);
  }
}
