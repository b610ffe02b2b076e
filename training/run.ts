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
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { z } from "zod";
import type { FeatureNorm, NormalizationSpec } from "../policy/checkpoint/checkpoint.ts";
import { loadCheckpoint, normsFor, resolveCheckpointDir, saveCheckpoint } from "../policy/checkpoint/checkpoint.ts";
import type { HeadConfig } from "../policy/net/config.ts";
import { MlpSchema, TransformerSchema, describeIssues, parseHeadConfig } from "../policy/net/config.ts";
import { buildHead } from "../policy/net/network.ts";
import type { FeatureStats, NormMode } from "../policy/normalize.ts";
import { affineFor } from "../policy/normalize.ts";
import type { AffineNorm } from "../policy/normalize.ts";
import { writeJsonAtomic } from "../policy/io/atomic.ts";
import type { TimeSamplerConfig } from "../policy/flow/time.ts";
import { VERSION } from "../policy/version.ts";
import type { BackendName } from "./backend/registry.ts";
import { useBackend } from "./backend/registry.ts";
import type { Batch } from "./batch.ts";
import type { FitSummary } from "./fit.ts";
import { fit } from "./fit.ts";
import { openDataset } from "../datasets/open.ts";
import type { DatasetFormat } from "../datasets/open.ts";
import type { EpisodeDataset } from "../datasets/episodes.ts";
import { datasetStats } from "../datasets/stats/dataset.ts";
import type { OptimConfig, PathConfig } from "./trainer.ts";
import { DEFAULT_OPTIM, Trainer, defaultWorkers } from "./trainer.ts";
import type { ObsSpec, PaddingMode, WindowSource } from "./windows.ts";
import { createWindowSource, splitEpisodes } from "./windows.ts";
import { pathExists } from "../policy/io/files.ts";

const NORM_MODES = ["mean_std", "min_max", "quantiles", "identity"] as const;
const NormModeSchema = z.enum(NORM_MODES);

const OptimSchema = z.strictObject({
  lr: z.number().positive(),
  warmupSteps: z.number().int().nonnegative(),
  decaySteps: z.number().int().positive(),
  minLrRatio: z.number().min(0).max(1),
  beta1: z.number().min(0).lt(1),
  beta2: z.number().min(0).lt(1),
  eps: z.number().positive(),
  weightDecay: z.number().nonnegative(),
  clipNorm: z.number().positive(),
  emaDecay: z.number().min(0).lt(1),
});

const TimeSamplerSchema = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("uniform") }),
  z.strictObject({ kind: z.literal("logit_normal"), m: z.number(), s: z.number().positive() }),
  z.strictObject({ kind: z.literal("beta"), a: z.number().positive(), b: z.number().positive() }),
  z.strictObject({ kind: z.literal("pi0") }),
]);

const PathSchema = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("linear") }),
  z.strictObject({ kind: z.literal("sigma_min"), sigmaMin: z.number().min(0).lt(1) }),
]);

/**
 * The `--config` JSON file: head settings (as in `HeadConfig`, without `obs`) and training settings,
 * all optional. Unknown keys are refused (a typo must not silently fall back to a default).
 */
export const RunConfigSchema = z.strictObject({
  arch: z.enum(["transformer", "mlp"]).optional(),
  objective: z.enum(["flow", "regression"]).optional(),
  horizon: z.number().int().positive().optional(),
  actionDim: z.number().int().positive().optional(),
  transformer: TransformerSchema.partial().strict().optional(),
  mlp: MlpSchema.partial().strict().optional(),
  /** `"state=observation.state,env=observation.environment_state"` or `{ state: "observation.state" }`. */
  obs: z.union([z.string(), z.record(z.string(), z.string())]).optional(),
  /** The model's last-axis size per obs feature name (zero-padded up from the dataset's). */
  obsDims: z.record(z.string(), z.number().int().positive()).optional(),
  action: z.string().optional(),
  /** One mode for every obs feature, or one per obs feature name; and the action's mode. */
  normalization: z
    .strictObject({
      obs: z.union([NormModeSchema, z.record(z.string(), NormModeSchema)]).optional(),
      action: NormModeSchema.optional(),
    })
    .optional(),
  steps: z.number().int().positive().optional(),
  batch: z.number().int().positive().optional(),
  /** Loss on chunk steps past an episode's end: `hold` (default) or `mask` (see `WindowSourceOptions.padding`). */
  padding: z.enum(["hold", "mask"]).optional(),
  seed: z.number().int().optional(),
  valEpisodes: z.union([z.string(), z.number()]).optional(),
  lr: z.number().positive().optional(),
  optim: OptimSchema.partial().optional(),
  timeSampler: TimeSamplerSchema.optional(),
  path: PathSchema.optional(),
  checkpointEvery: z.number().int().positive().optional(),
  valEvery: z.number().int().positive().optional(),
  keep: z.number().int().positive().optional(),
  /** Validation windows evaluated (evenly spaced over the validation episodes). */
  valWindows: z.number().int().positive().optional(),
});
/** The content of a `--config` file. */
export type RunConfig = z.infer<typeof RunConfigSchema>;

