/**
 * Checkpoint -> Triton Inference Server model repository: `<repo>/<name>/config.pbtxt` and
 * `<repo>/<name>/<version>/model.onnx` (the same sample graph `actionflow export` writes), served by
 * Triton's onnxruntime backend (`platform: "onnxruntime_onnx"`) with dynamic batching across
 * requests, or by any KServe v2 server that reads Triton repositories.
 *
 * `config.pbtxt` is protobuf text format of Triton's `inference.ModelConfig` (`model_config.proto`):
 * `max_batch_size`, every graph input and output with its `data_type` and `dims` (the batch dimension
 * left out when `max_batch_size > 0`, `-1` where a dimension is symbolic), `dynamic_batching`, an
 * optional GPU `instance_group`, and the model's `actionflow.*` metadata (horizon, fps,
 * rtc_max_delay, features, ...) as `parameters` so that a client can read them back through the
 * model-configuration endpoint (`GET /v2/models/<name>/config`, gRPC `ModelConfig`). An input whose
 * only dimension is the batch (`prefix_len`, shape `[batch]`) is declared `dims: [ 1 ]` with
 * `reshape: { shape: [ ] }`, as Triton requires: a request sends it as `[batch, 1]`.
 */
import { join, resolve } from "node:path";
import { loadCheckpoint, rawActionDim, resolveCheckpointDir } from "../checkpoint/checkpoint.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import { exportOnnxBytes, type ExportOptions } from "./export.ts";
import { decodeModel, metadataOf, type ModelProto, type ValueInfoProto } from "./proto.ts";
import { OPSET } from "./proto.ts";

/** Triton `DataType` names of the ONNX element types an actionflow graph uses (`TensorProto.DataType` -> name). */
const TRITON_TYPES: Readonly<Record<number, string>> = {
  1: "TYPE_FP32",
  2: "TYPE_UINT8",
  3: "TYPE_INT8",
  5: "TYPE_INT16",
  6: "TYPE_INT32",
  7: "TYPE_INT64",
  9: "TYPE_BOOL",
  10: "TYPE_FP16",
  11: "TYPE_FP64",
};

/** Metadata keys left out of the parameters: large JSON blobs a client never needs (they stay in model.onnx). */
const LEFT_OUT = new Set(["actionflow.normalization", "actionflow.config"]);

/** One `input` or `output` entry of a Triton model configuration. */
export interface TritonTensorConfig {
  name: string;
  /** Triton data type name, e.g. `TYPE_FP32`. */
  dataType: string;
  /** Dimensions without the batch dimension when batching (`-1`: variable). */
  dims: number[];
  /** `reshape { shape }`: what the backend sees (`[]` for a batch-only input sent as `[batch, 1]`). */
  reshape?: number[];
}

/** The fields of `inference.ModelConfig` that actionflow writes. */
export interface TritonModelConfig {
  name: string;
  platform: "onnxruntime_onnx";
  /** 0: no batching (dims then include the batch dimension). */
  maxBatchSize: number;
  input: TritonTensorConfig[];
  output: TritonTensorConfig[];
  /** Absent when `maxBatchSize` is 0. */
  dynamicBatching?: { preferredBatchSize: number[]; maxQueueDelayMicroseconds: number };
  /** One `KIND_GPU` group, one instance per listed GPU; absent: Triton's default placement. */
  instanceGroup?: { count: number; kind: "KIND_GPU"; gpus: number[] };
  defaultModelFilename: "model.onnx";
  /** `parameters` map: string values. */
  parameters: Record<string, string>;
}

/** Options of {@link tritonModelConfig} and {@link exportTriton}. */
export interface TritonConfigOptions {
  /** Model name = folder under the repository (default `policy`). */
  name?: string;
  /** Largest batch the dynamic batcher forms (default 32; 0 disables batching). */
  maxBatch?: number;
  /** `max_queue_delay_microseconds` of the dynamic batcher (default 500). */
  queueDelayUs?: number;
  /** GPU indices for a `KIND_GPU` instance group (default: none written, Triton places the model). */
  gpus?: readonly number[];
}

/** Options of {@link exportTriton}. */
export interface TritonExportOptions extends TritonConfigOptions, Omit<ExportOptions, "out"> {
  /** The model repository folder (created when absent). */
  repo: string;
  /** Model version folder (default 1). */
  version?: number;
}

