/**
 * The inference worker thread of `ThreadedPolicy`: loads an `OnnxPolicy` and answers each `batch`
 * with one batched `session.run` (`OnnxPolicy.sampleBatch`). It blocks only its own thread.
 */
import { parentPort } from "node:worker_threads";
import { OnnxPolicy, type BatchItem } from "./onnx-policy.ts";
import { parseToInferenceWorker, type FromInferenceWorker, type ItemResult } from "./worker-protocol.ts";

const port = parentPort;
if (!port) throw new Error("inference-worker.ts must run in a worker thread");

let policy: OnnxPolicy | undefined;

function send(m: FromInferenceWorker, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(m, transfer);
}

port.on("message", (raw: unknown) => {
  void handle(raw).catch((err: unknown) => send({ type: "error", message: (err as Error).message ?? String(err) }));
});

async function handle(raw: unknown): Promise<void> {
  const m = parseToInferenceWorker(raw);
  switch (m.type) {
    case "init": {
      const { path, ...opts } = m.load;
      policy = await OnnxPolicy.load(path, opts);
      send({
        type: "ready",
        info: {
          horizon: policy.horizon,
          actionDim: policy.actionDim,
          modelActionDim: policy.modelActionDim,
          features: policy.features.map((f) => ({ ...f })),
          objective: policy.objective,
          solver: policy.solver,
          steps: policy.steps,
          ...(policy.fps !== undefined ? { fps: policy.fps } : {}),
          ...(policy.nActionSteps !== undefined ? { nActionSteps: policy.nActionSteps } : {}),
          rtcMaxDelay: policy.rtcMaxDelay,
          ...(policy.prompts !== undefined ? { prompts: [...policy.prompts] } : {}),
          ...(policy.anyPrompt === true ? { anyPrompt: true } : {}),
          source: policy.source,
          metadata: { ...policy.metadata },
        },
      });
      return;
    }
    case "batch": {
      if (!policy) throw new Error("inference worker got a batch before init");
      const t0 = performance.now();
      const items = m.items.map((it) => ({
        // camera values are uint8 RGB Uint8Arrays (validated by ThreadedPolicy); OnnxPolicy feeds them as uint8 tensors
        observation: it.observation as BatchItem["observation"],
        options: {
          noise: it.noise,
          ...(it.prefix !== undefined ? { prefix: it.prefix } : {}),
          ...(it.prefixLen !== undefined ? { prefixLen: it.prefixLen } : {}),
          ...(it.prompt !== undefined ? { prompt: it.prompt } : {}),
        },
      }));
      let out: Array<Float32Array | Error>;
      try {
        out = await policy.sampleBatch(items);
      } catch (err) {
        out = items.map(() => (err instanceof Error ? err : new Error(String(err))));
      }
      const runMs = performance.now() - t0;
      const results: ItemResult[] = out.map((r) =>
        r instanceof Error ? { ok: false, message: r.message } : { ok: true, actions: r },
      );
      const transfer = results.flatMap((r) => (r.ok ? [r.actions.buffer as ArrayBuffer] : []));
      send({ type: "batch", id: m.id, results, runMs }, transfer);
      return;
    }
    default: {
      const never: never = m;
      throw new Error(`unhandled message ${String(never)}`);
    }
  }
}
