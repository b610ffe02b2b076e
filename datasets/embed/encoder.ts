/**
 * A frozen ONNX image encoder (a SigLIP or DINOv2 vision tower, or any model of the same contract)
 * run on onnxruntime-node's CPU provider: uint8 RGB frames in, one embedding per frame out.
 *
 * The contract: one float32 image input of rank 4, `[N, 3, H, W]` (NCHW, 3 channels; N and H, W
 * static or symbolic), and a float32 output `[N, D]` (a pooled embedding) or `[N, T, D]` (T tokens).
 * Other inputs are refused. Among several outputs the first `[N, D]` one is taken (HF exports:
 * `pooler_output` before `last_hidden_state` when both are rank 2 and 3), else the first `[N, T, D]`;
 * `output` names another.
 *
 * Pixels become `(x / 255 - mean[c]) / std[c]` per channel, resized whole to `W x H` (no centre
 * crop). Each of size, mean and std comes from the first source that gives it:
 *
 * 1. the caller (the `--size`, `--mean`, `--std` flags);
 * 2. the graph, for the size only: static H and W of the image input (a size from anywhere else that
 *    differs is refused);
 * 3. the model's `metadata_props`: `image_size` (`"WxH"`, `"224"` for a square, or JSON
 *    `{"height": h, "width": w}`), `image_mean` and `image_std` (`"r,g,b"` or a JSON list, in [0, 1]
 *    pixel units);
 * 4. `preprocessor_config.json` beside the model file, as Hugging Face and optimum exports ship it:
 *    `image_mean`, `image_std` (`do_normalize: false` means mean 0, std 1), and the size from
 *    `crop_size` when `do_center_crop`, else `size` (`{height, width}`, or `shortest_edge` for a
 *    square); a `rescale_factor` other than 1/255 is refused;
 * 5. mean and std only: ImageNet's (0.485, 0.456, 0.406) and (0.229, 0.224, 0.225), with a message.
 *
 * A symbolic H or W with no size from any source is an error asking for `--size`.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import * as ort from "onnxruntime-node";
import protobuf from "protobufjs";

/** ImageNet's per-channel mean of [0, 1] RGB pixels (torchvision's and DINOv2's preprocessing). */
export const IMAGENET_MEAN: readonly [number, number, number] = [0.485, 0.456, 0.406];
/** ImageNet's per-channel standard deviation of [0, 1] RGB pixels. */
export const IMAGENET_STD: readonly [number, number, number] = [0.229, 0.224, 0.225];

/** `metadata_props` keys read from the model. */
export const METADATA_KEYS = { size: "image_size", mean: "image_mean", std: "image_std" } as const;
/** The Hugging Face preprocessing file read beside the model. */
export const PREPROCESSOR_CONFIG = "preprocessor_config.json";

/** Where a preprocessing value came from. */
export type PreprocessSource = "flag" | "graph" | "metadata" | "preprocessor_config" | "imagenet";

/** An image size in pixels. */
export interface ImageSize {
  width: number;
  height: number;
}

/** Options of {@link ImageEncoder.load}; each value given here wins over the model's. */
export interface ImageEncoderOptions {
  /** Input size (the `--size` flag). */
  size?: ImageSize;
  /** Per-channel mean in [0, 1] pixel units (the `--mean` flag). */
  mean?: readonly number[];
  /** Per-channel std in [0, 1] pixel units (the `--std` flag). */
  std?: readonly number[];
  /** The output to read, by name (default: see the module comment). */
  output?: string;
  /** onnxruntime intra-op threads (default: onnxruntime's). */
  threads?: number;
  /** Where messages go (the ImageNet default, the output chosen); default stderr. */
  log?: (message: string) => void;
}