/** Parses a `--config` object; errors name `source` and the offending field. */
export function parseRunConfig(input: unknown, source = "config"): RunConfig {
  const r = RunConfigSchema.safeParse(input);
  if (!r.success) throw new Error(`${source}: invalid training config: ${describeIssues(r.error)}`);
  return r.data;
}

/** Reads and parses a `--config` JSON file. */
export async function readRunConfig(file: string): Promise<RunConfig> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new Error(`${file}: cannot read the config file`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
  return parseRunConfig(raw, file);
}

/**
 * Parses an observation mapping `name=column,name=column` (model feature name = dataset column).
 * Throws on a malformed entry or a name given twice.
 */
export function parseObsSpec(spec: string | Record<string, string>): ObsSpec[] {
  const entries: [string, string][] =
    typeof spec === "string"
      ? spec
          .split(",")
          .map((s) => s.trim())
          .filter((s) => s !== "")
          .map((s) => {
            const eq = s.indexOf("=");
            if (eq <= 0 || eq === s.length - 1)
              throw new Error(`--obs: '${s}' is not 'name=column' (e.g. state=observation.state)`);
            return [s.slice(0, eq).trim(), s.slice(eq + 1).trim()];
          })
      : Object.entries(spec);
  if (entries.length === 0) throw new Error("--obs: no observation feature given");
  const seen = new Set<string>();
  for (const [name] of entries) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`--obs: feature name '${name}' must be an identifier`);
    if (seen.has(name)) throw new Error(`--obs: feature name '${name}' given twice`);
    seen.add(name);
  }
  return entries.map(([name, key]) => ({ name, key }));
}

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
  statsSource: "meta" | "data";
}

/** Options of {@link trainRun}; everything but `out` is optional (defaults, or run.json on resume). */
export interface TrainRunOptions {
  /** LeRobot dataset folder or robomimic `.hdf5`/`.h5` file (required for a new run). */
  dataset?: string;
  /** The run folder. */
  out: string;
  /** `new` (default) refuses a folder that already has run.json; `resume` continues it. */
  mode?: "new" | "resume";
  /** Settings from a `--config` file (see {@link RunConfigSchema}). */
  config?: RunConfig;
  steps?: number;
  batch?: number;
  horizon?: number;
  /** Loss on chunk steps past an episode's end (default `hold`; see `WindowSourceOptions.padding`). */
  padding?: PaddingMode;
  seed?: number;
  /** Validation episodes: `"8:10"`, `"3,7"`, a fraction or a count (see `splitEpisodes`). */
  valEpisodes?: string | number;
  /** `name=column,...` (default `state=observation.state` plus `env=observation.environment_state` when present). */
  obs?: string | Record<string, string>;
  /** The action column (default `action`). */
  action?: string;
  arch?: "transformer" | "mlp";
  objective?: "flow" | "regression";
  lr?: number;
  normalization?: { obs?: NormMode | Record<string, NormMode>; action?: NormMode };
  backend?: BackendName;
  /**
   * Gradient threads (see `TrainerOptions.workers`); default `defaultWorkers(head, batch)`. Not stored: a resume may
   * use another count.
   */
  workers?: number;
  checkpointEvery?: number;
  valEvery?: number;
  keep?: number;
  valWindows?: number;
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
  /** Mean training loss over the last (up to) 50 steps of this session (normalised units). */
  trainLoss: number;
  /** Validation loss of the EMA weights at the end. */
  valLoss: number;
  /** Validation loss of the EMA weights before the first step. */
  valLossAtStart: number;
  /** The final checkpoint folder. */
  checkpoint: string;
  /** Wall time of this session, seconds (setup included). */
  seconds: number;
  /** Training samples (windows) per second of this session. */
  samplesPerSec: number;
  backend: string;
  /** Trainable scalars. */
  params: number;
  /** The run folder. */
  run: string;
  /** The step this session started from (0 for a new run). */
  resumedFrom: number;
  /** Validation loss by step over the whole run. */
  valHistory: { step: number; valLoss: number }[];
}

