/**
 * Checkpoint -> ONNX: writes the `sample` graph (`policy.onnx`) and the `velocity` graph
 * (`policy.velocity.onnx`) of a trained head, both built from the same network description as
 * the tfjs model, with the checkpoint's normalisation baked into the sample graph.
 *
 * Both files carry `metadata_props` (`actionflow.*`): the head config, the feature names and raw
 * shapes, the normalisation statistics, the actionflow version, solver and steps, and the SHA-256
 * of the checkpoint's `model.safetensors`, so a runtime can tell a stale export from a fresh one.
 * With `quantization` (`export --quantize int8`), both graphs are quantised (`quantize.ts`) before
 * they are written. A head whose prompt comes from a text encoder gets the encoder's folder
 * (`text-encoder/`) beside the sample graph. With `encoders`, the sample graph takes each embedding
 * feature's camera as uint8 pixels through the user's frozen encoder (`compose.ts`); with
 * `cameraInputs`, cameras take their native size and are area-resized inside (`resize.ts`). Both
 * graphs use onnxruntime's fused contrib kernels unless `kernels: "plain"` (`export --kernels plain`)
 * asks for standard operators only.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import {
  textEncoderBase,
  loadCheckpoint,
  normsFor,
  rawActionDim,
  resolveCheckpointDir,
  type Checkpoint,
} from "../checkpoint/checkpoint.ts";
import { solverByName, type SolverName } from "../flow/solvers.ts";
import { buildHead } from "../net/network.ts";
import { objectiveOf } from "../flow/objective.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import { promptFeatureOf } from "../net/prompt.ts";
import { TEXT_ENCODER_DIR, TEXT_ENCODER_MODEL, copyTextEncoder, textEncoderFilesIn } from "../text/encoder.ts";
import { buildSampleModel, buildVelocityModel, type FeatureIO } from "./graphs.ts";
import type { Kernels } from "./ops.ts";
import { OPSET, decodeModel, encodeModel } from "./proto.ts";
import { resizeCameraInputs, type PixelSize } from "./resize.ts";
import { composeEncoders, type ComposedEncoderRecord, type FrozenEncoder } from "./compose.ts";
import { quantizeBytes, quantizedPathFor, type Quantization, type QuantizeReport } from "./quantize.ts";

/** Options of `exportOnnx`. */
export interface ExportOptions {
  /** Solver steps unrolled into the sample graph (default 10; meanflow heads: average-velocity jumps; regression heads use 1 evaluation). */
  steps?: number;
  /** ODE solver: euler (default), midpoint, heun or rk4. */
  solver?: string;
  /**
   * Path of the sample graph (default `<run>/policy.onnx`, quantised `<run>/policy.<quantization>.onnx`);
   * the velocity graph goes beside it as `*.velocity.onnx`.
   */
  out?: string;
  /** Quantise both graphs' weight matrix products (`quantizeModel`); the fp32 `policy.onnx` is then left as it is. */
  quantization?: Quantization;
  /**
   * `fused` (default): both graphs use onnxruntime's contrib kernels (`com.microsoft` Attention,
   * MultiHeadAttention) where they compute the same in fewer nodes, for onnxruntime; `plain`:
   * standard ONNX operators only, for any other runtime. Written to `actionflow.kernels`.
   */
  kernels?: Kernels;
  /**
   * Frozen image encoders to compose in front of these head features (by model name): the sample
   * graph then takes each as a camera, uint8 `[batch, H, W, 3]` (`compose.ts`); the velocity graph
   * keeps the embedding input.
   */
  encoders?: Readonly<Record<string, FrozenEncoder>>;
  /**
   * Native sizes of cameras (by model name, trained or composed): the sample graph's `obs.<name>`
   * takes that size and resizes it inside to the head's with ffmpeg's area filter (`resize.ts`).
   */
  cameraInputs?: Readonly<Record<string, PixelSize>>;
}

/** What `exportOnnx` wrote. */
export interface ExportResult {
  /** Path of the sample graph. */
  onnx: string;
  opset: typeof OPSET;
  /** The kernels the graphs use (`ExportOptions.kernels`). */
  kernels: Kernels;
  steps: number;
  /** The solver unrolled (`none` for regression heads, `meanflow` for average-velocity jumps). */
  solver: SolverName | "none" | "meanflow";
  /** Path of the velocity graph. */
  velocityOnnx: string;
  /** Size of the sample graph file in bytes. */
  bytes: number;
  velocityBytes: number;
  /** Velocity evaluations per chunk (steps * evals per step; 1 for regression). */
  nfe: number;
  /** The checkpoint folder exported. */
  checkpoint: string;
  arch: string;
  objective: string;
  horizon: number;
  /** Raw (dataset) action dim of the `actions` output. */
  actionDim: number;
  /** The model's (padded) action dim of the `noise` input. */
  modelActionDim: number;
  /** Graph inputs of the sample graph. */
  inputs: string[];
  /** The frozen encoders composed into the sample graph, per feature (only when there are some). */
  encoders?: Record<string, ComposedEncoderRecord>;
  /** The cameras resized inside the sample graph: their input size (only when there are some). */
  cameraInputs?: Record<string, PixelSize>;
}

