/**
 * Messages between a `ThreadedPolicy` (main thread) and its inference worker thread, tagged by
 * `type`. The main thread sends one `batch` at a time and waits for its answer before the next; the
 * worker answers every item of a batch, in order, each with its chunk or its error.
 */
import type { Observation } from "../chunk-policy.ts";
import type { FeatureIO } from "../onnx/graphs.ts";

/** What the worker loads: `OnnxPolicy.load(path, options)`. */
export interface LoadSpec {
  path: string;
  threads?: number;
  executionProviders?: readonly string[];
  steps?: number;
  solver?: string;
}

/**
 * One request of a batch: raw observation (vectors as Float32Array, cameras as uint8 RGB
 * `[height, width, 3]` Uint8Array), the noise the main thread drew, an optional prefix.
 */
export interface WorkItem {
  observation: Observation;
  /** `[H * modelActionDim]`, always drawn by the main thread so the stream follows arrival order. */
  noise: Float32Array;
  prefix?: Float32Array;
  prefixLen?: number;
  /** The task prompt (prompt-conditioned policies), already matched to the vocabulary by the main thread (or free text for an `anyPrompt` policy). */
  prompt?: string;
}

/** Main -> worker. */
export type ToInferenceWorker = { type: "init"; load: LoadSpec } | { type: "batch"; id: number; items: WorkItem[] };

/** The loaded policy's description, sent once by `ready`. */
export interface PolicyInfo {
  horizon: number;
  actionDim: number;
  modelActionDim: number;
  features: FeatureIO[];
  objective: string;
  solver: string;
  steps: number;
  /** The chunk's action rate, Hz, from the export's `actionflow.fps` (absent when it has none). */
  fps?: number;
  /** The export's `actionflow.n_action_steps` (absent when it has none). */
  nActionSteps?: number;
  /** The largest prefix the head was trained to continue (`actionflow.rtc_max_delay`; 0: not prefix-trained). */
  rtcMaxDelay: number;
  /** The task prompts the head knows (`actionflow.prompts`); absent: it takes no prompt. */
  prompts?: string[];
  /** True when the policy embeds any prompt (a text encoder; see `OnnxPolicy.anyPrompt`). */
  anyPrompt?: boolean;
  source: string;
  metadata: Record<string, string>;
}

/** One item's answer: the chunk `[H * A]`, or the error message. */
export type ItemResult = { ok: true; actions: Float32Array } | { ok: false; message: string };

/** Worker -> main. */
export type FromInferenceWorker =
  | { type: "ready"; info: PolicyInfo }
  | { type: "batch"; id: number; results: ItemResult[]; runMs: number }
  | { type: "error"; message: string };

function record(m: unknown, who: string): Record<string, unknown> {
  if (typeof m !== "object" || m === null || !("type" in m))
    throw new TypeError(`${who} a message without a type: ${String(m)}`);
  return m as Record<string, unknown>;
}

/** Parses a worker's message (from `unknown`); throws a `TypeError` naming what is wrong. */
export function parseFromInferenceWorker(m: unknown): FromInferenceWorker {
  const o = record(m, "inference worker sent");
  switch (o["type"]) {
    case "ready":
      if (typeof o["info"] !== "object" || o["info"] === null)
        throw new TypeError("inference worker sent 'ready' without info");
      return { type: "ready", info: o["info"] as PolicyInfo };
    case "batch": {
      const results = o["results"];
      if (typeof o["id"] !== "number" || !Array.isArray(results) || typeof o["runMs"] !== "number")
        throw new TypeError("inference worker sent 'batch' without a numeric id, results and runMs");
      for (const r of results as unknown[]) {
        const x = r as Record<string, unknown>;
        if (
          !(x["ok"] === true && x["actions"] instanceof Float32Array) &&
          !(x["ok"] === false && typeof x["message"] === "string")
        )
          throw new TypeError(
            "inference worker sent a batch result that is neither {ok, actions} nor {ok: false, message}",
          );
      }
      return { type: "batch", id: o["id"], results: results as ItemResult[], runMs: o["runMs"] };
    }
    case "error":
      return { type: "error", message: String(o["message"]) };
    default:
      throw new TypeError(`inference worker sent an unknown message type '${String(o["type"])}'`);
  }
}

/** Parses a message from the main thread (from `unknown`); throws a `TypeError` naming what is wrong. */
export function parseToInferenceWorker(m: unknown): ToInferenceWorker {
  const o = record(m, "inference worker got");
  switch (o["type"]) {
    case "init": {
      const load = o["load"] as Record<string, unknown> | undefined;
      if (typeof load !== "object" || load === null || typeof load["path"] !== "string")
        throw new TypeError("inference worker got 'init' without load.path");
      return m as ToInferenceWorker;
    }
    case "batch":
      if (typeof o["id"] !== "number" || !Array.isArray(o["items"]))
        throw new TypeError("inference worker got 'batch' without a numeric id and items");
      return m as ToInferenceWorker;
    default:
      throw new TypeError(`inference worker got an unknown message type '${String(o["type"])}'`);
  }
}
