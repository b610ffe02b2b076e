/**
 * ReFlow distillation of a trained policy run (Liu et al. 2023): solve the teacher's flow with many
 * steps from fresh noise, conditioned on the observations of the teacher's dataset windows, and
 * fine-tune a student (initialised from the teacher's EMA weights) on the straight paths between
 * each noise draw and the chunk it flows to. One round makes few-step (1 or 2) Euler sampling of the
 * student close to the teacher's many-step sampling.
 *
 * ```
 * <out>/distill.json                 the teacher, dataset, split, the teacher's settings, the distillation's
 * <out>/reflow-pairs.safetensors     the (noise, chunk) pairs (see ./pairs.ts), made once, reused on resume
 * <out>/checkpoints/...              like any run (policy/checkpoint/checkpoint.ts): export, eval, serve
 * ```
 *
 * The student keeps the teacher's head, normalisation (the teacher checkpoint's `stats.json`, never
 * recomputed), split, batch, time sampler, path and optimiser settings (`lr` may be overridden); its
 * own settings are the pair counts, the teacher's solver and steps, the seed and its step count.
 * It has no `run.json`, so `train --resume` refuses it: a distilled run continues with `distill
 * reflow --resume`, which refuses any other teacher or setting except `steps`.
 */
import { join, resolve } from "node:path";
import { z } from "zod";
import { openDataset } from "../../datasets/open.ts";
import type { NormalizationSpec } from "../../policy/checkpoint/checkpoint.ts";
import { NormalizationSpecSchema, loadCheckpoint, resolveCheckpointDir } from "../../policy/checkpoint/checkpoint.ts";
import { writeJsonAtomic } from "../../policy/io/atomic.ts";
import { pathExists } from "../../policy/io/files.ts";
import { readJsonFile } from "../../policy/io/json.ts";
import { HeadConfigSchema } from "../../policy/net/config.ts";
import { buildHead } from "../../policy/net/network.ts";
import type { AffineNorm } from "../../policy/normalize.ts";
import { affineFor } from "../../policy/normalize.ts";
import { weightsDigest } from "../../policy/onnx/export.ts";
import { VERSION } from "../../policy/version.ts";
import type { TrainBackendName } from "../backend/registry.ts";
import { refuseOrtWorkers, resolveTrainBackend } from "../backend/registry.ts";
import type { FitSummary } from "../fit.ts";
import { fit } from "../fit.ts";
import { loadResumePoint, saveRunCheckpoint } from "../run/checkpoints.ts";
import { readRunFile } from "../run/run-file.ts";
import { RunInputSchema, stable } from "../run/settings.ts";
import { Trainer, defaultWorkers } from "../trainer.ts";
import type { RunTrainer } from "../trainer-interface.ts";
import { createWindowSource } from "../windows.ts";
import type { Pairs, PairsKey } from "./pairs.ts";
import { generatePairs, pairSource, readPairs, writePairs } from "./pairs.ts";

/** The distillation's own settings (stored in distill.json; all but `steps` fixed for a run). */
export const ReflowSettingsSchema = z.object({
  /** Training pairs (default: one per training window). */
  pairs: z.number().int().positive(),
  /** Validation pairs, from the validation windows (default min(256, validation windows)). */
  valPairs: z.number().int().nonnegative(),
  teacherSteps: z.number().int().positive(),
  teacherSolver: z.string(),
  steps: z.number().int().positive(),
  /** The cosine schedule's length: `steps` when the run started (a resume that extends `steps` keeps it). */
  decaySteps: z.number().int().positive(),
  seed: z.number().int(),
  lr: z.number().positive(),
});
/** See {@link ReflowSettingsSchema}. */
export type ReflowSettings = z.infer<typeof ReflowSettingsSchema>;

/** `<out>/distill.json`. */
export const DistillFileSchema = z.object({
  format: z.literal("actionflow.distill"),
  version: z.literal(1),
  method: z.literal("reflow"),
  actionflowVersion: z.string(),
  createdAt: z.string(),
  teacher: z.object({ run: z.string(), checkpoint: z.string(), weightsSha256: z.string() }),
  dataset: z.object({ path: z.string(), episodes: z.number().int(), frames: z.number().int() }),
  split: z.object({ train: z.array(z.number().int()), val: z.array(z.number().int()) }),
  /** The teacher's settings (its run.json `input`). */
  input: RunInputSchema,
  head: HeadConfigSchema,
  normalization: NormalizationSpecSchema,
  settings: ReflowSettingsSchema,
});
/** See {@link DistillFileSchema}. */
export type DistillFile = z.infer<typeof DistillFileSchema>;