/** What {@link ImageEncoder.describe} reports: the encoder and where each preprocessing value came from. */
export interface EncoderDescription {
  file: string;
  /** SHA-256 of the model file. */
  sha256: string;
  input: string;
  output: string;
  /** Per-frame output shape: `[D]` or `[T, D]`. */
  shape: number[];
  size: ImageSize;
  mean: number[];
  std: number[];
  sources: { size: PreprocessSource; mean: PreprocessSource; std: PreprocessSource };
}

/** A loaded encoder; {@link encode} frames, {@link release} when done. */
export class ImageEncoder {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly info: EncoderDescription,
    /** Static batch size of the graph, or undefined when N is symbolic. */
    readonly fixedBatch: number | undefined,
  ) {}

  /** The NCHW input of one batch, reused from call to call (see {@link normalizeFrames}). */
  private scratch = new Float32Array(0);

  /**
   * Loads `file` (errors name it, and the input or output at fault), settles the size, mean and std,
   * and runs one zero frame to learn the per-frame output shape.
   */
  static async load(file: string, opts: ImageEncoderOptions = {}): Promise<ImageEncoder> {
    const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (err) {
      throw new Error(`${file}: cannot read the encoder`, { cause: err });
    }
    let session: ort.InferenceSession;
    try {
      // from the path, so weights stored as external data beside the model load too
      session = await ort.InferenceSession.create(file, {
        executionProviders: ["cpu"],
        graphOptimizationLevel: "all",
        logSeverityLevel: 3,
        ...(opts.threads !== undefined ? { intraOpNumThreads: opts.threads, interOpNumThreads: 1 } : {}),
      });
    } catch (err) {
      throw new Error(`${file}: onnxruntime could not load the encoder: ${(err as Error).message}`, { cause: err });
    }
    try {
      const input = imageInput(session, file);
      const metadata = modelMetadata(bytes, file);
      const config = await preprocessorConfig(file);
      const size = settleSize(file, input, opts.size, metadata, config);
      const mean = settleTriple("mean", file, opts.mean, metadata, config, IMAGENET_MEAN);
      const std = settleTriple("std", file, opts.std, metadata, config, IMAGENET_STD);
      if (mean.source === "imagenet" || std.source === "imagenet")
        log(
          `${file}: no ${[mean.source === "imagenet" ? "mean" : "", std.source === "imagenet" ? "std" : ""].filter(Boolean).join(" or ")} in the flags, the model's metadata_props (${METADATA_KEYS.mean}, ${METADATA_KEYS.std}) or ${PREPROCESSOR_CONFIG}: using ImageNet's (mean ${IMAGENET_MEAN.join(",")}, std ${IMAGENET_STD.join(",")})`,
        );
      for (const [c, s] of std.value.entries())
        if (!(s > 0)) throw new Error(`${file}: std of channel ${c} is ${s} (from ${std.source}); it must be > 0`);
      const output = pickOutput(session, file, opts.output, log);
      const info: EncoderDescription = {
        file,
        sha256: createHash("sha256").update(bytes).digest("hex"),
        input: input.name,
        output,
        shape: [],
        size: size.value,
        mean: [...mean.value],
        std: [...std.value],
        sources: { size: size.source, mean: mean.source, std: std.source },
      };
      const enc = new ImageEncoder(session, info, input.batch);
      const probe = await enc.run(new Float32Array(3 * size.value.width * size.value.height), 1);
      info.shape = probe.shape;
      return enc;
    } catch (err) {
      await session.release();
      throw err;
    }
  }

  /** The encoder, its preprocessing and per-frame output shape (`[D]` or `[T, D]`). */
  describe(): EncoderDescription {
    return { ...this.info, size: { ...this.info.size }, shape: [...this.info.shape] };
  }

  /** Values per frame of the output (`D` or `T * D`). */
  get frameSize(): number {
    return this.info.shape.reduce((a, b) => a * b, 1);
  }

  /**
   * Embeds `count` uint8 RGB frames `[count, height, width, 3]` (at {@link describe}'s size) in
   * batches of `batch` (a graph with a static N takes its own): returns float32 `[count, ...shape]`.
   * Throws naming the file and the frame on a non-finite output.
   */
  async encode(rgb: Uint8Array, count: number, opts: { batch?: number } = {}): Promise<Float32Array> {
    const { width, height } = this.info.size;
    const px = width * height;
    if (rgb.length !== count * px * 3)
      throw new RangeError(
        `${this.info.file}: ${rgb.length} bytes are not ${count} frames of ${width}x${height} RGB (${count * px * 3})`,
      );
    const batch = this.fixedBatch ?? opts.batch ?? 64;
    const per = this.frameSize;
    const out = new Float32Array(count * per);
    for (let at = 0; at < count; at += batch) {
      const n = Math.min(batch, count - at);
      const rows = this.fixedBatch ?? n;
      if (this.scratch.length < rows * 3 * px) this.scratch = new Float32Array(rows * 3 * px);
      const x = this.scratch.subarray(0, rows * 3 * px);
      normalizeFrames(rgb.subarray(at * px * 3, (at + n) * px * 3), n, this.info.size, this.info, x);
      x.fill(0, n * 3 * px); // a static batch's padding frames
      const y = await this.run(x, n);
      out.set(y.data.subarray(0, n * per), at * per);
    }
    for (let i = 0; i < out.length; i++)
      if (!Number.isFinite(out[i]!))
        throw new Error(
          `${this.info.file}: output '${this.info.output}' is ${out[i]} for frame ${Math.floor(i / per)} (value ${i % per})`,
        );
    return out;
  }

  /** Frees the onnxruntime session. */
  async release(): Promise<void> {
    await this.session.release();
  }

  /**
   * Runs `n` NCHW frames -> the output, `shape` per frame. With a static batch, `x` holds the batch's
   * rows (`n` frames, then padding) or just the `n` frames (then padded with zero frames here).
   */
  private async run(x: Float32Array, n: number): Promise<{ data: Float32Array; shape: number[] }> {
    const { width, height } = this.info.size;
    const rows = this.fixedBatch ?? n;
    const size = rows * 3 * width * height;
    const feed = x.length === size ? x : padded(x, size);
    const where = `${this.info.file}: output '${this.info.output}'`;
    let result: ort.InferenceSession.ReturnType;
    try {
      result = await this.session.run(
        { [this.info.input]: new ort.Tensor("float32", feed, [rows, 3, height, width]) },
        [this.info.output],
      );
    } catch (err) {
      throw new Error(
        `${this.info.file}: running the encoder on input '${this.info.input}' [${rows}, 3, ${height}, ${width}] failed: ${(err as Error).message}`,
        { cause: err },
      );
    }
    const t = result[this.info.output]!;
    if (t.type !== "float32") throw new Error(`${where} is ${t.type}, need float32`);
    const dims = t.dims.map(Number);
    if ((dims.length !== 2 && dims.length !== 3) || dims[0] !== rows)
      throw new Error(`${where} has shape [${dims.join(", ")}] for ${rows} frames, need [N, D] or [N, T, D]`);
    return { data: t.data as Float32Array, shape: dims.slice(1) };
  }
}

