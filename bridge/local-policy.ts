/**
 * An exported policy for the real-time loop and the servers: onnxruntime in worker threads
 * ({@link ThreadedPolicy}: `session.run` blocks its thread, so never the loop's), with the chunk's
 * rate (`actionflow.fps`) and the trained prefix length (`actionflow.rtc_max_delay`) as the threaded
 * policy read them from the export's metadata, so that the loop can resample and refuse a delay the
 * policy was not trained for. A prompt-conditioned policy lists its `prompts`; `setPrompt(text)`
 * changes the prompt of the next chunk (a request's own `prompt` wins).
 */
import type { ChunkRequest, Observation } from "../policy/chunk-policy.ts";
import { ThreadedPolicy, type ThreadedPolicyOptions, type TimedChunk } from "../policy/runtime/threaded.ts";
import type { ServedPolicy } from "./server/served-policy.ts";

/** A threaded ONNX policy with its exported rates; `close()` stops the workers. */
export interface LocalPolicy extends ServedPolicy {
  /** Largest prefix the policy was trained with (0: not prefix-trained). */
  readonly rtcMaxDelay: number;
  /** The threaded policy underneath (counters, `close`). */
  readonly threaded: ThreadedPolicy;
  close(): Promise<void>;
}

/** Options of {@link startLocalPolicy}. */
export interface LocalPolicyOptions extends ThreadedPolicyOptions {
  /**
   * Chunks sampled from an all-zero observation before returning (default 2): the first runs of a
   * session are slow, and a loop measuring its inference delay must not start from them (in `rtc`
   * an inflated d may exceed the policy's `rtcMaxDelay` and be refused).
   */
  warmupRuns?: number;
}

/** Starts the inference worker(s) for a run folder, checkpoint folder or `.onnx` file, warmed up. */
export async function startLocalPolicy(path: string, opts: LocalPolicyOptions = {}): Promise<LocalPolicy> {
  const tp = await ThreadedPolicy.start(path, opts);
  try {
    const zeros: Observation = {};
    for (const f of tp.features) {
      const n = f.rawShape.reduce((a, b) => a * b, 1);
      zeros[f.key] = f.kind === "image" ? new Uint8Array(n) : new Float32Array(n);
    }
    const warmPrompt = tp.prompts?.[0];
    for (let i = 0; i < (opts.warmupRuns ?? 2); i++)
      await tp.sampleChunk(zeros, { seed: i, ...(warmPrompt !== undefined ? { prompt: warmPrompt } : {}) });
    const { fps, nActionSteps, rtcMaxDelay, prompts } = tp;
    return {
      horizon: tp.horizon,
      actionDim: tp.actionDim,
      modelActionDim: tp.modelActionDim,
      ...(fps !== undefined ? { fps } : {}),
      ...(nActionSteps !== undefined ? { nActionSteps } : {}),
      rtcMaxDelay,
      ...(prompts !== undefined ? { prompts } : {}),
      ...(tp.anyPrompt === true ? { anyPrompt: true } : {}),
      setPrompt: (text: string): void => tp.setPrompt(text),
      features: tp.features,
      solver: tp.solver,
      steps: tp.steps,
      threaded: tp,
      sampleChunk: (obs: Observation, req?: ChunkRequest): Promise<Float32Array> => tp.sampleChunk(obs, req),
      sampleChunkTimed: (obs: Observation, req?: ChunkRequest): Promise<TimedChunk> => tp.sampleChunkTimed(obs, req),
      reset: (seed: number): void => tp.reset(seed),
      close: (): Promise<void> => tp.close(),
    };
  } catch (err) {
    await tp.close();
    throw err;
  }
}
