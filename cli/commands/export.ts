/**
 * `actionflow export <run>`: writes the ONNX sample graph (`policy.onnx`) and velocity graph
 * (`policy.velocity.onnx`) of a run's latest checkpoint (or of one checkpoint folder); with
 * `--triton <repo>`, a Triton Inference Server model repository instead (`policy/onnx/triton.ts`).
 * With `--quantize int8`, both graphs with int8 weight matrix products (`policy/onnx/quantize.ts`).
 * A run trained on a `dataset embed` feature gets the frozen encoder composed into `policy.onnx`
 * (`--encoder`, or the file `meta/embedding.json` records; `--no-encoder` keeps the vector input);
 * `--camera-input front=640x480` takes a camera at its native size (`policy/onnx/resize.ts`).
 */
import type { Command } from "commander";
import { SOLVER_NAMES } from "../../policy/flow/solvers.ts";
import type { SolverName } from "../../policy/flow/solvers.ts";
import { choiceOption, list, nonNegativeInt, option, positiveInt } from "../args.ts";
import { exportOnnx } from "../../policy/onnx/export.ts";
import { exportTriton } from "../../policy/onnx/triton.ts";
import { QUANTIZATIONS, type Quantization } from "../../policy/onnx/quantize.ts";
import { KERNELS, type Kernels } from "../../policy/onnx/ops.ts";
import { log, printResult } from "../output.ts";
import { loadCheckpoint, resolveCheckpointDir } from "../../policy/checkpoint/checkpoint.ts";
import { frozenEncodersFor } from "../../datasets/embed/frozen.ts";
import { parseImageSize } from "../../datasets/embed/encoder.ts";
import type { PixelSize } from "../../policy/onnx/resize.ts";

interface ExportFlags {
  steps: number;
  solver: SolverName;
  out?: string;
  triton?: string;
  name?: string;
  maxBatch?: number;
  queueDelayUs?: number;
  gpus?: number[];
  quantize?: Quantization;
  kernels: Kernels;
  /** A file, false for --no-encoder, undefined: the one meta/embedding.json records (if any). */
  encoder?: string | false;
  force?: boolean;
  cameraInput?: Record<string, { width: number; height: number }>[];
  json?: boolean;
}

/** Registers the `export` command. */
export function registerExport(program: Command): void {
  program
    .command("export")
    .description(
      "export a run's checkpoint to ONNX (sample graph with baked normalisation and unrolled solver, plus the velocity graph), or to a Triton model repository (--triton)",
    )
    .argument("<run>", "run folder, its checkpoints/ folder, or one checkpoint folder")
    .addOption(option("--steps <n>", "solver steps unrolled into the sample graph", positiveInt, 10))
    .addOption(choiceOption("--solver <name>", "ODE solver: euler, midpoint, heun or rk4", SOLVER_NAMES, "euler"))
    .option("--out <file>", "path of the sample graph (default <run>/policy.onnx); the velocity graph goes beside it")
    .option(
      "--triton <repo>",
      "write a Triton model repository instead: <repo>/<name>/config.pbtxt and <repo>/<name>/1/model.onnx",
    )
    .option("--name <model>", "--triton: the model's name and folder (default policy)")
    .addOption(
      option(
        "--max-batch <n>",
        "--triton: max_batch_size of the dynamic batcher (default 32; 0: no batching)",
        nonNegativeInt,
      ),
    )
    .addOption(
      option(
        "--queue-delay-us <n>",
        "--triton: max_queue_delay_microseconds of the dynamic batcher (default 500)",
        nonNegativeInt,
      ),
    )
    .addOption(
      option(
        "--gpus <list>",
        "--triton: GPU indices of a KIND_GPU instance group, e.g. 0,1 (default: Triton places it)",
        list(nonNegativeInt),
      ),
    )
    .addOption(
      choiceOption(
        "--kernels <kind>",
        "fused: onnxruntime's contrib kernels (com.microsoft Attention, MultiHeadAttention) where they compute the same in fewer nodes; plain: standard ONNX operators only, for other runtimes",
        KERNELS,
        "fused",
      ),
    )
    .addOption(
      choiceOption(
        "--quantize <kind>",
        "int8: dynamic quantisation of the weight matrix products (default --out <run>/policy.int8.onnx; policy.onnx stays fp32)",
        QUANTIZATIONS,
      ),
    )
    .option(
      "--encoder <file>",
      "compose this frozen ONNX image encoder into policy.onnx in front of the embedding feature it made (default: the file the dataset's meta/embedding.json records, when its SHA-256 still matches); the camera is then the input",
    )
    .option("--no-encoder", "export the embedding feature as a vector input even when the dataset records its encoder")
    .option("--force", "--encoder: compose a file whose SHA-256 differs from the recorded encoder's")
    .addOption(
      option(
        "--camera-input <name=WxH,...>",
        "take camera <name> at its native size WxH and resize it inside policy.onnx to the trained size with ffmpeg's area filter",
        list(cameraInput),
      ),
    )
    .addOption(option("--seed <n>", "accepted for uniformity; the export is deterministic", nonNegativeInt, 0))
    .option("--json", "print one JSON object as the last stdout line")
    .action(async (run: string, o: ExportFlags) => {
      if (o.triton === undefined) {
        const tritonOnly = (["name", "maxBatch", "queueDelayUs", "gpus"] as const).filter((k) => o[k] !== undefined);
        if (tritonOnly.length > 0)
          throw new Error(
            `${tritonOnly.map((k) => "--" + k.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase())).join(", ")} only apply with --triton <repo>`,
          );
        return exportPlain(run, o);
      }
      if (o.cameraInput !== undefined) throw new Error("--camera-input and --triton exclude each other");
      if (typeof o.encoder === "string")
        throw new Error("--encoder and --triton exclude each other (Triton gets the embedding input)");
      if (o.quantize !== undefined)
        throw new Error("--quantize and --triton exclude each other (Triton gets the fp32 graph)");
      if (o.out !== undefined)
        throw new Error("--out and --triton exclude each other (--triton writes <repo>/<name>/1/model.onnx)");
      const r = await exportTriton(run, {
        repo: o.triton,
        steps: o.steps,
        solver: o.solver,
        ...(o.name !== undefined ? { name: o.name } : {}),
        ...(o.maxBatch !== undefined ? { maxBatch: o.maxBatch } : {}),
        ...(o.queueDelayUs !== undefined ? { queueDelayUs: o.queueDelayUs } : {}),
        ...(o.gpus !== undefined ? { gpus: o.gpus } : {}),
      });
      if (!o.json) log(`exported ${r.checkpoint} -> Triton model '${r.name}' in ${r.repo}`);
      printResult(r, { json: o.json ?? false }, (x: typeof r) =>
        [
          `config   ${x.config}`,
          `model    ${x.model} (${(x.bytes / 1e6).toFixed(2)} MB, opset ${x.opset})`,
          `batching max_batch_size ${x.maxBatchSize}${x.queueDelayUs !== null ? `, max_queue_delay_microseconds ${x.queueDelayUs}` : ""}${x.gpus.length > 0 ? `, GPUs ${x.gpus.join(",")}` : ""}`,
          `inputs   ${x.inputs.map((t) => `${t.name} ${t.dataType} [${t.dims.join(", ")}]`).join(", ")}`,
          `outputs  ${x.outputs.map((t) => `${t.name} ${t.dataType} [${t.dims.join(", ")}]`).join(", ")}`,
          `serve    tritonserver --model-repository=${x.repo}`,
        ].join("\n"),
      );
    });
}

