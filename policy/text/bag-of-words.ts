/**
 * A bag-of-words text encoder: a stand-in for a real sentence encoder (MiniLM, CLIP's text tower)
 * where none can be had, built from a word list and seeded random word vectors. It is a real
 * ONNX model with a real HuggingFace `tokenizer.json` (a BERT-style WordPiece tokenizer: BERT
 * normaliser (lower case), BERT pre-tokenizer, `[CLS] ... [SEP]` template), so it exercises the
 * same path a downloaded encoder takes.
 *
 * The graph: `input_ids` int64 `[batch, tokens]`, `attention_mask` int64 `[batch, tokens]` ->
 * Gather over the word table `[V, D]`, then either the per-token vectors `last_hidden_state`
 * `[batch, tokens, D]` (`pooling: "none"`, pooled by the runtime) or their masked mean
 * `sentence_embedding` `[batch, D]` (`pooling: "mean"`). The special tokens' vectors are zero.
 */
import {
  encodeModel,
  floatTensor,
  int64Tensor,
  AttributeType,
  DataType,
  IR_VERSION,
  OPSET,
  type NodeProto,
} from "../onnx/proto.ts";
import { Rng } from "../random.ts";
import { VERSION } from "../version.ts";

/** Options of {@link bagOfWordsEncoder}. */
export interface BagOfWordsOptions {
  /** The vocabulary (lower case words; duplicates dropped). */
  words: readonly string[];
  /** Embedding size D. */
  dim: number;
  /** Seed of the word vectors (N(0, 1) each). */
  seed: number;
  /** `mean` (default): the graph pools, output `[batch, D]`; `none`: per-token output `[batch, tokens, D]`. */
  pooling?: "mean" | "none";
}

/** The special tokens, ids 0..3, in this order. */
export const SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] as const;

/** A bag-of-words encoder: the ONNX bytes, its `tokenizer.json` object and the word table `[V, D]` by token id. */
export interface BagOfWordsEncoder {
  model: Uint8Array;
  tokenizer: Record<string, unknown>;
  /** Token -> id (the tokenizer's vocabulary). */
  vocab: Record<string, number>;
  /** `[V * D]`, row = token id. */
  table: Float32Array;
  dim: number;
}

/** Builds a bag-of-words encoder (see the module doc). */
export function bagOfWordsEncoder(opts: BagOfWordsOptions): BagOfWordsEncoder {
  const { dim: D } = opts;
  if (!Number.isInteger(D) || D < 1) throw new RangeError(`bag of words: dim must be a positive integer, got ${D}`);
  const vocab: Record<string, number> = {};
  for (const t of SPECIAL_TOKENS) vocab[t] = Object.keys(vocab).length;
  for (const w of opts.words) {
    const word = w.toLowerCase();
    if (!/^[a-z0-9]+$/.test(word)) throw new Error(`bag of words: '${w}' is not one lower case word`);
    if (!(word in vocab)) vocab[word] = Object.keys(vocab).length;
  }
  const V = Object.keys(vocab).length;
  const rng = new Rng(opts.seed);
  const table = new Float32Array(V * D);
  table.set(rng.normalArray((V - 1) * D), D); // [PAD] stays zero
  for (const t of ["[CLS]", "[SEP]"]) table.fill(0, vocab[t]! * D, (vocab[t]! + 1) * D);

  const pooled = (opts.pooling ?? "mean") === "mean";
  const dims = (...d: (number | string)[]): { dim: ({ dimValue: number } | { dimParam: string })[] } => ({
    dim: d.map((x) => (typeof x === "number" ? { dimValue: x } : { dimParam: x })),
  });
  const tensorType = (elemType: number, shape: ReturnType<typeof dims>) => ({ tensorType: { elemType, shape } });
  const nodes: NodeProto[] = [
    {
      opType: "Gather",
      input: ["table", "input_ids"],
      output: [pooled ? "vectors" : "last_hidden_state"],
      attribute: [{ name: "axis", type: AttributeType.INT, i: 0 }],
    },
  ];
  if (pooled)
    nodes.push(
      {
        opType: "Cast",
        input: ["attention_mask"],
        output: ["mask"],
        attribute: [{ name: "to", type: AttributeType.INT, i: DataType.FLOAT }],
      },
      { opType: "Unsqueeze", input: ["mask", "axis2"], output: ["mask3"] },
      { opType: "Mul", input: ["vectors", "mask3"], output: ["masked"] },
      {
        opType: "ReduceSum",
        input: ["masked", "axis1"],
        output: ["sum"],
        attribute: [{ name: "keepdims", type: AttributeType.INT, i: 0 }],
      },
      {
        opType: "ReduceSum",
        input: ["mask3", "axis1"],
        output: ["count"],
        attribute: [{ name: "keepdims", type: AttributeType.INT, i: 0 }],
      },
      { opType: "Max", input: ["count", "one"], output: ["count1"] },
      { opType: "Div", input: ["sum", "count1"], output: ["sentence_embedding"] },
    );
  const model = encodeModel({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: "", version: OPSET }],
    producerName: "actionflow",
    producerVersion: VERSION,
    docString: `bag-of-words text encoder: ${V} tokens, D = ${D}, seed ${opts.seed}`,
    graph: {
      name: "bag_of_words",
      node: nodes,
      initializer: [
        floatTensor("table", table, [V, D]),
        ...(pooled
          ? [
              int64Tensor("axis1", [1], [1]),
              int64Tensor("axis2", [2], [1]),
              floatTensor("one", Float32Array.of(1), [1]),
            ]
          : []),
      ],
      input: [
        { name: "input_ids", type: tensorType(DataType.INT64, dims("batch", "tokens")) },
        { name: "attention_mask", type: tensorType(DataType.INT64, dims("batch", "tokens")) },
      ],
      output: pooled
        ? [{ name: "sentence_embedding", type: tensorType(DataType.FLOAT, dims("batch", D)) }]
        : [{ name: "last_hidden_state", type: tensorType(DataType.FLOAT, dims("batch", "tokens", D)) }],
    },
  });
  return { model, tokenizer: wordPieceTokenizer(vocab), vocab, table, dim: D };
}

/** A BERT-style WordPiece `tokenizer.json` over `vocab` (ids 0..3 the special tokens). */
export function wordPieceTokenizer(vocab: Record<string, number>): Record<string, unknown> {
  const special = (content: string) => ({
    id: vocab[content]!,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const cls = vocab["[CLS]"]!;
  const sep = vocab["[SEP]"]!;
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map(special),
    normalizer: {
      type: "BertNormalizer",
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase: true,
    },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [
        { SpecialToken: { id: "[CLS]", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "[SEP]", type_id: 0 } },
      ],
      pair: [
        { SpecialToken: { id: "[CLS]", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "[SEP]", type_id: 0 } },
        { Sequence: { id: "B", type_id: 1 } },
        { SpecialToken: { id: "[SEP]", type_id: 1 } },
      ],
      special_tokens: {
        "[CLS]": { id: "[CLS]", ids: [cls], tokens: ["[CLS]"] },
        "[SEP]": { id: "[SEP]", ids: [sep], tokens: ["[SEP]"] },
      },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: {
      type: "WordPiece",
      unk_token: "[UNK]",
      continuing_subword_prefix: "##",
      max_input_chars_per_word: 100,
      vocab,
    },
  };
}