/**
 * uint8 RGB frames `[n, height, width, 3]` -> float32 NCHW `[n, 3, height, width]`, each value
 * `(x / 255 - mean[c]) / std[c]`, into `into` when given (its first `n` frames; the rest is left as
 * it is). Reusing one buffer matters: writing a fresh 40 MB array costs its page faults, several
 * times the work itself.
 */
export function normalizeFrames(
  rgb: Uint8Array,
  n: number,
  size: ImageSize,
  norm: { mean: readonly number[]; std: readonly number[] },
  into?: Float32Array,
): Float32Array {
  const px = size.width * size.height;
  if (rgb.length !== n * px * 3) throw new RangeError(`${rgb.length} bytes are not ${n} frames of ${px} RGB pixels`);
  if (into && into.length < n * 3 * px)
    throw new RangeError(`normalizeFrames: ${into.length} values cannot hold ${n} frames of ${px} RGB pixels`);
  // (x / 255 - m) / s for the 256 byte values of each channel, computed once
  const lut = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) for (let x = 0; x < 256; x++) lut[c * 256 + x] = (x / 255 - norm.mean[c]!) / norm.std[c]!;
  const out = into ?? new Float32Array(n * 3 * px);
  for (let f = 0; f < n; f++) {
    const src = f * px * 3;
    const r = f * 3 * px;
    const g = r + px;
    const b = g + px;
    for (let p = 0, q = src; p < px; p++, q += 3) {
      out[r + p] = lut[rgb[q]!]!;
      out[g + p] = lut[256 + rgb[q + 1]!]!;
      out[b + p] = lut[512 + rgb[q + 2]!]!;
    }
  }
  return out;
}