/** What `exportOnnx` wrote with a `quantization`: the export's facts plus the quantisation of each graph. */
export interface QuantizedExportResult extends ExportResult {
  quantization: Quantization;
  /** The sample graph's quantisation. */
  quantized: QuantizeReport;
  /** The velocity graph's quantisation. */
  velocityQuantized: QuantizeReport;
}

/** The two graphs of a checkpoint, serialised, and the facts `ExportResult` reports. */
export interface ExportedBytes {
  sample: Uint8Array;
  velocity: Uint8Array;
  steps: number;
  solver: SolverName | "none" | "meanflow";
  nfe: number;
  inputs: string[];
  kernels: Kernels;
}

/**
 * The float observation features of a checkpoint's head with their raw (dataset) shapes from the
 * normalisation stats; a prompt feature is left out (the sample graph takes its index).
 */
export function featuresOf(ckpt: Pick<Checkpoint, "config" | "normalization">): FeatureIO[] {
  // A prompt feature is not an observation input of the sample graph: the runtime fills it (see graphs.ts).
  return ckpt.config.obs
    .filter((f) => f.prompts === undefined)
    .map((f) => {
      const n = ckpt.normalization.obs[f.name];
      if (!n) throw new Error(`stats.json has no normalisation for observation feature '${f.name}'`);
      const d = f.shape[f.shape.length - 1]!;
      const rawD = n.stats.mean.length;
      if (rawD < 1 || rawD > d)
        throw new Error(
          `observation feature '${f.name}': raw dim ${rawD} (from stats) must be in 1..${d} (the model's)`,
        );
      return {
        name: f.name,
        key: f.key,
        shape: [...f.shape],
        rawShape: [...f.shape.slice(0, -1), rawD],
        ...(f.kind === "image" ? { kind: "image" as const } : {}),
      };
    });
}

/** SHA-256 (hex) of a checkpoint's `model.safetensors`: the identity of the exported weights. */
export async function weightsDigest(checkpointDir: string): Promise<string> {
  return createHash("sha256")
    .update(await readFile(join(checkpointDir, "model.safetensors")))
    .digest("hex");
}

/** Builds both graphs of a loaded checkpoint in memory. */
export async function exportOnnxBytes(ckpt: Checkpoint, opts: Omit<ExportOptions, "out"> = {}): Promise<ExportedBytes> {
  const steps = opts.steps ?? 10;
  const solver = solverByName(opts.solver ?? "euler").name;
  const head = buildHead(ckpt.config);
  const features = featuresOf(ckpt);
  const norms = { ...normsFor(ckpt.normalization, ckpt.config), rawActionDim: rawActionDim(ckpt.normalization) };
  const metadata = {
    "actionflow.normalization": JSON.stringify(ckpt.normalization),
    "actionflow.checkpoint": basename(ckpt.dir),
    "actionflow.weights_sha256": await weightsDigest(ckpt.dir),
  };
  const kernels = opts.kernels ?? "fused";
  const sample = buildSampleModel(head, ckpt.weights, features, norms, { steps, solver, metadata, kernels });
  const velocity = buildVelocityModel(head, ckpt.weights, features, { metadata, kernels });
  const unused = [...ckpt.weights.keys()].filter((k) => !sample.usedParams.includes(k));
  if (unused.length > 0) {
    throw new Error(
      `${join(ckpt.dir, "model.safetensors")}: ${unused.length} weights are not used by the ${ckpt.config.arch} head (${unused.slice(0, 5).join(", ")}${unused.length > 5 ? ", ..." : ""}); config and weights disagree`,
    );
  }
  const objective = objectiveOf(ckpt.config);
  const sampled = objective.noiseInput ? steps : 1;
  return {
    sample: encodeModel(sample.model),
    velocity: encodeModel(velocity.model),
    steps: sampled,
    solver: objective.solverLabel(solver),
    nfe: objective.nfe(sampled, solverByName(solver)),
    inputs: sample.model.graph.input.map((i) => i.name),
    kernels,
  };
}

/**
 * A head whose prompt comes from a text encoder: copies the encoder's folder (`text-encoder/`) from
 * the checkpoint's run to `outDir`, beside the exported graph (nothing when it is already there).
 * Throws naming the checkpoint when the encoder cannot be found.
 */
