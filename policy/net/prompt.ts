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
 */

/** A head observation feature as far as prompts go (`ObsFeature` of `config.ts`). */
interface FeatureLike {
  name: string;
  prompts?: string[] | undefined;
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

/** The one-hot vector `[K]` of vocabulary index `index` (what the network's prompt feature sees). */
export function promptOneHot(k: number, index: number): Float32Array {
  if (!Number.isInteger(index) || index < 0 || index >= k)
    throw new RangeError(`prompt index ${index} outside the vocabulary 0..${k - 1}`);
  const v = new Float32Array(k);
  v[index] = 1;
  return v;
}