/** Every setting of a run, fully resolved (stored as `input` in run.json). */
export interface RunInput {
  arch: "transformer" | "mlp";
  objective: "flow" | "regression";
  horizon: number;
  actionDim: number;
  transformer: HeadConfig["transformer"];
  mlp: HeadConfig["mlp"];
  obs: ObsSpec[];
  obsDims: Record<string, number>;
  action: string;
  normalization: { obs: Record<string, NormMode>; action: NormMode };
  steps: number;
  batch: number;
  /** `readRunFile` fills in `mask` for runs stored before this setting existed. */
  padding: PaddingMode;
  seed: number;
  valEpisodes: string | number;
  optim: OptimConfig;
  timeSampler: TimeSamplerConfig;
  path: PathConfig;
  checkpointEvery: number;
  valEvery: number;
  keep: number;
  valWindows: number;
}

/** The content of `<run>/run.json`. */
export interface RunFile {
  format: "actionflow.run";
  version: 1;
  actionflowVersion: string;
  createdAt: string;
  dataset: {
    path: string;
    format: "lerobot" | "robomimic";
    codebaseVersion: string | null;
    episodes: number;
    frames: number;
  };
  split: { train: number[]; val: number[] };
  input: RunInput;
  head: HeadConfig;
  statsSource: "meta" | "data";
  /** Dims whose stats were guarded against a near-zero spread, per dataset column. */
  guardedDims: Record<string, number[]>;
}

/** Settings that may change on resume. */
const RESUMABLE_KEYS = new Set<keyof RunInput>(["steps", "checkpointEvery", "valEvery", "keep"]);

/**
 * Default batch: 16, so the default transformer does 2000 steps in about 9 minutes on 2 idle cores
 * (G1, sim tasks). Batch 8 halves the time but trains visibly worse flow heads: on the avoid task
 * the sampled chunks fall between the two modes more often (93.5% success over 200 episodes at
 * batch 8, 95% at 16; see README).
 */
export const DEFAULT_BATCH = 16;
/**
 * Default padding: `hold`. Demonstrations usually stop when the task is done; with `mask` a long
 * chunk never learns what follows the end and a policy drifts after success (reach: 78% with
 * `mask`, see README).
 */
export const DEFAULT_PADDING: PaddingMode = "hold";
/** Default run length. */
export const DEFAULT_STEPS = 2000;

/** The dataset and what a run records of it; robomimic files may carry a validation mask, LeRobot folders stats. */
interface RunDataset {
  ds: EpisodeDataset;
  format: DatasetFormat;
  codebaseVersion: string | null;
  metaStats?: Record<string, FeatureStats>;
  valMask?: number[];
}

async function openRunDataset(path: string): Promise<RunDataset> {
  const opened = await openDataset(path);
  const ds: EpisodeDataset = opened.dataset;
  if (opened.format === "robomimic") {
    const valMask = opened.dataset.masks["valid"];
    return { ds, format: opened.format, codebaseVersion: null, ...(valMask ? { valMask } : {}) };
  }
  return {
    ds,
    format: opened.format,
    codebaseVersion: opened.dataset.codebaseVersion,
    metaStats: opened.dataset.stats(),
  };
}

/** Reads `<run>/run.json`; throws naming the file when it is missing, not JSON or not a run file. */
export async function readRunFile(runDir: string): Promise<RunFile> {
  const file = join(runDir, "run.json");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new Error(`${file}: cannot read the run file (nothing to resume? start without --resume)`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(
      `${file}: corrupt run file, not valid JSON (${(err as Error).message}); start a new run in another folder`,
      { cause: err },
    );
  }
  const r = raw as Partial<RunFile> | null;
  if (
    !r ||
    typeof r !== "object" ||
    r.format !== "actionflow.run" ||
    typeof r.input !== "object" ||
    !r.input ||
    typeof r.dataset?.path !== "string" ||
    !r.split ||
    !r.head
  ) {
    throw new Error(
      `${file}: corrupt run file (missing format, dataset, split, input or head); start a new run in another folder`,
    );
  }
  if (r.version !== 1) throw new Error(`${file}: run file version ${String(r.version)} is not supported (expected 1)`);
  // Runs written before `padding` existed trained with the loss masked past episode ends.
  (r.input as Partial<RunInput>).padding ??= "mask";
  return r as RunFile;
}

