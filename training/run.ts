/**
 * A training run on a demonstration dataset: opens the dataset (LeRobot v2.x/v3.0 folder or robomimic
 * HDF5 file), splits episodes into train and validation, computes the normalisation, builds the head,
 * trains it with periodic validation and checkpoints, and resumes a killed run exactly.
 *
 * ```
 * <run>/run.json                    every setting, the dataset, the split, the start time
 * <run>/checkpoints/step-000500/    see policy/checkpoint/checkpoint.ts (last `keep` kept)
 * <run>/checkpoints/latest.json
 * ```
 *
 * The pieces live in `training/run/`: `settings.ts` (the `--config` file, the resolved settings, what
 * may differ on resume, the head they give), `run-file.ts` (run.json), `normalization.ts` (stats ->
 * normalisation) and `checkpoints.ts` (train_state.json, the resume point, writing a checkpoint).
 *
 * Settings are layered: built-in defaults < the stored run.json (when resuming) < the config file
 * (`--config`) < explicit options. A resume refuses any setting that changes the run's mathematics
 * (dataset, split, head, normalisation, optimiser, batch, seed); only `steps` (to extend a run),
 * the checkpoint/validation cadence, `keep` and the backend may change.
 *
 * Normalisation defaults to `mean_std` for observations and actions, as LeRobot's pi0 policy does.
 * Dims that are (nearly) constant over the data would get a huge scale, so the stats saved with the
 * checkpoint are guarded: a dim with std < 1e-3 gets std 1 (`mean_std`), a dim whose range
 * (max - min, or q99 - q01) is < 2e-3 gets the range [mean - 1, mean + 1] (`min_max`, `quantiles`).
 * The guarded dims are listed in run.json. Stats come from the dataset's metadata when it has every
 * number the mode needs (LeRobot's behaviour: global stats over all episodes), else they are
 * computed from the frames of the training episodes.
 */
import { resolve } from "node:path";
import { pathExists } from "../policy/io/files.ts";
import { buildHead } from "../policy/net/network.ts";
import type { FeatureStats } from "../policy/normalize.ts";
import { VERSION } from "../policy/version.ts";
import { openDataset } from "../datasets/open.ts";
import type { DatasetFormat, OpenedDataset } from "../datasets/open.ts";
import { CameraFrames, type MissingVideo } from "../datasets/video/cameras.ts";
import type { EpisodeDataset } from "../datasets/episodes.ts";
import type { TrainBackendName } from "./backend/registry.ts";
import { refuseOrtWorkers, resolveTrainBackend } from "./backend/registry.ts";
import type { Batch } from "./batch.ts";
import type { FitSummary } from "./fit.ts";
import { fit } from "./fit.ts";
import { loadResumePoint, saveRunCheckpoint } from "./run/checkpoints.ts";
import type { StatsSource } from "./run/normalization.ts";
import { runNormalization } from "./run/normalization.ts";
import type { RunFile } from "./run/run-file.ts";
import { readRunFile, runFilePath, writeRunFile } from "./run/run-file.ts";
import type { RunSettings } from "./run/settings.ts";
import { copyTextEncoder } from "../policy/text/encoder.ts";
import { checkResumable, promptEmbeddingFor, resolveHead, resolveInput, stable } from "./run/settings.ts";
import type { RunTrainer } from "./trainer-interface.ts";
import { Trainer, defaultWorkers } from "./trainer.ts";
import type { WindowSource } from "./windows.ts";
import { createWindowSource, splitEpisodes } from "./windows.ts";

/** Progress of a run, reported after every step. */
export interface RunProgress {
  step: number;
  steps: number;
  trainLoss: number;
  valLoss?: number;
  samplesPerSec: number;
}

/** What a run reports when it starts (after the dataset is loaded and the model is built). */
export interface RunStart {
  backend: string;
  params: number;
  trainFrames: number;
  valFrames: number;
  trainEpisodes: number[];
  valEpisodes: number[];
  /** The step the run continues from (0 for a new run). */
  fromStep: number;
  statsSource: StatsSource;
}