async function exportTextEncoder(ckpt: Checkpoint, outDir: string): Promise<void> {
  const pf = promptFeatureOf(ckpt.config);
  if (pf?.promptEmbedding?.source !== "encoder") return;
  const base = await textEncoderBase(ckpt.dir);
  if (base === undefined)
    throw new Error(
      `${ckpt.dir}: the head's prompt comes from a text encoder, but neither the checkpoint nor its run folder holds ${TEXT_ENCODER_DIR}/${TEXT_ENCODER_MODEL}`,
    );
  await copyTextEncoder(textEncoderFilesIn(base), outDir);
}

/** The velocity graph's path beside a sample graph path: `x.onnx` -> `x.velocity.onnx`. */
export function velocityPathFor(samplePath: string): string {
  return samplePath.replace(/\.onnx$/i, "") + ".velocity.onnx";
}

/**
 * Exports the checkpoint at `path` (a run folder, its `checkpoints/` folder or one checkpoint
 * folder) to ONNX, with `opts.quantization` both graphs quantised. Files are written atomically.
 * Throws naming the file when the checkpoint is missing or inconsistent.
 */
export async function exportOnnx(
  path: string,
  opts: ExportOptions & { quantization: Quantization },
): Promise<QuantizedExportResult>;
export async function exportOnnx(path: string, opts?: ExportOptions): Promise<ExportResult>;
export async function exportOnnx(
  path: string,
  opts: ExportOptions = {},
): Promise<ExportResult | QuantizedExportResult> {
  const dir = await resolveCheckpointDir(path);
  if (!dir)
    throw new Error(`${path}: no checkpoint found (expected config.json or checkpoints/latest.json); train first`);
  const ckpt = await loadCheckpoint(dir);
  const built: ExportedBytes & { encoders?: Record<string, ComposedEncoderRecord> } = await exportOnnxBytes(ckpt, {
    ...(opts.steps !== undefined ? { steps: opts.steps } : {}),
    ...(opts.solver !== undefined ? { solver: opts.solver } : {}),
    ...(opts.kernels !== undefined ? { kernels: opts.kernels } : {}),
  });
  const composed = opts.encoders && Object.keys(opts.encoders).length > 0 ? opts.encoders : undefined;
  if (composed) {
    const { model, encoders } = composeEncoders(decodeModel(built.sample, `sample graph of ${dir}`), composed);
    built.sample = encodeModel(model);
    built.inputs = model.graph.input.map((i) => i.name);
    built.encoders = encoders;
  }
  const resized = opts.cameraInputs && Object.keys(opts.cameraInputs).length > 0 ? opts.cameraInputs : undefined;
  if (resized) {
    const model = resizeCameraInputs(decodeModel(built.sample, `sample graph of ${dir}`), resized);
    built.sample = encodeModel(model);
    built.inputs = model.graph.input.map((i) => i.name);
  }
  const q = opts.quantization;
  const sample = q ? quantizeBytes(built.sample, { quantization: q, source: `sample graph of ${dir}` }) : undefined;
  const velocity = q
    ? quantizeBytes(built.velocity, { quantization: q, source: `velocity graph of ${dir}` })
    : undefined;
  const onnx = resolve(opts.out ?? (q ? quantizedPathFor(path, q) : join(path, "policy.onnx")));
  const velocityOnnx = velocityPathFor(onnx);
  const sampleBytes = sample?.bytes ?? built.sample;
  const velocityBytes = velocity?.bytes ?? built.velocity;
  await writeFileAtomic(onnx, sampleBytes);
  await writeFileAtomic(velocityOnnx, velocityBytes);
  await exportTextEncoder(ckpt, dirname(onnx));
  const result: ExportResult = {
    onnx,
    opset: OPSET,
    kernels: built.kernels,
    steps: built.steps,
    solver: built.solver,
    velocityOnnx,
    bytes: sampleBytes.byteLength,
    velocityBytes: velocityBytes.byteLength,
    nfe: built.nfe,
    checkpoint: dir,
    arch: ckpt.config.arch,
    objective: ckpt.config.objective,
    horizon: ckpt.config.horizon,
    actionDim: rawActionDim(ckpt.normalization),
    modelActionDim: ckpt.config.actionDim,
    inputs: built.inputs,
    ...(built.encoders ? { encoders: built.encoders } : {}),
    ...(resized ? { cameraInputs: { ...resized } } : {}),
  };
  return q && sample && velocity
    ? { ...result, quantization: q, quantized: sample.report, velocityQuantized: velocity.report }
    : result;
}