async function exportPlain(run: string, o: ExportFlags): Promise<void> {
  if (o.force && typeof o.encoder !== "string") throw new Error("--force applies to --encoder <file> only");
  const encoders = o.encoder === false ? {} : await runEncoders(run, o.encoder, o.force === true);
  for (const [name, e] of Object.entries(encoders))
    if (!o.json) log(`composing the frozen encoder ${e.file} in front of '${name}' (camera ${e.camera})`);
  const opts = {
    steps: o.steps,
    solver: o.solver,
    kernels: o.kernels,
    ...(o.out !== undefined ? { out: o.out } : {}),
    ...(Object.keys(encoders).length > 0 ? { encoders } : {}),
    ...(o.cameraInput ? { cameraInputs: Object.assign({}, ...o.cameraInput) as Record<string, PixelSize> } : {}),
  };
  const r = o.quantize ? await exportOnnx(run, { ...opts, quantization: o.quantize }) : await exportOnnx(run, opts);
  if (!o.json)
    log(
      `exported ${r.checkpoint} (${r.arch}, ${r.objective}${"quantization" in r ? `, ${r.quantization}` : ""}) -> ${r.onnx}`,
    );
  printResult(r, { json: o.json ?? false }, (x: typeof r) =>
    [
      `sample graph   ${x.onnx} (${(x.bytes / 1e6).toFixed(2)} MB, opset ${x.opset}, ${x.kernels} kernels)`,
      `velocity graph ${x.velocityOnnx} (${(x.velocityBytes / 1e6).toFixed(2)} MB)`,
      `solver ${x.solver}, ${x.steps} steps, ${x.nfe} velocity evaluations per chunk`,
      `inputs ${x.inputs.join(", ")} -> actions [batch, ${x.horizon}, ${x.actionDim}]`,
      ...Object.entries(x.encoders ?? {}).map(
        ([name, e]) =>
          `encoder ${e.file} (SHA-256 ${e.sha256.slice(0, 12)}...) composed: obs.${name} uint8 [batch, ${e.size.height}, ${e.size.width}, 3] from ${e.camera}`,
      ),
      ...Object.entries(x.cameraInputs ?? {}).map(
        ([name, s]) => `camera obs.${name} takes ${s.width}x${s.height}, resized inside (area filter)`,
      ),
    ].join("\n"),
  );
}

/** `name=WxH` of `--camera-input`. */
function cameraInput(text: string, flag: string): Record<string, PixelSize> {
  const m = /^([^=\s]+)=(.+)$/.exec(text.trim());
  if (!m) throw new Error(`${flag}: expected <camera>=WxH (e.g. front=640x480), got '${text}'`);
  return { [m[1]!]: parseImageSize(m[2]!, `${flag} ${m[1]}`) };
}

/** The frozen encoders of a run's embedding features (`datasets/embed/frozen.ts`). */
async function runEncoders(run: string, encoder: string | undefined, force: boolean) {
  const dir = await resolveCheckpointDir(run);
  if (!dir) return {};
  const ckpt = await loadCheckpoint(dir);
  return frozenEncodersFor(dir, ckpt.config.obs, { ...(encoder !== undefined ? { encoder } : {}), force });
}
