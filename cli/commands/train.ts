/**
 * `actionflow train`: trains an action head on a demonstration dataset (LeRobot v2.x/v3.0 folder or
 * robomimic HDF5 file), with periodic validation on held-out episodes, periodic checkpoints, and
 * `--resume` after an interruption. See `training/run.ts`.
 */
import type { Command } from "commander";
import { NORM_MODES } from "../../policy/normalize.ts";
import type { NormMode } from "../../policy/normalize.ts";
import { ArchSchema, ObjectiveSchema } from "../../policy/net/config.ts";
import type { Arch, Objective } from "../../policy/net/config.ts";
import { TRAIN_BACKEND_NAMES } from "../../training/backend/registry.ts";
import type { TrainBackendName } from "../../training/backend/registry.ts";
import type { TrainRunResult } from "../../training/run.ts";
import { trainRun } from "../../training/run.ts";
import type { RunConfig } from "../../training/run/settings.ts";
import { readRunConfig } from "../../training/run/settings.ts";
import { PaddingSchema } from "../../training/windows.ts";
import type { PaddingMode } from "../../training/windows.ts";
import { choiceOption, defined, nonNegativeInt, option, positiveFloat, positiveInt } from "../args.ts";
import { log, printResult, trainingProgress } from "../output.ts";

interface TrainFlags {
  dataset?: string;
  out: string;
  config?: string;
  steps?: number;
  batch?: number;
  horizon?: number;
  padding?: PaddingMode;
  rtcMaxDelay?: number;
  nActionSteps?: number;
  valEpisodes?: string;
  obs?: string;
  action?: string;
  arch?: Arch;
  objective?: Objective;
  lr?: number;
  seed?: number;
  backend: TrainBackendName;
  workers?: number;
  normObs?: NormMode;
  normAction?: NormMode;
  checkpointEvery?: number;
  valEvery?: number;
  keep?: number;
  resume?: boolean;
  imageSize?: string;
  imageShift?: number;
  missingVideo?: "error" | "skip";
  promptFeature?: boolean;
  /** false with --no-prompt (commander's negatable option). */
  prompt?: boolean;
  taskEmbeddings?: string;
  textEncoder?: string;
  tokenizer?: string;
  /** false with --no-normalize-embeddings. */
  normalizeEmbeddings?: boolean;
  json?: boolean;
}

function human(r: TrainRunResult): string {
  return [
    `trained ${r.steps} steps (from ${r.resumedFrom}) on ${r.backend}, ${r.params} parameters, ${r.samplesPerSec.toFixed(1)} samples/s, ${r.seconds.toFixed(1)} s`,
    `train loss ${r.trainLoss.toPrecision(4)}, validation loss ${r.valLossAtStart.toPrecision(4)} -> ${r.valLoss.toPrecision(4)}`,
    `checkpoint ${r.checkpoint}`,
  ].join("\n");
}

