/**
 * The tfjs backend registry: name -> loader + priority, tried lazily in priority order
 * (tfjs-node-gpu > tfjs-node > wasm > cpu); one error lists every backend that failed.
 *
 * `@tensorflow/tfjs-node` and `-node-gpu` are optional peers (their install downloads
 * libtensorflow); wasm is tfjs's default here and gets the transposed-matMul fix (`./wasm-matmul.ts`).
 * Training (`resolveTrainBackend`) prefers onnxruntime (`ort`) over wasm and cpu: without a native
 * tfjs backend, `auto` trains in onnxruntime.
 */
import * as tf from "@tensorflow/tfjs";
import { installWasmMatMulFix } from "./wasm-matmul.ts";

/** A tfjs backend actionflow knows how to bring up. */
export interface BackendEntry {
  name: "tensorflow-gpu" | "tensorflow" | "wasm" | "cpu";
  priority: number;
  /** Imports the backend's package and activates it; throws when unavailable. */
  load(): Promise<void>;
}

const optionalImport = (pkg: string): Promise<unknown> => import(/* @vite-ignore */ pkg);

/** The known backends, highest priority first. */
export const BACKENDS: readonly BackendEntry[] = [
  {
    name: "tensorflow-gpu",
    priority: 4,
    async load() {
      await optionalImport("@tensorflow/tfjs-node-gpu");
      await activate("tensorflow");
    },
  },
  {
    name: "tensorflow",
    priority: 3,
    async load() {
      await optionalImport("@tensorflow/tfjs-node");
      await activate("tensorflow");
    },
  },
  {
    name: "wasm",
    priority: 2,
    async load() {
      await import("@tensorflow/tfjs-backend-wasm");
      await activate("wasm");
      installWasmMatMulFix();
    },
  },
  {
    name: "cpu",
    priority: 1,
    async load() {
      await activate("cpu");
    },
  },
];

async function activate(name: string): Promise<void> {
  const ok = await tf.setBackend(name);
  if (!ok) throw new Error(`tf.setBackend('${name}') returned false`);
  await tf.ready();
}

/** The names accepted by `--backend`. */
export type BackendName = BackendEntry["name"] | "auto";

/** Every value `--backend` accepts: `auto`, then the known backends by priority. */
export const BACKEND_NAMES: readonly BackendName[] = ["auto", ...BACKENDS.map((b) => b.name)];

/**
 * The backends `train --backend` accepts: the tfjs ones ({@link BACKEND_NAMES}) and `ort`, which
 * computes the loss and gradients in onnxruntime (`training/ort/trainer.ts`); tfjs then only creates
 * the initial weights, on the `auto` backend.
 */
export type TrainBackendName = BackendName | "ort";

/** Every value `train --backend` accepts: {@link BACKEND_NAMES}, then `ort`. */
export const TRAIN_BACKEND_NAMES: readonly TrainBackendName[] = [...BACKEND_NAMES, "ort"];

/** The tfjs backends that `auto` training prefers to `ort`: libtensorflow, on a GPU or a CPU. */
const NATIVE: ReadonlySet<string> = new Set<BackendEntry["name"]>(["tensorflow-gpu", "tensorflow"]);

/**
 * Resolves a `train --backend` request to what trains: `ort`, or the name of the tfjs backend that
 * is now active. `auto` is the best native tfjs backend (tfjs-node-gpu, tfjs-node) when one is
 * installed and starts, else `ort` (onnxruntime on the CPU, ~4x tfjs-wasm's speed). Whatever it
 * returns, a tfjs backend is active afterwards (the ort trainer creates its initial weights in tfjs).
 */
export async function resolveTrainBackend(request: TrainBackendName = "auto"): Promise<"ort" | BackendEntry["name"]> {
  if (request === "ort") {
    await useBackend("auto");
    return "ort";
  }
  const tfjs = await useBackend(request);
  return request === "auto" && !NATIVE.has(tfjs) ? "ort" : tfjs;
}

/**
 * Throws when `workers` (tfjs gradient threads) is more than 1 but the run trains in onnxruntime, saying how to get
 * tfjs when `auto` chose ort. Shared by `train` and `distill reflow`.
 */
export function refuseOrtWorkers(request: TrainBackendName, backend: string, workers: number | undefined): void {
  if (backend !== "ort" || workers === undefined || workers === 1) return;
  const why =
    request === "ort"
      ? "--backend ort uses onnxruntime's own threads (omit --workers)"
      : "--backend auto chose ort (no tfjs-node here), which uses onnxruntime's own threads: omit --workers, or pass --backend wasm to train in tfjs with workers";
  throw new Error(`--workers ${workers}: gradient workers are tfjs only; ${why}`);
}

let active: Promise<BackendEntry["name"]> | undefined;
let activeRequest: BackendName | undefined;

/**
 * Brings up the requested backend (or the best available for `auto`) and returns its name.
 * Idempotent per process; asking for a different backend later switches to it.
 */
export function useBackend(request: BackendName = "auto"): Promise<BackendEntry["name"]> {
  if (active && activeRequest === request) return active;
  activeRequest = request;
  active = (async () => {
    const candidates =
      request === "auto"
        ? [...BACKENDS].sort((a, b) => b.priority - a.priority)
        : BACKENDS.filter((b) => b.name === request);
    if (candidates.length === 0) {
      throw new Error(`unknown backend '${request}' (valid: auto, ${BACKENDS.map((b) => b.name).join(", ")})`);
    }
    const failures: string[] = [];
    for (const c of candidates) {
      try {
        await c.load();
        return c.name;
      } catch (err) {
        failures.push(`${c.name}: ${(err as Error).message.split("\n")[0]}`);
      }
    }
    throw new Error(`no tfjs backend could be started:\n  ${failures.join("\n  ")}`);
  })();
  return active;
}
