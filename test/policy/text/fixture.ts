/** The text encoder fixture: the committed WordPiece tokenizer.json and a bag-of-words ONNX encoder over its words. */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SPECIAL_TOKENS, bagOfWordsEncoder, type BagOfWordsEncoder } from "../../../policy/text/bag-of-words.ts";
import type { TextEncoderFiles } from "../../../policy/text/encoder.ts";

/** The committed tokenizer (BERT-style WordPiece over a few instruction words). */
export const TOKENIZER_FIXTURE = fileURLToPath(new URL("./data/tokenizer.json", import.meta.url));

/** The fixture tokenizer's words (its vocabulary without the special tokens), in id order. */
export function fixtureWords(): string[] {
  const json = JSON.parse(readFileSync(TOKENIZER_FIXTURE, "utf8")) as { model: { vocab: Record<string, number> } };
  return Object.entries(json.model.vocab)
    .sort(([, a], [, b]) => a - b)
    .map(([w]) => w)
    .filter((w) => !(SPECIAL_TOKENS as readonly string[]).includes(w));
}

/**
 * Writes `<dir>/model.onnx`, a bag-of-words encoder over the fixture's words, and copies the fixture
 * tokenizer beside it as `<dir>/tokenizer.json`.
 */
export function writeTextEncoder(
  dir: string,
  opts: { dim?: number; seed?: number; pooling?: "mean" | "none" } = {},
): TextEncoderFiles & { encoder: BagOfWordsEncoder } {
  mkdirSync(dir, { recursive: true });
  const encoder = bagOfWordsEncoder({
    words: fixtureWords(),
    dim: opts.dim ?? 8,
    seed: opts.seed ?? 0,
    ...(opts.pooling ? { pooling: opts.pooling } : {}),
  });
  const model = join(dir, "model.onnx");
  const tokenizer = join(dir, "tokenizer.json");
  writeFileSync(model, encoder.model);
  copyFileSync(TOKENIZER_FIXTURE, tokenizer);
  return { model, tokenizer, encoder };
}
