/**
 * Task prompts as a closed vocabulary: a head conditioned on a prompt has one observation feature
 * whose config carries the K task strings of its training set (`ObsFeature.prompts`); the network
 * sees the prompt as a one-hot vector `[K]` projected by the feature's own dense layer (a dense layer
 * over a one-hot is an embedding table), so every interpreter (tfjs, the ONNX emitter, the tape)
 * runs it with no new op. The exported sample graph takes the prompt's index instead
 * (`obs.<name>` int64 `[batch]`) and builds the one-hot inside the graph.
 *
 * Prompts match after {@link normalizePrompt}: case, runs of white space and final punctuation do
 * not matter. A prompt outside the vocabulary is refused naming the known ones.
 *
 * Or the prompt is an embedding `[D]` from a text encoder the user brings (`promptEmbedding` of the
 * feature): the network sees the vector, projected by the feature's own dense layer like any vector
 * feature, and the exported graph takes it as `obs.<name>` float32 `[batch, D]`, filled by the
 * runtime. `table`: the vectors of a `--task-embeddings` file, one per prompt of `prompts` (other
 * prompts refused); `encoder`: an ONNX text encoder kept in the run folder embeds any prompt (the
 * `vectors` are those of the training prompts, what training fed).
 */

/** Where a prompt feature's embedding comes from (absent: the one-hot of the vocabulary). */
export interface PromptEmbeddingLike {
  source: "table" | "encoder";
  /** One vector `[D]` per prompt of the feature's `prompts`, in that order. */
  vectors: number[][];
  /** `encoder` only: the encoder's output is L2-normalised. */
  normalize?: boolean | undefined;
}

/** A head observation feature as far as prompts go (`ObsFeature` of `config.ts`). */
interface FeatureLike {
  name: string;
  prompts?: string[] | undefined;
  promptEmbedding?: PromptEmbeddingLike | undefined;
}

/** The matching form of a prompt: trimmed, lower case, white space collapsed, final punctuation dropped. */
export function normalizePrompt(text: string): string {
  return text
    .trim()
    .toLowerCase()
    .replace(/\s+/g, " ")
    .replace(/[\s.!?;:,]+$/u, "");
}

/** The head's prompt feature (the obs feature with `prompts`), or undefined for a head without one. */
export function promptFeatureOf<F extends FeatureLike>(config: {
  obs: readonly F[];
}): (F & { prompts: string[] }) | undefined {
  return config.obs.find((f): f is F & { prompts: string[] } => f.prompts !== undefined);
}

/**
 * The vocabulary index of `text` among `prompts` (normalised match). Throws naming the prompt and
 * every known one when it is not among them.
 */
export function promptIndex(prompts: readonly string[], text: string): number {
  if (typeof text !== "string") throw new TypeError(`a prompt must be a string, got ${typeof text}`);
  const key = normalizePrompt(text);
  const i = prompts.findIndex((p) => normalizePrompt(p) === key);
  if (i < 0)
    throw new Error(
      `unknown prompt ${JSON.stringify(text)}: the policy knows ${prompts.map((p) => JSON.stringify(p)).join(", ")}`,
    );
  return i;
}

/** The size of a prompt feature's vector: D of its embedding, else K (the one-hot over its prompts). */
export function promptDim(f: {
  prompts: readonly string[];
  promptEmbedding?: PromptEmbeddingLike | undefined;
}): number {
  return f.promptEmbedding !== undefined ? f.promptEmbedding.vectors[0]!.length : f.prompts.length;
}

/**
 * The vector `[promptDim]` a prompt feature feeds for vocabulary entry `index`: the stored embedding
 * of that prompt, or the one-hot.
 */
export function promptFeatureVector(
  f: { prompts: readonly string[]; promptEmbedding?: PromptEmbeddingLike | undefined },
  index: number,
): Float32Array {
  if (f.promptEmbedding === undefined) return promptOneHot(f.prompts.length, index);
  const v = f.promptEmbedding.vectors[index];
  if (v === undefined) throw new RangeError(`prompt index ${index} outside the table 0..${f.prompts.length - 1}`);
  return Float32Array.from(v);
}

/**
 * The prompt a policy is given, as it will use it: the known spelling of `text` when it matches one
 * of `prompts` (normalised match), else `text` itself when the policy embeds any text
 * (`anyPrompt`: a text encoder), else an error naming the prompt and the known ones.
 */
export function matchPrompt(
  policy: { prompts: readonly string[]; anyPrompt?: boolean | undefined },
  text: string,
): string {
  if (typeof text !== "string") throw new TypeError(`a prompt must be a string, got ${typeof text}`);
  if (policy.anyPrompt !== true) return policy.prompts[promptIndex(policy.prompts, text)]!;
  if (text.trim() === "") throw new Error("a prompt must not be empty");
  const key = normalizePrompt(text);
  return policy.prompts.find((p) => normalizePrompt(p) === key) ?? text;
}

/** The one-hot vector `[K]` of vocabulary index `index` (what the network's prompt feature sees). */
export function promptOneHot(k: number, index: number): Float32Array {
  if (!Number.isInteger(index) || index < 0 || index >= k)
    throw new RangeError(`prompt index ${index} outside the vocabulary 0..${k - 1}`);
  const v = new Float32Array(k);
  v[index] = 1;
  return v;
}