const stable = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === "object" && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
      : x,
  );

/** Layers the settings: defaults < stored < config file < explicit options, for a dataset with these features. */
function resolveInput(
  opts: TrainRunOptions,
  stored: RunInput | undefined,
  features: EpisodeDataset["features"],
): RunInput {
  const c = opts.config ?? {};
  const pick = <T>(...vals: (T | undefined)[]): T | undefined => {
    for (let i = vals.length - 1; i >= 0; i--) if (vals[i] !== undefined) return vals[i];
    return undefined;
  };
  const defaultObs = (): ObsSpec[] => {
    const o: ObsSpec[] = [{ name: "state", key: "observation.state" }];
    if (features["observation.environment_state"]) o.push({ name: "env", key: "observation.environment_state" });
    return o;
  };
  const obsGiven = pick<string | Record<string, string>>(c.obs, opts.obs);
  const obs = obsGiven !== undefined ? parseObsSpec(obsGiven) : (stored?.obs ?? defaultObs());
  const steps = pick(stored?.steps, c.steps, opts.steps) ?? DEFAULT_STEPS;
  const normObsGiven = pick<NormMode | Record<string, NormMode>>(c.normalization?.obs, opts.normalization?.obs);
  const normObs: Record<string, NormMode> = {};
  for (const o of obs) {
    const m =
      typeof normObsGiven === "string"
        ? normObsGiven
        : (normObsGiven?.[o.name] ?? stored?.normalization.obs[o.name] ?? "mean_std");
    normObs[o.name] = m;
  }
  if (normObsGiven && typeof normObsGiven === "object") {
    for (const n of Object.keys(normObsGiven))
      if (!obs.some((o) => o.name === n))
        throw new Error(
          `normalization.obs: '${n}' is not an observation feature (have: ${obs.map((o) => o.name).join(", ")})`,
        );
  }
  const optim: OptimConfig = {
    ...DEFAULT_OPTIM,
    decaySteps: steps,
    warmupSteps: Math.min(DEFAULT_OPTIM.warmupSteps, Math.max(1, Math.floor(steps / 10))),
    ...stored?.optim,
    ...c.optim,
  };
  const lr = pick(c.lr, opts.lr);
  if (lr !== undefined) optim.lr = lr;
  const obsDims = { ...stored?.obsDims, ...c.obsDims };
  for (const n of Object.keys(obsDims))
    if (!obs.some((o) => o.name === n))
      throw new Error(`obsDims: '${n}' is not an observation feature (have: ${obs.map((o) => o.name).join(", ")})`);
  const valEvery =
    pick(stored?.valEvery, c.valEvery, opts.valEvery) ?? Math.min(250, Math.max(1, Math.ceil(steps / 8)));
  return {
    arch: pick(stored?.arch, c.arch, opts.arch) ?? "transformer",
    objective: pick(stored?.objective, c.objective, opts.objective) ?? "flow",
    horizon: pick(stored?.horizon, c.horizon, opts.horizon) ?? 50,
    actionDim: pick(stored?.actionDim, c.actionDim) ?? 32,
    transformer: TransformerSchema.parse({ ...stored?.transformer, ...c.transformer }),
    mlp: MlpSchema.parse({ ...stored?.mlp, ...c.mlp }),
    obs,
    obsDims,
    action: pick(stored?.action, c.action, opts.action) ?? "action",
    normalization: {
      obs: normObs,
      action: pick(stored?.normalization.action, c.normalization?.action, opts.normalization?.action) ?? "mean_std",
    },
    steps,
    batch: pick(stored?.batch, c.batch, opts.batch) ?? DEFAULT_BATCH,
    padding: pick<PaddingMode>(stored?.padding, c.padding, opts.padding) ?? DEFAULT_PADDING,
    seed: pick(stored?.seed, c.seed, opts.seed) ?? 0,
    valEpisodes: pick<string | number>(stored?.valEpisodes, c.valEpisodes, opts.valEpisodes) ?? "0.1",
    optim,
    timeSampler: pick<TimeSamplerConfig>(stored?.timeSampler, c.timeSampler) ?? { kind: "pi0" },
    path: pick<PathConfig>(stored?.path, c.path) ?? { kind: "linear" },
    checkpointEvery: pick(stored?.checkpointEvery, c.checkpointEvery, opts.checkpointEvery) ?? 500,
    valEvery,
    keep: pick(stored?.keep, c.keep, opts.keep) ?? 2,
    valWindows: pick(stored?.valWindows, c.valWindows, opts.valWindows) ?? 256,
  };
}

