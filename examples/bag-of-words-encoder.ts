/**
 * A bag-of-words text encoder for `train --text-encoder`: writes `<out>/enc.onnx` (Gather over a
 * word table + masked mean, `sentence_embedding` [batch, D], see `policy/text/bag-of-words.ts`) and
 * `<out>/tokenizer.json` (a BERT-style WordPiece tokenizer over the word list). The word vectors are
 * fixed random N(0, 1) vectors drawn from `--seed`: a stand-in for a real sentence encoder such as
 * MiniLM (its ONNX export and tokenizer.json go through the same flags), which this example cannot
 * download. Words outside the list map to `[UNK]`, which has a vector of its own.
 *
 *   npx tsx examples/bag-of-words-encoder.ts --out runs/bow --dim 32 --seed 0 --json
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { bagOfWordsEncoder } from "../policy/text/bag-of-words.ts";

/** Words of short manipulation instructions (the fork task's and their usual paraphrases). */
const WORDS = [
  ...["a", "an", "the", "to", "of", "and", "then", "through", "via", "into", "past", "between", "on", "at"],
  ...["pass", "go", "take", "move", "use", "head", "steer", "drive", "reach", "push", "pick", "place", "stay"],
  ...["left", "right", "up", "down", "forward", "back", "middle", "centre", "center", "side", "hand"],
  ...["gap", "opening", "hole", "passage", "way", "path", "route", "slot", "wall", "target", "goal", "object"],
  ...["red", "green", "blue", "yellow", "arm", "robot", "please", "now", "one", "two"],
];

const { values } = parseArgs({
  options: {
    out: { type: "string" },
    dim: { type: "string", default: "32" },
    seed: { type: "string", default: "0" },
    json: { type: "boolean", default: false },
  },
});
if (!values.out) throw new Error("--out <dir>: where enc.onnx and tokenizer.json go");
const dim = Number(values.dim);
const seed = Number(values.seed);
if (!Number.isInteger(dim) || dim < 1) throw new Error(`--dim must be a positive integer, got ${values.dim}`);
if (!Number.isInteger(seed) || seed < 0) throw new Error(`--seed must be an integer >= 0, got ${values.seed}`);
const out = resolve(values.out);
const enc = bagOfWordsEncoder({ words: WORDS, dim, seed });
await mkdir(out, { recursive: true });
const model = join(out, "enc.onnx");
const tokenizer = join(out, "tokenizer.json");
await writeFile(model, enc.model);
await writeFile(tokenizer, JSON.stringify(enc.tokenizer, null, 2) + "\n");
const result = { model, tokenizer, dim, seed, tokens: Object.keys(enc.vocab).length };
if (!values.json) console.error(`wrote ${model} and ${tokenizer}: ${result.tokens} tokens, D = ${dim}`);
console.log(JSON.stringify(result));
