/**
 * A text encoder the user brings: an ONNX model with its HuggingFace `tokenizer.json`, tokenized by
 * `@huggingface/tokenizers` (pure JS) and run by onnxruntime-node, one prompt at a time (no padding).
 *
 * The model takes `input_ids` int64 `[N, T]` and optionally `attention_mask` and `token_type_ids`
 * (int64 `[N, T]`: ones, and the tokenizer's type ids or zeros). Its output (`sentence_embedding`
 * when it has one, else its first output) is either pooled, `[N, D]`, or per token, `[N, T, D]`,
 * then mean-pooled over the attention mask as sentence-transformers does. With `normalize` the
 * embedding is L2-normalised (as CLIP and sentence-transformers' normalised models do).
 *
 * In a run folder the encoder lives in `text-encoder/` ({@link TEXT_ENCODER_DIR}) as `model.onnx`
 * and `tokenizer.json`, beside `policy.onnx` after an export.
 */
import { copyFile, mkdir, readFile, rename } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import * as ort from "onnxruntime-node";

/** The folder of a run (and of an export) holding the text encoder's files. */
export const TEXT_ENCODER_DIR = "text-encoder";
/** The encoder model's file name inside {@link TEXT_ENCODER_DIR}. */
export const TEXT_ENCODER_MODEL = "model.onnx";
/** The tokenizer's file name inside {@link TEXT_ENCODER_DIR}. */
export const TEXT_ENCODER_TOKENIZER = "tokenizer.json";

/** The files of a text encoder. */
export interface TextEncoderFiles {
  /** The ONNX model. */
  model: string;
  /** Its HuggingFace `tokenizer.json`. */
  tokenizer: string;
}

/** The files of the text encoder kept in `dir` (a run or export folder). */
export function textEncoderFilesIn(dir: string): TextEncoderFiles {
  return {
    model: join(dir, TEXT_ENCODER_DIR, TEXT_ENCODER_MODEL),
    tokenizer: join(dir, TEXT_ENCODER_DIR, TEXT_ENCODER_TOKENIZER),
  };
}

/**
 * Copies a text encoder's two files into `dir`'s {@link TEXT_ENCODER_DIR} folder (each written to a
 * temporary sibling and renamed into place); nothing when they are already those files.
 */
export async function copyTextEncoder(files: TextEncoderFiles, dir: string): Promise<TextEncoderFiles> {
  const to = textEncoderFilesIn(dir);
  if (resolve(files.model) === resolve(to.model) && resolve(files.tokenizer) === resolve(to.tokenizer)) return to;
  await mkdir(dirname(to.model), { recursive: true });
  for (const [from, dest] of [
    [files.model, to.model],
    [files.tokenizer, to.tokenizer],
  ] as const) {
    const tmp = `${dest}.tmp-${process.pid}`;
    try {
      await copyFile(from, tmp);
    } catch (err) {
      throw new Error(`${from}: cannot copy the text encoder's file (${(err as Error).message})`, { cause: err });
    }
    await rename(tmp, dest);
  }
  return to;
}

/** Options of {@link PromptEncoder.load}. */
export interface PromptEncoderOptions {
  /** L2-normalise each embedding (default true). */
  normalize?: boolean;
  /** Intra-op threads of the encoder's session (default 1: it runs once per new prompt). */
  threads?: number;
}