/** Parses an image size `WxH` (or one number for a square); `where` names the flag or field in errors. */
export function parseImageSize(text: string, where: string): ImageSize {
  const m = /^\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?$/.exec(text);
  const width = m ? Number(m[1]) : NaN;
  const height = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || !(width >= 1 && height >= 1 && width <= 8192 && height <= 8192))
    throw new Error(`${where}: expected an image size WxH (e.g. 224x224), got '${text}'`);
  return { width, height };
}

/** Parses three per-channel numbers `r,g,b` (or a JSON list of three); `where` names the flag or field. */
export function parseTriple(text: string, where: string): [number, number, number] {
  const s = text.trim().replace(/^\[(.*)\]$/, "$1");
  const parts = s.split(",").map((p) => p.trim());
  const nums = parts.map((p) => (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(p) ? Number(p) : NaN));
  if (nums.length !== 3 || !nums.every(Number.isFinite))
    throw new Error(`${where}: expected three numbers r,g,b (e.g. 0.5,0.5,0.5), got '${text}'`);
  return nums as [number, number, number];
}

/** The image input: its name and static batch size, H and W where the graph fixes them. */
interface ImageInput {
  name: string;
  batch: number | undefined;
  height: number | undefined;
  width: number | undefined;
}

function describeValue(m: ort.InferenceSession.ValueMetadata): string {
  return m.isTensor ? `'${m.name}' ${m.type} [${m.shape.map(String).join(", ")}]` : `'${m.name}' (not a tensor)`;
}

function imageInput(session: ort.InferenceSession, file: string): ImageInput {
  const all = session.inputMetadata;
  const listed = all.map(describeValue).join(", ");
  const ok = all.filter((m) => m.isTensor && m.shape.length === 4 && m.shape[1] === 3);
  const need = "an image input [N, 3, H, W] float32";
  if (ok.length === 0) {
    const first = all[0];
    const why =
      first && first.isTensor
        ? first.shape.length !== 4
          ? `input '${first.name}' has rank ${first.shape.length}`
          : `input '${first.name}' has ${String(first.shape[1])} channels`
        : "no tensor input";
    throw new Error(`${file}: ${why}; an encoder needs ${need} (inputs: ${listed || "none"})`);
  }
  if (all.length > 1)
    throw new Error(`${file}: the encoder has ${all.length} inputs (${listed}); it must take only ${need}`);
  const m = ok[0]!;
  if (!m.isTensor) throw new Error(`${file}: input '${m.name}' is not a tensor`);
  if (m.type !== "float32")
    throw new Error(`${file}: input '${m.name}' is ${m.type}; an encoder needs ${need} (export it in float32)`);
  const dim = (d: number | string | undefined): number | undefined => (typeof d === "number" && d > 0 ? d : undefined);
  return { name: m.name, batch: dim(m.shape[0]), height: dim(m.shape[2]), width: dim(m.shape[3]) };
}

