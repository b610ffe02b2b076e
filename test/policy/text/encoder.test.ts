import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { PromptEncoder } from "../../../policy/text/encoder.ts";
import { bagOfWordsEncoder } from "../../../policy/text/bag-of-words.ts";
import { checkOnnxFile, maxAbsDiff, onnxCheckerUnavailable } from "../onnx/helpers.ts";
import { TOKENIZER_FIXTURE, fixtureWords, writeTextEncoder } from "./fixture.ts";

const root = mkdtempSync(join(tmpdir(), "actionflow-text-encoder-"));
const why = onnxCheckerUnavailable();
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The bag-of-words embedding by hand: the mean of the tokens' table rows, then (optionally) L2. */
function reference(table: Float32Array, dim: number, ids: number[], l2: boolean): Float32Array {
  const v = new Float32Array(dim);
  for (const id of ids) for (let d = 0; d < dim; d++) v[d]! += table[id * dim + d]! / ids.length;
  if (!l2) return v;
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

describe("an ONNX text encoder with its tokenizer.json", () => {
  it("the committed tokenizer is the one the bag-of-words builder writes for its words", () => {
    const built = bagOfWordsEncoder({ words: fixtureWords(), dim: 2, seed: 0 });
    expect(JSON.parse(readFileSync(TOKENIZER_FIXTURE, "utf8"))).toEqual(built.tokenizer);
  });

  it("tokenizes through @huggingface/tokenizers and embeds as the word table says, pooled in the graph or by the runtime", async () => {
    const pooled = writeTextEncoder(join(root, "mean"), { dim: 8, seed: 3 });
    const perToken = writeTextEncoder(join(root, "none"), { dim: 8, seed: 3, pooling: "none" });
    if (!why) {
      expect(checkOnnxFile(pooled.model)).toBe("");
      expect(checkOnnxFile(perToken.model)).toBe("");
    }
    const { vocab, table } = pooled.encoder;
    // [CLS] pass through the left gap ! [SEP]: case folded by the BERT normaliser, "!" is unknown
    const ids = ["[CLS]", "pass", "through", "the", "left", "gap", "[UNK]", "[SEP]"].map((t) => vocab[t]!);
    const text = "Pass through the LEFT gap!";
    for (const normalize of [false, true]) {
      const a = await PromptEncoder.load(pooled, { normalize });
      const b = await PromptEncoder.load(perToken, { normalize });
      try {
        expect(a.dim).toBe(8);
        expect(b.dim).toBe(8);
        const [va] = await a.embed([text]);
        const [vb] = await b.embed([text]);
        const want = reference(table, 8, ids, normalize);
        expect(maxAbsDiff(va!, want)).toBeLessThan(1e-6);
        expect(maxAbsDiff(vb!, want)).toBeLessThan(1e-6);
        if (normalize) expect(Math.hypot(...va!)).toBeCloseTo(1, 6);
        const [left, right] = await a.embed(["pass through the left gap", "pass through the right gap"]);
        expect(maxAbsDiff(left!, right!)).toBeGreaterThan(1e-3);
      } finally {
        await a.release();
        await b.release();
      }
    }
  });

  it("refuses a missing or malformed tokenizer and a model that is not a text encoder, naming the file", async () => {
    const files = writeTextEncoder(join(root, "bad"));
    await expect(PromptEncoder.load({ ...files, tokenizer: join(root, "none.json") })).rejects.toThrow(
      /none\.json: cannot read the tokenizer/,
    );
    const notTokenizer = join(root, "bad", "other.json");
    writeFileSync(notTokenizer, JSON.stringify({ vocab: {} }));
    await expect(PromptEncoder.load({ ...files, tokenizer: notTokenizer })).rejects.toThrow(
      /other\.json: not a HuggingFace tokenizer\.json \(no 'model'\)/,
    );
    const garbage = join(root, "bad", "garbage.onnx");
    writeFileSync(garbage, "not a model");
    await expect(PromptEncoder.load({ ...files, model: garbage })).rejects.toThrow(
      /garbage\.onnx: onnxruntime could not load the text encoder/,
    );
    const enc = await PromptEncoder.load(files);
    try {
      await expect(enc.embed(["  "])).rejects.toThrow(/a prompt must be a non-empty string/);
    } finally {
      await enc.release();
    }
  });
});