/** An ONNX text encoder with its tokenizer: prompt text -> embedding `[dim]` float32. */
export class PromptEncoder {
  readonly normalize: boolean;
  /** Where the model came from (named in errors). */
  readonly source: string;
  private queue: Promise<unknown> = Promise.resolve();
  private size = 0;

  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly tokenizer: Tokenizer,
    private readonly output: string,
    source: string,
    normalize: boolean,
  ) {
    this.source = source;
    this.normalize = normalize;
  }

  /** The embedding size D (from a probe run at load). */
  get dim(): number {
    return this.size;
  }

  /**
   * Loads the model and the tokenizer and embeds a probe text to learn D. Throws naming the file
   * when either cannot be read or the model's inputs and outputs are not a text encoder's.
   */
  static async load(files: TextEncoderFiles, opts: PromptEncoderOptions = {}): Promise<PromptEncoder> {
    let json: unknown;
    try {
      json = JSON.parse(await readFile(files.tokenizer, "utf8"));
    } catch (err) {
      throw new Error(`${files.tokenizer}: cannot read the tokenizer (${(err as Error).message})`, { cause: err });
    }
    if (!json || typeof json !== "object" || !("model" in json))
      throw new Error(`${files.tokenizer}: not a HuggingFace tokenizer.json (no 'model')`);
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(json, {});
    } catch (err) {
      throw new Error(`${files.tokenizer}: the tokenizer cannot be built (${(err as Error).message})`, { cause: err });
    }
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(files.model, {
        executionProviders: ["cpu"],
        logSeverityLevel: 3,
        intraOpNumThreads: opts.threads ?? 1,
        interOpNumThreads: 1,
      });
    } catch (err) {
      throw new Error(`${files.model}: onnxruntime could not load the text encoder (${(err as Error).message})`, {
        cause: err,
      });
    }
    if (!session.inputNames.includes("input_ids"))
      throw new Error(
        `${files.model}: a text encoder takes 'input_ids'; the model takes ${session.inputNames.join(", ")}`,
      );
    const extra = session.inputNames.filter((n) => !["input_ids", "attention_mask", "token_type_ids"].includes(n));
    if (extra.length > 0)
      throw new Error(
        `${files.model}: unknown encoder input${extra.length > 1 ? "s" : ""} ${extra.join(", ")} (a text encoder takes input_ids, attention_mask, token_type_ids)`,
      );
    const output = session.outputNames.includes("sentence_embedding") ? "sentence_embedding" : session.outputNames[0];
    if (output === undefined) throw new Error(`${files.model}: the text encoder has no output`);
    const enc = new PromptEncoder(session, tokenizer, output, files.model, opts.normalize ?? true);
    enc.size = (await enc.embedRaw("a")).length;
    return enc;
  }

  /** The embeddings `[dim]` of `texts`, in order (one encoder run each). */
  async embed(texts: readonly string[]): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    for (const t of texts) {
      const v = await this.embedRaw(t);
      if (v.length !== this.dim)
        throw new Error(`${this.source}: prompt ${JSON.stringify(t)} gave ${v.length} values, not ${this.dim}`);
      out.push(v);
    }
    return out;
  }

  /** Frees the encoder's session. */
  async release(): Promise<void> {
    await this.queue;
    await this.session.release();
  }

  private embedRaw(text: string): Promise<Float32Array> {
    const run = (): Promise<Float32Array> => this.run(text);
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async run(text: string): Promise<Float32Array> {
    if (typeof text !== "string" || text.trim() === "") throw new Error(`a prompt must be a non-empty string`);
    const e = this.tokenizer.encode(text, { return_token_type_ids: true });
    const unknown = e.ids.findIndex((id) => typeof id !== "number" || !Number.isInteger(id));
    if (unknown >= 0)
      throw new Error(
        `the tokenizer has no id for token ${JSON.stringify(e.tokens[unknown])} of prompt ${JSON.stringify(text)} (its model has no unknown token)`,
      );
    const T = e.ids.length;
    if (T === 0) throw new Error(`prompt ${JSON.stringify(text)} gives no token`);
    const int64 = (xs: readonly number[]): ort.Tensor =>
      new ort.Tensor(
        "int64",
        BigInt64Array.from(xs, (x) => BigInt(x)),
        [1, T],
      );
    const feeds: Record<string, ort.Tensor> = { input_ids: int64(e.ids) };
    const mask = e.attention_mask.length === T ? e.attention_mask : Array<number>(T).fill(1);
    if (this.session.inputNames.includes("attention_mask")) feeds["attention_mask"] = int64(mask);
    if (this.session.inputNames.includes("token_type_ids"))
      feeds["token_type_ids"] = int64(e.token_type_ids?.length === T ? e.token_type_ids : Array<number>(T).fill(0));
    let y: ort.Tensor | undefined;
    try {
      y = (await this.session.run(feeds))[this.output];
    } catch (err) {
      throw new Error(
        `${this.source}: the text encoder failed on prompt ${JSON.stringify(text)} (${(err as Error).message})`,
        {
          cause: err,
        },
      );
    }
    if (!y || y.type !== "float32")
      throw new Error(`${this.source}: output '${this.output}' must be float32, got ${y?.type ?? "nothing"}`);
    const data = y.data as Float32Array;
    let v: Float32Array;
    if (y.dims.length === 2 && y.dims[0] === 1) v = data.slice();
    else if (y.dims.length === 3 && y.dims[0] === 1 && y.dims[1] === T) {
      const D = y.dims[2]!;
      v = new Float32Array(D);
      let count = 0;
      for (let t = 0; t < T; t++) {
        if (!mask[t]) continue;
        count++;
        for (let d = 0; d < D; d++) v[d]! += data[t * D + d]!;
      }
      for (let d = 0; d < D; d++) v[d]! /= Math.max(count, 1);
    } else
      throw new Error(
        `${this.source}: output '${this.output}' has shape [${y.dims.join(", ")}] for ${T} tokens; a text encoder gives [N, D] or [N, T, D]`,
      );
    const bad = v.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new Error(`${this.source}: prompt ${JSON.stringify(text)} gave a non-finite value at ${bad}`);
    if (this.normalize) {
      const norm = Math.hypot(...v);
      if (!(norm > 0))
        throw new Error(`${this.source}: prompt ${JSON.stringify(text)} gave a zero vector (cannot normalise it)`);
      for (let d = 0; d < v.length; d++) v[d]! /= norm;
    }
    return v;
  }
}