/**
 * Guards stats against (nearly) constant dims, which would otherwise get a scale of ~1e8
 * (see the module comment). Returns the stats to save and the guarded dims.
 */
export function guardStats(stats: FeatureStats, mode: NormMode): { stats: FeatureStats; guarded: number[] } {
  const out: FeatureStats = {
    ...stats,
    mean: [...stats.mean],
    std: [...stats.std],
    min: [...stats.min],
    max: [...stats.max],
  };
  if (stats.q01) out.q01 = [...stats.q01];
  if (stats.q99) out.q99 = [...stats.q99];
  const guarded: number[] = [];
  const dim = stats.mean.length;
  for (let i = 0; i < dim; i++) {
    const mean = stats.mean[i]!;
    switch (mode) {
      case "identity":
        break;
      case "mean_std":
        if (!(stats.std[i]! >= 1e-3)) {
          out.std[i] = 1;
          guarded.push(i);
        }
        break;
      case "min_max":
        if (!(stats.max[i]! - stats.min[i]! >= 2e-3)) {
          out.min[i] = mean - 1;
          out.max[i] = mean + 1;
          guarded.push(i);
        }
        break;
      case "quantiles": {
        if (out.q01 && out.q99 && !(out.q99[i]! - out.q01[i]! >= 2e-3)) {
          out.q01[i] = mean - 1;
          out.q99[i] = mean + 1;
          guarded.push(i);
        }
        break;
      }
    }
  }
  return { stats: out, guarded };
}

const NEEDS: Record<NormMode, (keyof FeatureStats)[]> = {
  identity: ["mean"],
  mean_std: ["mean", "std"],
  min_max: ["mean", "min", "max"],
  quantiles: ["mean", "q01", "q99"],
};