/** What {@link exportTriton} wrote. */
export interface TritonExportResult {
  repo: string;
  name: string;
  version: number;
  /** `<repo>/<name>/config.pbtxt`. */
  config: string;
  /** `<repo>/<name>/<version>/model.onnx`. */
  model: string;
  bytes: number;
  opset: typeof OPSET;
  checkpoint: string;
  horizon: number;
  actionDim: number;
  steps: number;
  solver: string;
  maxBatchSize: number;
  queueDelayUs: number | null;
  gpus: number[];
  inputs: TritonTensorConfig[];
  outputs: TritonTensorConfig[];
  /** Names of the `actionflow.*` parameters written. */
  parameters: string[];
}

const NAME_RE = /^[A-Za-z0-9_.-]+$/;

/** The powers of two from 4 up to `max`, and `max` itself: the batch sizes run at once when formed. */
export function preferredBatchSizes(max: number): number[] {
  const out: number[] = [];
  for (let b = 4; b < max; b *= 2) out.push(b);
  out.push(max);
  return out;
}

function tensorConfig(v: ValueInfoProto, batching: boolean, where: string): TritonTensorConfig {
  const t = v.type?.tensorType;
  if (!t) throw new Error(`${where}: graph value '${v.name}' is not a tensor`);
  const dataType = TRITON_TYPES[t.elemType];
  if (!dataType)
    throw new Error(`${where}: graph value '${v.name}' has an element type (${t.elemType}) Triton cannot serve`);
  const dims = (t.shape?.dim ?? []).map((d) => ("dimValue" in d && d.dimValue !== undefined ? d.dimValue : -1));
  if (!batching) return { name: v.name, dataType, dims };
  const first = t.shape?.dim[0];
  if (!first || !("dimParam" in first))
    throw new Error(
      `${where}: graph value '${v.name}' has no symbolic batch dimension first (shape [${dims.join(", ")}]); export with --max-batch 0`,
    );
  const rest = dims.slice(1);
  return rest.length === 0
    ? { name: v.name, dataType, dims: [1], reshape: [] }
    : { name: v.name, dataType, dims: rest };
}

/**
 * The Triton configuration of an exported sample graph: inputs and outputs from the graph, the
 * `actionflow.*` metadata (except the normalisation and head-config JSON) as parameters. Throws
 * naming the option or graph value when something cannot be served.
 */
export function tritonModelConfig(model: ModelProto, opts: TritonConfigOptions = {}): TritonModelConfig {
  const name = opts.name ?? "policy";
  if (!NAME_RE.test(name))
    throw new Error(`--name '${name}': a model name is a folder name of letters, digits, '_', '-' and '.'`);
  const maxBatch = opts.maxBatch ?? 32;
  if (!Number.isInteger(maxBatch) || maxBatch < 0)
    throw new Error(`--max-batch ${maxBatch}: must be an integer >= 0 (0 disables batching)`);
  const queueDelayUs = opts.queueDelayUs ?? 500;
  if (!Number.isInteger(queueDelayUs) || queueDelayUs < 0)
    throw new Error(`--queue-delay-us ${queueDelayUs}: must be an integer >= 0`);
  const gpus = [...(opts.gpus ?? [])];
  for (const g of gpus)
    if (!Number.isInteger(g) || g < 0) throw new Error(`--gpus: '${g}' is not a GPU index (an integer >= 0)`);
  if (new Set(gpus).size !== gpus.length) throw new Error(`--gpus ${gpus.join(",")}: a GPU is listed twice`);
  const meta = metadataOf(model);
  if (meta["actionflow.graph"] !== "sample")
    throw new Error(
      `not an actionflow sample graph (actionflow.graph = ${meta["actionflow.graph"] ?? "absent"}): Triton serves policy.onnx`,
    );
  const batching = maxBatch > 0;
  const where = `model '${name}'`;
  const parameters: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta).sort(([a], [b]) => a.localeCompare(b)))
    if (k.startsWith("actionflow.") && !LEFT_OUT.has(k)) parameters[k] = v;
  return {
    name,
    platform: "onnxruntime_onnx",
    maxBatchSize: maxBatch,
    input: model.graph.input.map((v) => tensorConfig(v, batching, where)),
    output: model.graph.output.map((v) => tensorConfig(v, batching, where)),
    ...(batching
      ? {
          dynamicBatching: {
            preferredBatchSize: preferredBatchSizes(maxBatch),
            maxQueueDelayMicroseconds: queueDelayUs,
          },
        }
      : {}),
    ...(gpus.length > 0 ? { instanceGroup: { count: 1, kind: "KIND_GPU" as const, gpus } } : {}),
    defaultModelFilename: "model.onnx",
    parameters,
  };
}

/** A protobuf text-format string literal: `"` and `\` escaped, control bytes as octal escapes. */
export function pbtxtString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20 || c === 0x7f) out += "\\" + c.toString(8).padStart(3, "0");
    else out += ch;
  }
  return out + '"';
}