/** Options of {@link trainRun}; everything but `out` is optional (defaults, or run.json on resume). */
export interface TrainRunOptions extends RunSettings {
  /** LeRobot dataset folder or robomimic `.hdf5`/`.h5` file (required for a new run). */
  dataset?: string;
  /** The run folder. */
  out: string;
  /** `new` (default) refuses a folder that already has run.json; `resume` continues it. */
  mode?: "new" | "resume";
  /**
   * A tfjs backend, or `ort`: loss and gradients in onnxruntime (`OrtTrainer`, same initialisation, batches,
   * randomness, AdamW and EMA; checkpoints in the same files, so `export` and `--resume` treat them alike and a run
   * may even switch between the two on resume). Default `auto`: a native tfjs backend (tfjs-node-gpu, tfjs-node) when
   * one is installed, else `ort` (`resolveTrainBackend`).
   */
  backend?: TrainBackendName;
  /**
   * Gradient threads (see `TrainerOptions.workers`); default `defaultWorkers(head, batch)`. Not stored: a resume may
   * use another count. tfjs only: with `ort` onnxruntime uses its own intra-op threads and a value other than 1 is
   * refused.
   */
  workers?: number;
  /**
   * An episode without the video of a camera feature: `error` (default) fails naming it, `skip`
   * leaves it out of a new run's split after a message. Not stored (the split is).
   */
  missingVideo?: MissingVideo;
  /** Called once the run is set up. */
  onStart?: (s: RunStart) => void;
  /** Called after every step. */
  onProgress?: (p: RunProgress) => void;
  /** Called after each checkpoint is written, with its folder. */
  onCheckpoint?: (dir: string, step: number) => void;
}

/** The summary of a finished run. */
export interface TrainRunResult {
  /** Steps taken in total. */
  steps: number;
  /** Mean training loss over the last (up to) 50 steps of this invocation (normalised units). */
  trainLoss: number;
  /** Validation loss of the EMA weights at the end. */
  valLoss: number;
  /** Validation loss of the EMA weights before the first step. */
  valLossAtStart: number;
  /** The final checkpoint folder. */
  checkpoint: string;
  /** Wall time of this invocation, seconds (setup included). */
  seconds: number;
  /** Training samples (windows) per second of this invocation. */
  samplesPerSec: number;
  backend: string;
  /** Trainable scalars. */
  params: number;
  /** The run folder. */
  run: string;
  /** The step this invocation started from (0 for a new run). */
  resumedFrom: number;
  /** Validation loss by step over the whole run. */
  valHistory: { step: number; valLoss: number }[];
}

/** The dataset and what a run records of it; robomimic files may carry a validation mask, LeRobot folders stats. */
interface RunDataset {
  opened: OpenedDataset;
  ds: EpisodeDataset;
  format: DatasetFormat;
  codebaseVersion: string | null;
  metaStats?: Record<string, FeatureStats>;
  valMask?: number[];
  /** Task strings by task index (LeRobot `meta/tasks`); empty when the format has none. */
  tasks: string[];
}

async function openRunDataset(path: string): Promise<RunDataset> {
  const opened = await openDataset(path);
  const ds: EpisodeDataset = opened.dataset;
  if (opened.format === "robomimic") {
    const valMask = opened.dataset.masks["valid"];
    return { opened, ds, format: opened.format, codebaseVersion: null, tasks: [], ...(valMask ? { valMask } : {}) };
  }
  return {
    opened,
    ds,
    format: opened.format,
    codebaseVersion: opened.dataset.codebaseVersion,
    metaStats: opened.dataset.stats(),
    tasks: [...opened.dataset.tasks],
  };
}

/**
 * Trains (or resumes) a run; see the module comment. Resolves when the run has taken `steps` steps
 * and written its final checkpoint. Throws naming the dataset file, column, episode or setting at
 * fault; a run killed at any moment can be continued with `mode: "resume"`.
 */