function hasAll(s: FeatureStats | undefined, mode: NormMode, dim: number): s is FeatureStats {
  if (!s) return false;
  return [...NEEDS[mode], "min", "max", "std"].every((k) => {
    const v = s[k as keyof FeatureStats];
    return Array.isArray(v) && v.length === dim && v.every((x) => Number.isFinite(x));
  });
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
  const runFile = join(out, "run.json");
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
    const input = resolveInput(opts, stored?.input, ds.features);
    if (stored) {
      const diffs: string[] = [];
      for (const k of Object.keys(input) as (keyof RunInput)[]) {
        if (RESUMABLE_KEYS.has(k)) continue;
        if (stable(input[k]) !== stable(stored.input[k]))
          diffs.push(`${k}: run.json has ${stable(stored.input[k])}, given ${stable(input[k])}`);
      }
      if (diffs.length) throw new Error(`${runFile}: cannot resume with different settings: ${diffs.join("; ")}`);
    }

    // Columns and dims.
    const columnDim = (key: string, role: string): { dim: number; shape: readonly number[] } => {
      const f = ds.features[key];
      if (!f)
        throw new Error(
          `${datasetPath}: ${role} column '${key}' not in the dataset (columns: ${Object.keys(ds.features).join(", ")})`,
        );
      if (f.shape.length === 0 || f.shape.length > 2)
        throw new Error(
          `${datasetPath}: ${role} column '${key}' has shape [${f.shape.join(", ")}], need [D] or [N, D]`,
        );
      if (!f.dtype.startsWith("float"))
        throw new Error(`${datasetPath}: ${role} column '${key}' has dtype ${f.dtype}, need a float feature`);
      return { dim: f.shape[f.shape.length - 1]!, shape: f.shape };
    };
    const act = columnDim(input.action, "action");
    if (act.shape.length !== 1)
      throw new Error(
        `${datasetPath}: action column '${input.action}' must be a vector per frame, has shape [${act.shape.join(", ")}]`,
      );
    if (act.dim > input.actionDim) {
      throw new Error(
        `config actionDim ${input.actionDim} is smaller than the dataset's action dim ${act.dim} (column '${input.action}' of ${datasetPath}); set actionDim >= ${act.dim}`,
      );
    }
    const obsShapes: Record<string, number[]> = {};
    for (const o of input.obs) {
      const c = columnDim(o.key, `obs '${o.name}'`);
      const padded = input.obsDims[o.name] ?? c.dim;
      if (padded < c.dim)
        throw new Error(
          `config obsDims.${o.name} ${padded} is smaller than the dataset's dim ${c.dim} (column '${o.key}')`,
        );
      obsShapes[o.name] = c.shape.length === 2 ? [c.shape[0]!, padded] : [padded];
    }
    const head = parseHeadConfig(
      {
        arch: input.arch,
        objective: input.objective,
        horizon: input.horizon,
        actionDim: input.actionDim,
        obs: input.obs.map((o) => ({ name: o.name, key: o.key, shape: obsShapes[o.name] })),
        transformer: input.transformer,
        mlp: input.mlp,
      },
      opts.config ? "config" : "settings",
    );

    // Split.
    const indices = ds.episodes.map((e) => e.index);
    let split: { train: number[]; val: number[] };
    if (stored) split = stored.split;
    else if (opened.valMask && opts.valEpisodes === undefined && opts.config?.valEpisodes === undefined) {
      const val = new Set(opened.valMask);
      split = { train: indices.filter((i) => !val.has(i)), val: [...val].sort((a, b) => a - b) };
      input.valEpisodes = "mask/valid";
    } else split = splitEpisodes(indices, input.valEpisodes);
    if (split.val.length === 0)
      throw new Error(`validation split '${input.valEpisodes}' selects no episode; validation needs at least one`);

    // Normalisation.
    const columns = new Map<string, NormMode>();
    const claim = (key: string, m: NormMode, who: string): void => {
      const prev = columns.get(key);
      if (prev && prev !== m)
        throw new Error(`column '${key}' is normalised as ${prev} and as ${m} (${who}); use one mode per column`);
      columns.set(key, m);
    };
    claim(input.action, input.normalization.action, "action");
    for (const o of input.obs) claim(o.key, input.normalization.obs[o.name]!, `obs '${o.name}'`);
    const rawStats: Record<string, FeatureStats> = {};
    const missing: string[] = [];
    for (const [key, m] of columns) {
      const s = opened.metaStats?.[key];
      if (hasAll(s, m, ds.features[key]!.shape.at(-1)!)) rawStats[key] = s;
      else missing.push(key);
    }
    let statsSource: "meta" | "data" = "meta";
    if (missing.length) {
      statsSource = "data";
      const computed = await datasetStats(ds, missing, { episodes: split.train });
      for (const key of missing) {
        const s = computed[key];
        if (!s) throw new Error(`${datasetPath}: no frames to compute stats of column '${key}'`);
        rawStats[key] = perLastDim(s, ds.features[key]!.shape);
      }
    }
    const guardedDims: Record<string, number[]> = {};
    const saved: Record<string, FeatureStats> = {};
    const norms: Record<string, AffineNorm> = {};
    for (const [key, m] of columns) {
      const g = guardStats(rawStats[key]!, m);
      saved[key] = g.stats;
      if (g.guarded.length) guardedDims[key] = g.guarded;
      norms[key] = affineFor(g.stats, m, key);
    }
    const normalization: NormalizationSpec = {
      obs: Object.fromEntries(
        input.obs.map((o) => [
          o.name,
          { key: o.key, mode: input.normalization.obs[o.name]!, stats: saved[o.key]! } satisfies FeatureNorm,
        ]),
      ),
      action: { key: input.action, mode: input.normalization.action, stats: saved[input.action]! },
    };
    normsFor(normalization, head); // validates dims against the head

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
      await writeJsonAtomic(runFile, file);
    } else if (stable(parseHeadConfig(stored.head, runFile)) !== stable(head)) {
      throw new Error(`${runFile}: the stored head config differs from the one the settings give (edited run.json?)`);
    }

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
    };
    const train = await createWindowSource({ ...windowOpts, episodes: split.train });
    const val = await createWindowSource({ ...windowOpts, episodes: split.val });
    const valBatches = validationBatches(val, input.valWindows, 64);

    // Model and resume state.
    const backend = await useBackend(opts.backend ?? "auto");
    const ckptDir = stored ? await resolveCheckpointDir(out) : undefined;
    let resumeState: Awaited<ReturnType<typeof loadCheckpoint>> | undefined;
    if (ckptDir) {
      try {
        resumeState = await loadCheckpoint(ckptDir, { withOptimizer: "yes" });
      } catch (err) {
        throw new Error(`${ckptDir}: cannot load the checkpoint to resume from`, { cause: err });
      }
      if (stable(resumeState.config) !== stable(head))
        throw new Error(`${ckptDir}: checkpoint config differs from run.json's head`);
    }
    const ts = resumeState?.optimizer?.trainState as (TrainState & { step: number }) | undefined;
    const actionHead = buildHead(head);
    const trainer = new Trainer({
      head: actionHead,
      seed: input.seed,
      optim: input.optim,
      timeSampler: input.timeSampler,
      path: input.path,
      workers: opts.workers ?? defaultWorkers(actionHead, input.batch),
      ...(resumeState?.optimizer
        ? {
            resume: {
              params: resumeState.optimizer.params,
              m: resumeState.optimizer.m,
              v: resumeState.optimizer.v,
              ema: resumeState.weights,
              step: resumeState.optimizer.trainState.step,
            },
          }
        : {}),
    });
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
      let lastCheckpoint = ckptDir ?? "";
      const validate = (): number => trainer.evalLossOver(valBatches, input.seed + 7919);
      let summary: FitSummary;
      if (trainer.step >= input.steps && ts) {
        summary = {
          step: trainer.step,
          trainLoss: ts.trainLoss,
          valLoss: ts.valLoss,
          valLossAtStart: ts.valLossAtStart,
          valHistory: ts.valHistory,
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
              const st = trainer.state();
              const trainState: TrainState & { step: number } = {
                step: trainer.step,
                seed: input.seed,
                trainLoss: s.trainLoss,
                valLoss: s.valLoss ?? NaN,
                valLossAtStart: s.valLossAtStart ?? NaN,
                valHistory: s.valHistory,
                savedAt: new Date().toISOString(),
              };
              lastCheckpoint = await saveCheckpoint(
                out,
                trainer.step,
                {
                  config: head,
                  weights: st.ema,
                  normalization,
                  optimizer: { params: st.params, m: st.m, v: st.v, trainState },
                },
                { keep: input.keep },
              );
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
          ts ? { valHistory: ts.valHistory, valLossAtStart: ts.valLossAtStart } : undefined,
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
      trainer.dispose();
    }
  } finally {
    opened.ds.close();
  }
}