function pickOutput(
  session: ort.InferenceSession,
  file: string,
  wanted: string | undefined,
  log: (m: string) => void,
): string {
  const all = session.outputMetadata;
  const listed = all.map(describeValue).join(", ");
  const rankOf = (m: ort.InferenceSession.ValueMetadata): number => (m.isTensor ? m.shape.length : 0);
  const fits = (m: ort.InferenceSession.ValueMetadata): boolean =>
    m.isTensor && m.type === "float32" && (rankOf(m) === 2 || rankOf(m) === 3);
  if (wanted !== undefined) {
    const m = all.find((o) => o.name === wanted);
    if (!m) throw new Error(`${file}: no output '${wanted}' (outputs: ${listed})`);
    if (!fits(m)) throw new Error(`${file}: output ${describeValue(m)} is not float32 [N, D] or [N, T, D]`);
    return m.name;
  }
  const candidates = all.filter(fits);
  const chosen = candidates.find((m) => rankOf(m) === 2) ?? candidates[0];
  if (!chosen) throw new Error(`${file}: no float32 output [N, D] or [N, T, D] (outputs: ${listed || "none"})`);
  if (candidates.length > 1)
    log(`${file}: embedding output ${describeValue(chosen)} (outputs: ${listed}; choose another with --output)`);
  return chosen.name;
}

/** Only `metadata_props` (field 14) of a ModelProto: the graph and its weights are skipped, not decoded. */
let metadataType: protobuf.Type | undefined;

/** The model's `metadata_props` as a record, read without decoding the graph. */
export function modelMetadata(bytes: Uint8Array, file: string): Record<string, string> {
  metadataType ??= protobuf
    .parse(
      `syntax = "proto2"; package m;
       message Entry { optional string key = 1; optional string value = 2; }
       message Model { repeated Entry metadata_props = 14; }`,
      { keepCase: true },
    )
    .root.lookupType("m.Model");
  let msg: { metadata_props?: { key?: string; value?: string }[] };
  try {
    msg = metadataType.toObject(metadataType.decode(bytes), { arrays: true }) as typeof msg;
  } catch (err) {
    throw new Error(`${file}: not a valid ONNX protobuf file`, { cause: err });
  }
  const out: Record<string, string> = {};
  for (const e of msg.metadata_props ?? []) if (e.key) out[e.key] = e.value ?? "";
  return out;
}