/** The file name of the pair cache in a distilled run folder. */
export const PAIRS_FILE = "reflow-pairs.safetensors";

/** Options of {@link reflowRun}. */
export interface ReflowRunOptions {
  /** The teacher run folder (run.json and checkpoints; its latest checkpoint is distilled). Required for a new run. */
  teacher?: string;
  /** The dataset whose windows condition the pairs (default and only allowed value: the teacher's). */
  dataset?: string;
  /** The student run folder. */
  out: string;
  /** `new` (default) refuses a folder with distill.json; `resume` continues it. */
  mode?: "new" | "resume";
  pairs?: number;
  valPairs?: number;
  /** Teacher solver steps (default 20) and solver (default euler). */
  teacherSteps?: number;
  teacherSolver?: string;
  /** Student optimisation steps (default 1000; may grow on resume). */
  steps?: number;
  /**
   * Peak learning rate (default: a tenth of the teacher's). A trained teacher already nearly fits its
   * own pairs; measured on reach (default transformer, 1000 teacher steps): at the teacher's 1e-3 the
   * pair loss rose from 0.0071 to 0.0187 during warmup.
   */
  lr?: number;
  /** Seed of the pairs' noise and of the student's batches (default: the teacher's seed). */
  seed?: number;
  /** What trains the student, as `train --backend` (default `auto`: a native tfjs backend if installed, else `ort`). */
  backend?: TrainBackendName;
  /** tfjs gradient threads (see `trainRun`); refused above 1 when the student trains in onnxruntime. */
  workers?: number;
  /** Steps between checkpoints (default: the teacher's cadence); not stored, a resume may change it. */
  checkpointEvery?: number;
  /** onnxruntime threads of the teacher while making pairs. */
  threads?: number;
  onStart?: (s: { fromStep: number; params: number; trainFrames: number; valFrames: number }) => void;
  onPairs?: (s: { phase: "generate" | "cached"; done: number; total: number; seconds: number }) => void;
  onProgress?: (p: { step: number; steps: number; trainLoss: number; valLoss?: number; samplesPerSec: number }) => void;
}

/** The summary of a distillation. */
export interface ReflowRunResult {
  run: string;
  teacher: string;
  teacherCheckpoint: string;
  steps: number;
  resumedFrom: number;
  pairs: number;
  valPairs: number;
  teacherSteps: number;
  teacherSolver: string;
  /** Seconds spent making pairs in this invocation (0 when the cache was reused). */
  pairSeconds: number;
  /** Mean training loss over the last (up to) 50 steps (normalised units). */
  trainLoss: number;
  /** Loss of the student's EMA weights on the validation pairs, before and after. */
  valLossAtStart: number;
  valLoss: number;
  checkpoint: string;
  seconds: number;
  samplesPerSec: number;
  backend: string;
  params: number;
}

/** Identity maps for raw-unit windows. */
function identity(dim: number): AffineNorm {
  return { scale: new Float32Array(dim).fill(1), offset: new Float32Array(dim) };
}

/**
 * Distils (or resumes distilling) a teacher run into a student run; see the module comment.
 * Resolves when the student has taken `steps` steps and written its final checkpoint. A run killed
 * at any moment continues with `mode: "resume"` and gives the same weights as an uninterrupted one.
 */