/** What a run's checkpoints keep in `train_state.json` besides the step. */
type TrainState = {
  seed: number;
  trainLoss: number;
  valLoss: number;
  valLossAtStart: number;
  valHistory: { step: number; valLoss: number }[];
  savedAt: string;
};

/**
 * Stats of an `[N, D]` column come back per element (N*D); the head normalises the last axis, so
 * fold them to D dims (count-weighted mean/std over the rows, min/max envelope). Vectors pass through.
 */
function perLastDim(s: FeatureStats, shape: readonly number[]): FeatureStats {
  if (shape.length !== 2) return s;
  const [n, d] = [shape[0]!, shape[1]!];
  const mean = new Array<number>(d).fill(0);
  const sq = new Array<number>(d).fill(0);
  const min = new Array<number>(d).fill(Infinity);
  const max = new Array<number>(d).fill(-Infinity);
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < d; j++) {
      const k = r * d + j;
      mean[j]! += s.mean[k]! / n;
      sq[j]! += (s.std[k]! ** 2 + s.mean[k]! ** 2) / n;
      min[j] = Math.min(min[j]!, s.min[k]!);
      max[j] = Math.max(max[j]!, s.max[k]!);
    }
  }
  const std = mean.map((m, j) => Math.sqrt(Math.max(0, sq[j]! - m * m)));
  const folded: FeatureStats = { mean, std, min, max, count: s.count * n };
  // Quantiles cannot be pooled exactly; take the envelope over the rows.
  const envelope = (q: number[] | undefined, f: (a: number, b: number) => number): number[] | undefined =>
    q && Array.from({ length: d }, (_, j) => Array.from({ length: n }, (_, r) => q[r * d + j]!).reduce(f));
  const q01 = envelope(s.q01, Math.min);
  const q99 = envelope(s.q99, Math.max);
  if (q01) folded.q01 = q01;
  if (q99) folded.q99 = q99;
  return folded;
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