/** `preprocessor_config.json` beside `file`, or undefined when there is none. */
async function preprocessorConfig(file: string): Promise<{ path: string; json: Record<string, unknown> } | undefined> {
  const path = join(dirname(file), PREPROCESSOR_CONFIG);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    return undefined;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not valid JSON`, { cause: err });
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw new Error(`${path}: not a JSON object`);
  const obj = json as Record<string, unknown>;
  const rescale = obj.rescale_factor;
  if (obj.do_rescale !== false && typeof rescale === "number" && Math.abs(rescale * 255 - 1) > 1e-6)
    throw new Error(`${path}: rescale_factor ${rescale} is not 1/255; pixels are scaled to [0, 1] here`);
  return { path, json: obj };
}

type Config = Awaited<ReturnType<typeof preprocessorConfig>>;

function settleSize(
  file: string,
  input: ImageInput,
  flag: ImageSize | undefined,
  metadata: Record<string, string>,
  config: Config,
): { value: ImageSize; source: PreprocessSource } {
  const graph =
    input.width !== undefined && input.height !== undefined ? { width: input.width, height: input.height } : undefined;
  const fromMeta = metadata[METADATA_KEYS.size];
  const given: { value: ImageSize; source: PreprocessSource } | undefined = flag
    ? { value: flag, source: "flag" }
    : graph
      ? { value: graph, source: "graph" }
      : fromMeta !== undefined
        ? { value: sizeFromText(fromMeta, `${file}: metadata_props ${METADATA_KEYS.size}`), source: "metadata" }
        : config
          ? sizeFromConfig(config)
          : undefined;
  if (!given)
    throw new Error(
      `${file}: input '${input.name}' has a dynamic size [N, 3, ${input.height ?? "H"}, ${input.width ?? "W"}] and neither metadata_props ${METADATA_KEYS.size} nor ${PREPROCESSOR_CONFIG} gives one; pass --size WxH`,
    );
  const v = given.value;
  if (
    (input.width !== undefined && input.width !== v.width) ||
    (input.height !== undefined && input.height !== v.height)
  )
    throw new Error(
      `${file}: input '${input.name}' takes [N, 3, ${input.height ?? "H"}, ${input.width ?? "W"}], but the ${given.source === "flag" ? "--size flag" : given.source} asks for ${v.width}x${v.height}`,
    );
  return given;
}

function sizeFromText(text: string, where: string): ImageSize {
  const t = text.trim();
  if (t.startsWith("{")) {
    let o: unknown;
    try {
      o = JSON.parse(t);
    } catch (err) {
      throw new Error(`${where}: '${text}' is not valid JSON`, { cause: err });
    }
    const s = o as { height?: unknown; width?: unknown };
    if (typeof s.width === "number" && typeof s.height === "number")
      return parseImageSize(`${s.width}x${s.height}`, where);
    throw new Error(`${where}: expected {"height": h, "width": w}, got '${text}'`);
  }
  return parseImageSize(t, where);
}

function sizeFromConfig(config: NonNullable<Config>): { value: ImageSize; source: PreprocessSource } | undefined {
  const { json, path } = config;
  const pick = json.do_center_crop === true && json.crop_size !== undefined ? "crop_size" : "size";
  const s = json[pick];
  if (s === undefined) return undefined;
  const where = `${path}: ${pick}`;
  if (typeof s === "number") return { value: parseImageSize(String(s), where), source: "preprocessor_config" };
  if (s && typeof s === "object") {
    const o = s as { height?: unknown; width?: unknown; shortest_edge?: unknown };
    if (typeof o.width === "number" && typeof o.height === "number")
      return { value: parseImageSize(`${o.width}x${o.height}`, where), source: "preprocessor_config" };
    if (typeof o.shortest_edge === "number")
      return { value: parseImageSize(String(o.shortest_edge), where), source: "preprocessor_config" };
  }
  throw new Error(`${where}: expected {"height": h, "width": w} or {"shortest_edge": n}, got ${JSON.stringify(s)}`);
}

function settleTriple(
  what: "mean" | "std",
  file: string,
  flag: readonly number[] | undefined,
  metadata: Record<string, string>,
  config: Config,
  fallback: readonly [number, number, number],
): { value: readonly number[]; source: PreprocessSource } {
  if (flag) {
    if (flag.length !== 3 || !flag.every(Number.isFinite))
      throw new Error(`--${what}: expected three numbers r,g,b, got ${flag.join(",")}`);
    return { value: flag, source: "flag" };
  }
  const key = METADATA_KEYS[what];
  const meta = metadata[key];
  if (meta !== undefined) return { value: parseTriple(meta, `${file}: metadata_props ${key}`), source: "metadata" };
  if (config) {
    if (config.json.do_normalize === false)
      return { value: what === "mean" ? [0, 0, 0] : [1, 1, 1], source: "preprocessor_config" };
    const v = config.json[`image_${what}`];
    if (v !== undefined) {
      const where = `${config.path}: image_${what}`;
      if (!Array.isArray(v)) throw new Error(`${where}: expected a list of three numbers, got ${JSON.stringify(v)}`);
      return { value: parseTriple(v.map(String).join(","), where), source: "preprocessor_config" };
    }
  }
  return { value: fallback, source: "imagenet" };
}

function padded(x: Float32Array, length: number): Float32Array {
  const out = new Float32Array(length);
  out.set(x);
  return out;
}