export async function reflowRun(opts: ReflowRunOptions): Promise<ReflowRunResult> {
  const t0 = performance.now();
  // What trains the student, settled first so a refused setting costs no pairs.
  const backend = await resolveTrainBackend(opts.backend ?? "auto");
  refuseOrtWorkers(opts.backend ?? "auto", backend, opts.workers);
  const out = resolve(opts.out);
  const distillPath = join(out, "distill.json");
  const mode = opts.mode ?? "new";
  let file: DistillFile;
  let teacherCkpt: Awaited<ReturnType<typeof loadCheckpoint>> | undefined;
  if (mode === "resume") {
    file = await readJsonFile(distillPath, DistillFileSchema, {
      missing: "nothing to resume? start without --resume",
      invalid: "a corrupt distill file",
    });
    if (opts.teacher !== undefined && resolve(opts.teacher) !== file.teacher.run)
      throw new Error(`${distillPath}: the run distils ${file.teacher.run}, not ${resolve(opts.teacher)}`);
    if (opts.dataset !== undefined && resolve(opts.dataset) !== file.dataset.path)
      throw new Error(`${distillPath}: the run uses the dataset ${file.dataset.path}, not ${resolve(opts.dataset)}`);
    const s = file.settings;
    const given: Partial<ReflowSettings> = {
      pairs: opts.pairs,
      valPairs: opts.valPairs,
      teacherSteps: opts.teacherSteps,
      teacherSolver: opts.teacherSolver,
      lr: opts.lr,
      seed: opts.seed,
    };
    const diffs = (Object.keys(given) as (keyof ReflowSettings)[])
      .filter((k) => given[k] !== undefined && given[k] !== s[k])
      .map((k) => `${k}: distill.json has ${String(s[k])}, given ${String(given[k])}`);
    if (diffs.length) throw new Error(`${distillPath}: cannot resume with different settings: ${diffs.join("; ")}`);
    if (opts.steps !== undefined) s.steps = opts.steps;
  } else {
    if (await pathExists(distillPath))
      throw new Error(
        `${distillPath} exists: ${out} already holds a distilled run; pass --resume or choose another --out`,
      );
    if (await pathExists(join(out, "run.json")))
      throw new Error(`${join(out, "run.json")} exists: ${out} holds a training run; choose another --out`);
    if (!opts.teacher) throw new Error("no --teacher run given");
    const teacherRun = resolve(opts.teacher);
    const runFile = await readRunFile(teacherRun);
    const ckptDir = await resolveCheckpointDir(teacherRun);
    if (!ckptDir) throw new Error(`${teacherRun}: the teacher run has no checkpoint yet; train it first`);
    teacherCkpt = await loadCheckpoint(ckptDir);
    if (stable(teacherCkpt.config) !== stable(runFile.head))
      throw new Error(`${ckptDir}: the checkpoint's head config differs from ${join(teacherRun, "run.json")}'s`);
    if (teacherCkpt.config.objective !== "flow")
      throw new Error(
        `${ckptDir}: ReFlow distils a flow head, the teacher's objective is ${teacherCkpt.config.objective}`,
      );
    const datasetPath = resolve(opts.dataset ?? runFile.dataset.path);
    if (datasetPath !== runFile.dataset.path)
      throw new Error(
        `--dataset ${datasetPath}: the teacher was trained on ${runFile.dataset.path}; distil on the same dataset (its split and statistics)`,
      );
    file = {
      format: "actionflow.distill",
      version: 1,
      method: "reflow",
      actionflowVersion: VERSION,
      createdAt: new Date().toISOString(),
      teacher: { run: teacherRun, checkpoint: ckptDir, weightsSha256: await weightsDigest(ckptDir) },
      dataset: { path: datasetPath, episodes: runFile.dataset.episodes, frames: runFile.dataset.frames },
      split: runFile.split,
      input: runFile.input,
      head: teacherCkpt.config,
      normalization: teacherCkpt.normalization,
      settings: {
        pairs: opts.pairs ?? 0, // resolved below from the training windows
        valPairs: opts.valPairs ?? -1,
        teacherSteps: opts.teacherSteps ?? 20,
        teacherSolver: opts.teacherSolver ?? "euler",
        steps: opts.steps ?? 1000,
        decaySteps: opts.steps ?? 1000,
        seed: opts.seed ?? runFile.input.seed,
        lr: opts.lr ?? runFile.input.optim.lr / 10,
      },
    };
  }

  const { input, head, normalization } = file;
  const opened = await openDataset(file.dataset.path);
  const ds = opened.dataset;
  try {
    const frames = ds.episodes.reduce((s, e) => s + e.length, 0);
    if (ds.episodes.length !== file.dataset.episodes || frames !== file.dataset.frames)
      throw new Error(
        `${file.dataset.path} changed since the teacher was trained (${file.dataset.episodes} episodes / ${file.dataset.frames} frames then, ${ds.episodes.length} / ${frames} now)`,
      );
    const norms = columnNorms(normalization);
    const rawNorms: Record<string, AffineNorm> = {};
    for (const [k, n] of Object.entries(norms)) rawNorms[k] = identity(n.scale.length);
    const rawActionDim = normalization.action.stats.mean.length;
    const windowOpts = {
      dataset: ds,
      obs: input.obs,
      action: input.action,
      horizon: input.horizon,
      padding: input.padding,
    };
    const obsDims = Object.fromEntries(head.obs.map((f) => [f.name, f.shape.at(-1)!]));
    const make = async (
      episodes: number[],
    ): Promise<{
      norm: Awaited<ReturnType<typeof createWindowSource>>;
      raw: Awaited<ReturnType<typeof createWindowSource>>;
    }> => ({
      norm: await createWindowSource({ ...windowOpts, episodes, actionDim: head.actionDim, obsDims, norms }),
      raw: await createWindowSource({ ...windowOpts, episodes, actionDim: rawActionDim, norms: rawNorms }),
    });
    const train = await make(file.split.train);
    const val = await make(file.split.val);
    const s = file.settings;
    if (s.pairs === 0) s.pairs = train.norm.frames;
    if (s.valPairs < 0) s.valPairs = Math.min(256, val.norm.frames);
    if (s.valPairs === 0) throw new Error("--val-pairs: the distillation needs at least one validation pair");
    // A new run records its settings; a resume that extends `steps` records the new count before training.
    if (mode === "new" || opts.steps !== undefined) await writeJsonAtomic(distillPath, file);

    // Pairs: from the cache, else from the teacher (then cached).
    const key: PairsKey = {
      teacherSha256: file.teacher.weightsSha256,
      teacherSteps: s.teacherSteps,
      teacherSolver: s.teacherSolver,
      pairs: s.pairs,
      valPairs: s.valPairs,
      seed: s.seed,
      horizon: head.horizon,
      modelActionDim: head.actionDim,
      actionDim: rawActionDim,
      trainFrames: train.norm.frames,
      valFrames: val.norm.frames,
    };
    const pairsFile = join(out, PAIRS_FILE);
    const tp = performance.now();
    let pairs: Pairs | undefined = await readPairs(pairsFile, key);
    let pairSeconds = 0;
    if (pairs) opts.onPairs?.({ phase: "cached", done: s.pairs + s.valPairs, total: s.pairs + s.valPairs, seconds: 0 });
    else {
      teacherCkpt ??= await loadTeacher(file);
      pairs = await generatePairs({
        teacher: teacherCkpt,
        teacherSha256: file.teacher.weightsSha256,
        teacherSteps: s.teacherSteps,
        teacherSolver: s.teacherSolver,
        rawTrain: train.raw,
        rawVal: val.raw,
        pairs: s.pairs,
        valPairs: s.valPairs,
        seed: s.seed,
        ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
        onProgress: (done, total) =>
          opts.onPairs?.({ phase: "generate", done, total, seconds: (performance.now() - tp) / 1000 }),
      });
      await writePairs(pairsFile, pairs);
      pairSeconds = (performance.now() - tp) / 1000;
    }
    const sourceOpts = {
      actionNorm: norms[input.action]!,
      horizon: head.horizon,
      actionDim: rawActionDim,
      modelActionDim: head.actionDim,
    };
    const trainPairs = pairSource({ ...sourceOpts, set: pairs.train, windows: train.norm });
    const valBatches = [...pairSource({ ...sourceOpts, set: pairs.val, windows: val.norm }).epoch!(64)];

    // Student: the teacher's weights, or the latest student checkpoint.
    const from = await loadResumePoint(out, head);
    let resume = from?.resume;
    if (!resume) {
      teacherCkpt ??= await loadTeacher(file);
      resume = { params: teacherCkpt.weights, m: new Map(), v: new Map(), ema: teacherCkpt.weights, step: 0 };
    }
    const optim = {
      ...input.optim,
      lr: s.lr,
      decaySteps: s.decaySteps,
      warmupSteps: Math.min(input.optim.warmupSteps, Math.max(1, Math.floor(s.decaySteps / 10))),
    };
    const actionHead = buildHead(head);
    const trainerOpts = {
      head: actionHead,
      seed: s.seed,
      optim,
      timeSampler: input.timeSampler,
      path: input.path,
      resume,
    };
    const trainer: RunTrainer =
      backend === "ort"
        ? await (await import("../ort/trainer.ts")).OrtTrainer.create(trainerOpts)
        : new Trainer({ ...trainerOpts, workers: opts.workers ?? defaultWorkers(actionHead, input.batch) });
    try {
      const fromStep = trainer.step;
      const params = trainer.parameterCount();
      opts.onStart?.({ fromStep, params, trainFrames: train.norm.frames, valFrames: val.norm.frames });
      const ts = from?.trainState;
      let lastCheckpoint = from?.dir ?? "";
      const validate = (): number | Promise<number> => trainer.evalLossOver(valBatches, s.seed + 7919);
      let summary: FitSummary;
      if (ts && trainer.step >= s.steps) {
        summary = { ...ts, step: trainer.step, samplesPerSec: 0, seconds: 0 };
      } else {
        const valEvery = Math.min(250, Math.max(1, Math.ceil(s.steps / 8)));
        summary = await fit(
          {
            trainer,
            source: trainPairs,
            steps: s.steps,
            batchSize: input.batch,
            seed: s.seed,
            validate,
            valEvery,
            checkpointEvery: opts.checkpointEvery ?? input.checkpointEvery,
            checkpoint: async (sum) => {
              lastCheckpoint = await saveRunCheckpoint(trainer, sum, {
                out,
                head,
                loss: { timeSampler: input.timeSampler, path: input.path },
                normalization,
                seed: s.seed,
                keep: input.keep,
                backend,
              });
            },
            onStep: (_r, sum) =>
              opts.onProgress?.({
                step: sum.step,
                steps: s.steps,
                trainLoss: sum.trainLoss,
                ...(sum.valLoss !== undefined ? { valLoss: sum.valLoss } : {}),
                samplesPerSec: sum.samplesPerSec,
              }),
          },
          ts ? { valHistory: ts.valHistory, valLossAtStart: ts.valLossAtStart } : undefined,
        );
      }
      return {
        run: out,
        teacher: file.teacher.run,
        teacherCheckpoint: file.teacher.checkpoint,
        steps: trainer.step,
        resumedFrom: fromStep,
        pairs: s.pairs,
        valPairs: s.valPairs,
        teacherSteps: s.teacherSteps,
        teacherSolver: s.teacherSolver,
        pairSeconds,
        trainLoss: summary.trainLoss,
        valLossAtStart: summary.valLossAtStart ?? NaN,
        valLoss: summary.valLoss ?? NaN,
        checkpoint: lastCheckpoint,
        seconds: (performance.now() - t0) / 1000,
        samplesPerSec: summary.samplesPerSec,
        backend,
        params,
      };
    } finally {
      await trainer.dispose();
    }
  } finally {
    ds.close();
  }
}

/** The affine map per dataset column (unpadded), from a checkpoint's normalisation, as a run's windows use. */
export function columnNorms(spec: NormalizationSpec): Record<string, AffineNorm> {
  const norms: Record<string, AffineNorm> = {};
  for (const f of Object.values(spec.obs)) norms[f.key] = affineFor(f.stats, f.mode, f.key);
  norms[spec.action.key] = affineFor(spec.action.stats, spec.action.mode, spec.action.key);
  return norms;
}

/** The teacher checkpoint recorded in distill.json, refused when its weights changed. */
async function loadTeacher(file: DistillFile): Promise<Awaited<ReturnType<typeof loadCheckpoint>>> {
  const dir = file.teacher.checkpoint;
  if (!(await pathExists(dir)))
    throw new Error(
      `${dir}: the teacher checkpoint is gone (pruned?); the distillation needs it to make pairs or start`,
    );
  const digest = await weightsDigest(dir);
  if (digest !== file.teacher.weightsSha256)
    throw new Error(
      `${dir}: the teacher's weights changed since the distillation started (sha256 ${digest}, was ${file.teacher.weightsSha256})`,
    );
  return loadCheckpoint(dir);
}