const ints = (xs: readonly number[]): string => `[ ${xs.join(", ")} ]`;

function tensorText(t: TritonTensorConfig): string {
  const lines = [`    name: ${pbtxtString(t.name)}`, `    data_type: ${t.dataType}`, `    dims: ${ints(t.dims)}`];
  if (t.reshape) lines.push(`    reshape: { shape: ${ints(t.reshape)} }`);
  return `  {\n${lines.join("\n")}\n  }`;
}

/** `cfg` as `config.pbtxt` (protobuf text format of `inference.ModelConfig`), with a header comment. */
export function formatModelConfig(cfg: TritonModelConfig, comment?: string): string {
  const out: string[] = [];
  if (comment) for (const l of comment.split("\n")) out.push(`# ${l}`);
  out.push(`name: ${pbtxtString(cfg.name)}`);
  out.push(`platform: ${pbtxtString(cfg.platform)}`);
  out.push(`max_batch_size: ${cfg.maxBatchSize}`);
  out.push(`input [\n${cfg.input.map(tensorText).join(",\n")}\n]`);
  out.push(`output [\n${cfg.output.map(tensorText).join(",\n")}\n]`);
  if (cfg.dynamicBatching) {
    const d = cfg.dynamicBatching;
    out.push(
      `dynamic_batching {\n  preferred_batch_size: ${ints(d.preferredBatchSize)}\n  max_queue_delay_microseconds: ${d.maxQueueDelayMicroseconds}\n}`,
    );
  }
  if (cfg.instanceGroup) {
    const g = cfg.instanceGroup;
    out.push(`instance_group [\n  {\n    count: ${g.count}\n    kind: ${g.kind}\n    gpus: ${ints(g.gpus)}\n  }\n]`);
  }
  out.push(`default_model_filename: ${pbtxtString(cfg.defaultModelFilename)}`);
  const params = Object.entries(cfg.parameters).map(
    ([k, v]) => `  {\n    key: ${pbtxtString(k)}\n    value: { string_value: ${pbtxtString(v)} }\n  }`,
  );
  if (params.length > 0) out.push(`parameters [\n${params.join(",\n")}\n]`);
  return out.join("\n") + "\n";
}

/**
 * Exports the checkpoint at `path` (a run folder, its `checkpoints/` folder or one checkpoint folder)
 * into a Triton model repository (see the module doc). Both files are written atomically, the model
 * first, so a repository never holds a config without its model. Throws naming the file or option.
 */
export async function exportTriton(path: string, opts: TritonExportOptions): Promise<TritonExportResult> {
  const dir = await resolveCheckpointDir(path);
  if (!dir)
    throw new Error(`${path}: no checkpoint found (expected config.json or checkpoints/latest.json); train first`);
  const version = opts.version ?? 1;
  if (!Number.isInteger(version) || version < 1) throw new Error(`model version ${version}: must be an integer >= 1`);
  const ckpt = await loadCheckpoint(dir);
  const built = await exportOnnxBytes(ckpt, {
    ...(opts.steps !== undefined ? { steps: opts.steps } : {}),
    ...(opts.solver !== undefined ? { solver: opts.solver } : {}),
  });
  const model = decodeModel(built.sample, `${dir} (exported in memory)`);
  const cfg = tritonModelConfig(model, opts);
  const repo = resolve(opts.repo);
  const modelFile = join(repo, cfg.name, String(version), "model.onnx");
  const configFile = join(repo, cfg.name, "config.pbtxt");
  const comment = [
    `actionflow ${ckpt.config.arch} ${ckpt.config.objective} head exported from ${dir}`,
    `serve with: tritonserver --model-repository=${repo}`,
  ].join("\n");
  await writeFileAtomic(modelFile, built.sample);
  await writeFileAtomic(configFile, formatModelConfig(cfg, comment));
  return {
    repo,
    name: cfg.name,
    version,
    config: configFile,
    model: modelFile,
    bytes: built.sample.byteLength,
    opset: OPSET,
    checkpoint: dir,
    horizon: ckpt.config.horizon,
    actionDim: rawActionDim(ckpt.normalization),
    steps: built.steps,
    solver: built.solver,
    maxBatchSize: cfg.maxBatchSize,
    queueDelayUs: cfg.dynamicBatching?.maxQueueDelayMicroseconds ?? null,
    gpus: cfg.instanceGroup?.gpus ?? [],
    inputs: cfg.input,
    outputs: cfg.output,
    parameters: Object.keys(cfg.parameters),
  };
}
