/**
 * The one policy interface everything that executes actions drives: closed-loop evaluation in
 * `sim/`, the real-time loop in `bridge/`, the policy servers. A policy maps one observation to a
 * chunk of future actions; implementations are the ONNX policy (`policy/runtime/onnx-policy.ts`),
 * the scripted experts (`sim/policy.ts`) and the test fakes.
 */

/**
 * Observation features by the policy's dataset key, raw (unnormalised) values of one sample: a
 * vector feature is a Float32Array; a camera feature (e.g. `observation.images.front`) is uint8 RGB,
 * row-major `[height, width, 3]`, as a Uint8Array.
 */
export type Observation = Record<string, Float32Array | Uint8Array>;

/** Options of one {@link ChunkPolicy.sampleChunk} call. */
export interface ChunkRequest {
  /**
   * Raw actions `[d * actionDim]` already committed as the chunk's first d steps (real-time
   * chunking): the policy keeps them and samples the rest to continue them.
   */
  prefix?: Float32Array;
  /** Leading steps of `prefix` to keep (0..horizon; default `prefix.length / actionDim`, 0 without one). */
  prefixLen?: number;
  /** Noise `[horizon * modelActionDim]` in the normalised action space (N(0, I)); drawn when absent. */
  noise?: Float32Array;
  /** Seed of this call's noise (ignored when `noise` is given); default: the policy's own stream. */
  seed?: number;
  /**
   * The task prompt of this call, for a policy conditioned on one (see {@link ChunkPolicy.prompts});
   * default: the one set with {@link ChunkPolicy.setPrompt}. A policy without prompts ignores it.
   */
  prompt?: string;
}

/** A policy that predicts a chunk of future actions from one observation. */
export interface ChunkPolicy {
  /** Actions per chunk, H. */
  readonly horizon: number;
  /** Raw values per action, A. */
  readonly actionDim: number;
  /** The rate the chunk's actions are spaced at (the dataset's fps), Hz, when the policy knows it. */
  readonly fps?: number;
  /**
   * The actions to execute from each chunk before asking for the next (LeRobot's `n_action_steps`)
   * when the runtime is not told otherwise: the policy's own recommendation, absent when it has none.
   */
  readonly nActionSteps?: number;
  /**
   * The largest committed prefix (steps) the policy was trained to continue (training-time real-time
   * chunking); 0 or absent when it was not (a prefix is then inpainted at sampling time). A real-time
   * loop refuses an inference delay larger than this for a prefix-trained policy.
   */
  readonly rtcMaxDelay?: number;
  /**
   * Samples a chunk: raw actions `[horizon * actionDim]`, row-major over `[horizon, actionDim]`.
   * Rejects (never returns NaN/Inf) on a missing or malformed observation feature.
   */
  sampleChunk(obs: Observation, req?: ChunkRequest): Promise<Float32Array>;
  /**
   * The task prompts a prompt-conditioned policy knows (matched ignoring case, spacing and final
   * punctuation); absent for a policy that takes no prompt.
   */
  readonly prompts?: readonly string[];
  /**
   * True for a policy that embeds any prompt text (a text encoder): `prompts` then lists the ones it
   * was trained on, and other prompts are taken too. Absent: only `prompts` are taken.
   */
  readonly anyPrompt?: boolean;
  /**
   * Sets the prompt of later chunks that name none (takes effect at the next `sampleChunk`); throws
   * naming the known prompts when `text` is not one of them (unless `anyPrompt`). A policy without
   * prompts ignores it.
   */
  setPrompt?(text: string): void;
  /** Starts a new episode: restarts the noise stream (or the scripted plan) from `seed`. */
  reset(seed: number): void;
}
