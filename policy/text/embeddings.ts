/**
 * Prompt embeddings from a file (`train --task-embeddings prompts.safetensors`): a safetensors file
 * holding one 1-D float tensor `[D]` per prompt, the tensor's name being the prompt text (F32, or
 * F16/BF16/F64 converted to float32). Every tensor has the same D; two names equal after
 * `normalizePrompt` are refused, as is any other layout, naming the file and the tensor.
 *
 * The reader is the repository's own safetensors decoder (`policy/checkpoint/safetensors.ts`):
 * `@huggingface/hub`'s parser only fetches and parses the headers of files on the Hub (no tensor
 * data, no local file).
 */
import { readFile } from "node:fs/promises";
import { decodeSafetensors } from "../checkpoint/safetensors.ts";
import { normalizePrompt } from "../net/prompt.ts";

/** The prompts of an embeddings file and their vectors, in the file's order. */
export interface PromptTable {
  /** The file the table came from (named in errors). */
  source: string;
  prompts: string[];
  /** One `[dim]` vector per prompt. */
  vectors: Float32Array[];
  dim: number;
}

/** Reads a prompt embeddings file (see the module doc); throws naming the file and the tensor. */
export async function readPromptTable(file: string): Promise<PromptTable> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(file));
  } catch (err) {
    throw new Error(`--task-embeddings ${file}: cannot read the file (${(err as Error).message})`, { cause: err });
  }
  return promptTableOf(bytes, file);
}

/** Decodes a prompt embeddings file's bytes; `source` names it in errors. */
export function promptTableOf(bytes: Uint8Array, source: string): PromptTable {
  const { tensors } = decodeSafetensors(bytes, source);
  if (tensors.size === 0) throw new Error(`${source}: holds no tensor (expected one [D] vector per prompt)`);
  const prompts: string[] = [];
  const vectors: Float32Array[] = [];
  const seen = new Map<string, string>();
  let dim: number | undefined;
  for (const [name, t] of tensors) {
    if (t.shape.length !== 1 || t.shape[0]! < 1)
      throw new Error(
        `${source}: tensor ${JSON.stringify(name)} has shape [${t.shape.join(", ")}]; a prompt's embedding is one 1-D tensor [D] named by the prompt`,
      );
    if (dim === undefined) dim = t.shape[0]!;
    else if (t.shape[0] !== dim)
      throw new Error(
        `${source}: tensor ${JSON.stringify(name)} has ${t.shape[0]} values, the first one ${JSON.stringify(prompts[0])} ${dim}; every prompt's embedding has the same size`,
      );
    const bad = t.data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new Error(`${source}: tensor ${JSON.stringify(name)} has a non-finite value at index ${bad}`);
    const key = normalizePrompt(name);
    if (key === "")
      throw new Error(`${source}: tensor ${JSON.stringify(name)} is not a prompt (empty after normalisation)`);
    const prev = seen.get(key);
    if (prev !== undefined)
      throw new Error(
        `${source}: tensors ${JSON.stringify(prev)} and ${JSON.stringify(name)} are the same prompt after normalisation`,
      );
    seen.set(key, name);
    prompts.push(name);
    vectors.push(t.data);
  }
  return { source, prompts, vectors, dim: dim! };
}

/**
 * The vectors of `prompts` in `table` (normalised match), in that order. Throws naming every
 * prompt the file lacks and the file.
 */
export function tableVectors(table: PromptTable, prompts: readonly string[]): Float32Array[] {
  const byKey = new Map(table.prompts.map((p, i) => [normalizePrompt(p), table.vectors[i]!]));
  const missing = prompts.filter((p) => !byKey.has(normalizePrompt(p)));
  if (missing.length > 0)
    throw new Error(
      `${table.source}: no embedding for the dataset task${missing.length > 1 ? "s" : ""} ${missing.map((p) => JSON.stringify(p)).join(", ")} (the file has ${table.prompts.map((p) => JSON.stringify(p)).join(", ")})`,
    );
  return prompts.map((p) => byKey.get(normalizePrompt(p))!);
}