export async function trainRun(opts: TrainRunOptions): Promise<TrainRunResult> {
  const t0 = performance.now();
  const out = resolve(opts.out);
  const mode = opts.mode ?? "new";
  const runFile = runFilePath(out);
  let stored: RunFile | undefined;
  if (mode === "resume") {
    stored = await readRunFile(out);
  } else if (await pathExists(runFile)) {
    throw new Error(
      `${runFile} exists: ${out} already holds a run; pass --resume to continue it or choose another --out`,
    );
  }
  const datasetPath = resolve(opts.dataset ?? stored?.dataset.path ?? "");
  if (!opts.dataset && !stored) throw new Error("no --dataset given");
  if (stored && datasetPath !== stored.dataset.path) {
    throw new Error(
      `${runFile}: the run was trained on ${stored.dataset.path}, not ${datasetPath}; resume with the same --dataset (or none)`,
    );
  }
  const opened = await openRunDataset(datasetPath);
  try {
    const { ds } = opened;
    const frames = ds.episodes.reduce((s, e) => s + e.length, 0);
    if (stored && (stored.dataset.episodes !== ds.episodes.length || stored.dataset.frames !== frames)) {
      throw new Error(
        `${runFile}: ${datasetPath} changed since the run started (${stored.dataset.episodes} episodes / ${stored.dataset.frames} frames then, ${ds.episodes.length} / ${frames} now)`,
      );
    }
    const embedding = await promptEmbeddingFor(opts, opened.tasks);
    const input = resolveInput(opts, stored?.input, ds.features, opened.tasks, embedding);
    if (stored) checkResumable(stored.input, input, runFile);
    // A resumed run keeps the rate it recorded (runs from before fps was recorded have none).
    const fps = stored ? stored.head.fps : ds.fps;
    const { head, obsShapes } = resolveHead(
      input,
      { features: ds.features, ...(fps ? { fps } : {}) },
      datasetPath,
      opts.config ? "config" : "settings",
    );

    // Split (a new run leaves out, or refuses, episodes without a camera's video).
    const cameraFrames = new CameraFrames(opened.opened);
    const cameras = input.obs.flatMap((o) => (o.image ? [{ key: o.key, ...o.image }] : []));
    const indices = stored
      ? ds.episodes.map((e) => e.index)
      : await cameraFrames.usable(
          ds.episodes.map((e) => e.index),
          cameras,
          opts.missingVideo ?? "error",
        );
    let split: { train: number[]; val: number[] };
    if (stored) split = stored.split;
    else if (opened.valMask && opts.valEpisodes === undefined && opts.config?.valEpisodes === undefined) {
      const val = new Set(opened.valMask.filter((i) => indices.includes(i)));
      split = { train: indices.filter((i) => !val.has(i)), val: [...val].sort((a, b) => a - b) };
      input.valEpisodes = "mask/valid";
    } else split = splitEpisodes(indices, input.valEpisodes);
    if (split.val.length === 0)
      throw new Error(`validation split '${input.valEpisodes}' selects no episode; validation needs at least one`);

    const { normalization, norms, guardedDims, statsSource } = await runNormalization({
      ds,
      datasetPath,
      input,
      head,
      metaStats: opened.metaStats,
      trainEpisodes: split.train,
      cameraStats: async (key) =>
        cameraFrames.stats(
          cameras.find((c) => c.key === key)!,
          split.train,
        ),
    });

    if (!stored) {
      const file: RunFile = {
        format: "actionflow.run",
        version: 1,
        actionflowVersion: VERSION,
        createdAt: new Date().toISOString(),
        dataset: {
          path: datasetPath,
          format: opened.format,
          codebaseVersion: opened.codebaseVersion,
          episodes: ds.episodes.length,
          frames,
        },
        split,
        input,
        head,
        statsSource,
        guardedDims,
      };
      await writeRunFile(out, file);
    } else if (stable(stored.head) !== stable(head)) {
      throw new Error(`${runFile}: the stored head config differs from the one the settings give (edited run.json?)`);
    }
    // The run keeps the text encoder its prompts come from (export copies it beside policy.onnx).
    if (opts.textEncoder) await copyTextEncoder(opts.textEncoder, out);

    // Data.
    const windowOpts = {
      dataset: ds,
      obs: input.obs,
      action: input.action,
      horizon: input.horizon,
      actionDim: input.actionDim,
      obsDims: Object.fromEntries(input.obs.map((o) => [o.name, obsShapes[o.name]!.at(-1)!])),
      norms,
      padding: input.padding,
      tasks: opened.tasks,
      images: (episode: number, key: string, size: { width: number; height: number }) =>
        cameraFrames.load(episode, key, size),
    };
    const train = await createWindowSource({ ...windowOpts, episodes: split.train, imageShift: input.imageShift });
    const val = await createWindowSource({ ...windowOpts, episodes: split.val });
    const valBatches = validationBatches(val, input.valWindows, 64);

    // Model and resume state.
    // With ort, tfjs only creates the initial weights (OrtTrainer's initialParams); onnxruntime loads only then.
    const backend = await resolveTrainBackend(opts.backend ?? "auto");
    const ort = backend === "ort";
    refuseOrtWorkers(opts.backend ?? "auto", backend, opts.workers);
    const from = stored ? await loadResumePoint(out, head) : undefined;
    const ts = from?.trainState;
    const actionHead = buildHead(head);
    const trainerOpts = {
      head: actionHead,
      seed: input.seed,
      optim: input.optim,
      timeSampler: input.timeSampler,
      path: input.path,
      ...(from ? { resume: from.resume } : {}),
    };
    const trainer: RunTrainer = ort
      ? await (await import("./ort/trainer.ts")).OrtTrainer.create(trainerOpts)
      : new Trainer({ ...trainerOpts, workers: opts.workers ?? defaultWorkers(actionHead, input.batch) });
    try {
      const fromStep = trainer.step;
      const params = trainer.parameterCount();
      opts.onStart?.({
        backend,
        params,
        trainFrames: train.frames,
        valFrames: val.frames,
        trainEpisodes: split.train,
        valEpisodes: split.val,
        fromStep,
        statsSource,
      });
      let lastCheckpoint = from?.dir ?? "";
      const validate = (): number | Promise<number> => trainer.evalLossOver(valBatches, input.seed + 7919);
      let summary: FitSummary;
      if (trainer.step >= input.steps && ts) {
        summary = {
          step: trainer.step,
          trainLoss: ts.trainLoss,
          valLoss: ts.valLoss,
          valLossAtStart: ts.valLossAtStart,
          valHistory: ts.valHistory,
          trainHistory: ts.trainHistory,
          samplesPerSec: 0,
          seconds: 0,
        };
      } else {
        summary = await fit(
          {
            trainer,
            source: train,
            steps: input.steps,
            batchSize: input.batch,
            seed: input.seed,
            validate,
            valEvery: input.valEvery,
            checkpointEvery: input.checkpointEvery,
            checkpoint: async (s) => {
              lastCheckpoint = await saveRunCheckpoint(trainer, s, {
                out,
                head,
                loss: { timeSampler: input.timeSampler, path: input.path },
                normalization,
                seed: input.seed,
                keep: input.keep,
                backend,
              });
              opts.onCheckpoint?.(lastCheckpoint, trainer.step);
            },
            onStep: (_r, s) =>
              opts.onProgress?.({
                step: s.step,
                steps: input.steps,
                trainLoss: s.trainLoss,
                ...(s.valLoss !== undefined ? { valLoss: s.valLoss } : {}),
                samplesPerSec: s.samplesPerSec,
              }),
          },
          ts
            ? { valHistory: ts.valHistory, trainHistory: ts.trainHistory, valLossAtStart: ts.valLossAtStart }
            : undefined,
        );
      }
      return {
        steps: trainer.step,
        trainLoss: summary.trainLoss,
        valLoss: summary.valLoss ?? NaN,
        valLossAtStart: summary.valLossAtStart ?? NaN,
        checkpoint: lastCheckpoint,
        seconds: (performance.now() - t0) / 1000,
        samplesPerSec: summary.samplesPerSec,
        backend,
        params,
        run: out,
        resumedFrom: fromStep,
        valHistory: summary.valHistory,
      };
    } finally {
      await trainer.dispose();
    }
  } finally {
    opened.ds.close();
  }
}

/**
 * Up to `max` validation windows evenly spaced over the split, in batches of `size` (fixed, so losses compare across
 * steps and resumes).
 */
function validationBatches(val: WindowSource, max: number, size: number): Batch[] {
  const n = Math.min(max, val.frames);
  const positions = Array.from({ length: n }, (_, i) => Math.floor((i * val.frames) / n));
  const out: Batch[] = [];
  for (let s = 0; s < n; s += size) out.push(val.batchAt(positions.slice(s, s + size)));
  return out;
}