/** Registers `train`. */
export function registerTrain(program: Command): void {
  program
    .command("train")
    .description(
      "train a flow-matching (or regression) action head on a LeRobot dataset folder or robomimic .hdf5 file",
    )
    .option("--dataset <path>", "LeRobot v2.x/v3.0 folder or robomimic .hdf5 file (optional with --resume)")
    .requiredOption("--out <run>", "run folder (run.json, checkpoints/)")
    .option(
      "--config <json>",
      "JSON file with head settings (arch, horizon, actionDim, transformer, mlp, ...) and training settings (steps, batch, lr, optim, ...)",
    )
    .addOption(option("--steps <n>", "total optimisation steps (default 4000)", positiveInt))
    .addOption(option("--batch <n>", "windows per step (default 16)", positiveInt))
    .addOption(option("--horizon <n>", "action chunk length in frames (default 50)", positiveInt))
    .addOption(
      choiceOption(
        "--padding <mode>",
        "chunk steps past an episode's end (its last action repeated): hold = train on them, mask = leave them out of the loss (default hold)",
        ["hold", "mask"],
      ),
    )
    .addOption(
      option(
        "--n-action-steps <n>",
        "the actions per chunk the export recommends to runtimes not told otherwise (sim eval, sync merges; default 16 for a policy with cameras, else none: the command's own)",
        positiveInt,
      ),
    )
    .addOption(
      option(
        "--rtc-max-delay <n>",
        "training-time real-time chunking: each example keeps a clean action prefix of 0..n steps, left out of the loss; the export records n (default 0)",
        nonNegativeInt,
      ),
    )
    .option(
      "--val-episodes <spec>",
      "validation episodes: 'a:b' positions, 'i,j', a fraction or a count (default 0.1; robomimic: mask/valid)",
    )
    .option(
      "--obs <map>",
      "conditioning features name=column,... (default state=observation.state[,env=observation.environment_state])",
    )
    .option("--action <column>", "action column (default action)")
    .option(
      "--image-size <WxH>",
      "decode camera features (video or image columns named in --obs) to this size (default: each camera's own)",
    )
    .addOption(
      option(
        "--image-shift <px>",
        "random-shift augmentation of camera images in training draws, pixels (default 0)",
        nonNegativeInt,
      ),
    )
    .addOption(
      choiceOption("--missing-video <what>", "an episode without a camera's video: error (default) or skip it", [
        "error",
        "skip",
      ]),
    )
    .addOption(choiceOption("--arch <arch>", "transformer | mlp (default transformer)", ArchSchema.options))
    .addOption(
      choiceOption(
        "--objective <o>",
        "flow | regression | meanflow (average velocity for 1- or few-step sampling; export with --steps 1 or 2) (default flow)",
        ObjectiveSchema.options,
      ),
    )
    .addOption(option("--lr <x>", "peak learning rate (default 1e-3)", positiveFloat))
    .addOption(
      choiceOption(
        "--norm-obs <mode>",
        "observation normalisation: mean_std | min_max | quantiles | identity (default mean_std)",
        NORM_MODES,
      ),
    )
    .addOption(choiceOption("--norm-action <mode>", "action normalisation (default mean_std)", NORM_MODES))
    .addOption(
      option("--checkpoint-every <n>", "steps between checkpoints (default 500; always one at the end)", positiveInt),
    )
    .addOption(option("--val-every <n>", "steps between validations (default min(250, steps/8))", positiveInt))
    .addOption(option("--keep <n>", "checkpoints kept (default 2)", positiveInt))
    .addOption(
      choiceOption(
        "--backend <name>",
        "auto: tfjs-node-gpu or tfjs-node when installed, else ort | ort: loss and gradients in onnxruntime (~4x tfjs-wasm on a CPU) | tensorflow-gpu | tensorflow | wasm | cpu (tfjs); same checkpoints whatever trains, a run may switch on --resume",
        TRAIN_BACKEND_NAMES,
        "auto",
      ),
    )
    .addOption(
      option(
        "--workers <n>",
        "tfjs threads computing gradients, data parallel (default: 2 on 2+ cores when a step has >= 1000 FLOPs per parameter, else 1); ort (also when auto picks it) refuses a value other than 1: onnxruntime uses its own threads",
        positiveInt,
      ),
    )
    .option(
      "--prompt-feature",
      "condition the head on each frame's task prompt (a vocabulary of the dataset's task strings) even when the dataset has a single task (default: when it has several)",
    )
    .option(
      "--no-prompt",
      "train without the task prompt even when the dataset has several tasks (the control experiment)",
    )
    .option(
      "--task-embeddings <file>",
      "the task prompt as an embedding from a safetensors file: one 1-D float tensor [D] per prompt, named by the prompt; every task string of the dataset must be there (the policy then knows those prompts)",
    )
    .option(
      "--text-encoder <model.onnx>",
      "the task prompt as an embedding from an ONNX text encoder (input_ids [N, T], optional attention_mask/token_type_ids -> [N, D] or [N, T, D] mean-pooled), with --tokenizer; the run keeps a copy and the policy then takes any prompt",
    )
    .option("--tokenizer <tokenizer.json>", "the text encoder's HuggingFace tokenizer.json (with --text-encoder)")
    .option(
      "--no-normalize-embeddings",
      "--text-encoder: feed the encoder's embedding as it is (default: L2-normalised, as CLIP and sentence-transformers)",
    )
    .option("--resume", "continue the run in --out from its latest checkpoint")
    .addOption(option("--seed <n>", "seed of initialisation, batches, noise and times (default 0)", nonNegativeInt))
    .option("--json", "print one JSON object as the last stdout line")
    .action(async (o: TrainFlags) => {
      const json = o.json ?? false;
      let config: RunConfig | undefined;
      if (o.config) config = await readRunConfig(o.config);
      const { lr, seed, normObs, normAction } = o;
      if (o.promptFeature && o.prompt === false)
        throw new Error("--prompt-feature and --no-prompt contradict each other");
      const prompt = o.promptFeature ? ("on" as const) : o.prompt === false ? ("off" as const) : undefined;
      if ((o.textEncoder === undefined) !== (o.tokenizer === undefined))
        throw new Error("--text-encoder and --tokenizer go together: give both");
      if (o.normalizeEmbeddings === false && o.textEncoder === undefined)
        throw new Error("--no-normalize-embeddings only applies with --text-encoder");
      const textEncoder =
        o.textEncoder !== undefined && o.tokenizer !== undefined
          ? { model: o.textEncoder, tokenizer: o.tokenizer, normalize: o.normalizeEmbeddings !== false }
          : undefined;
      const progress = trainingProgress({ json, label: "train" });
      const result = await trainRun({
        out: o.out,
        mode: o.resume ? "resume" : "new",
        ...(o.dataset !== undefined ? { dataset: o.dataset } : {}),
        ...(config ? { config } : {}),
        ...defined({
          steps: o.steps,
          batch: o.batch,
          horizon: o.horizon,
          padding: o.padding,
          rtcMaxDelay: o.rtcMaxDelay,
          nActionSteps: o.nActionSteps,
          seed,
          valEpisodes: o.valEpisodes,
          obs: o.obs,
          action: o.action,
          arch: o.arch,
          objective: o.objective,
          lr,
          checkpointEvery: o.checkpointEvery,
          valEvery: o.valEvery,
          keep: o.keep,
          workers: o.workers,
          prompt,
          taskEmbeddings: o.taskEmbeddings,
          textEncoder,
          imageSize: o.imageSize,
          imageShift: o.imageShift,
          missingVideo: o.missingVideo,
        }),
        ...(normObs || normAction
          ? { normalization: { ...(normObs ? { obs: normObs } : {}), ...(normAction ? { action: normAction } : {}) } }
          : {}),
        backend: o.backend,
        onStart: (s) => {
          log(`backend: ${s.backend}`);
          log(
            `${s.params} parameters; ${s.trainEpisodes.length} train episodes (${s.trainFrames} windows), ${s.valEpisodes.length} validation episodes [${s.valEpisodes.join(", ")}] (${s.valFrames} windows); stats from ${s.statsSource}` +
              (s.fromStep > 0 ? `; resuming at step ${s.fromStep}` : ""),
          );
        },
        onProgress: (p) => progress.report(p),
      });
      progress.stop();
      printResult(result, { json }, human);
    });
}
