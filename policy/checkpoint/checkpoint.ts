/**
 * Checkpoints: a directory holding everything needed to run or resume a head.
 *
 * ```
 * <run>/checkpoints/step-000500/
 *   config.json          head config, loss settings (`loss`: time sampler and path), actionflow version
 *   model.safetensors    inference weights (EMA) by parameter name
 *   stats.json           normalisation (feature -> {key, mode, stats})
 *   optimizer.safetensors  raw weights and AdamW moments (resume only)
 *   train_state.json     step, seeds, schedule, losses (resume only)
 * <run>/checkpoints/latest.json   {"checkpoint": "step-000500"}
 * ```
 * A checkpoint folder is written atomically (`writeDirAtomic`: a temporary sibling, every file
 * fsynced, renamed into place); `latest.json` is replaced atomically afterwards. A process killed at any moment leaves the
 * previous checkpoint intact and `latest.json` pointing at a complete one.
 */
import { readFile, readdir, rename, rm } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { z } from "zod";
import { DEFAULT_LOSS_SETTINGS, LossSettingsSchema, type LossSettings } from "../flow/objective.ts";
import { PathSchema } from "../flow/path.ts";
import { TimeSamplerSchema } from "../flow/time.ts";
import type { HeadConfig } from "../net/config.ts";
import { parseHeadConfig } from "../net/config.ts";
import type { NamedArray } from "../net/ops.ts";
import type { AffineNorm } from "../normalize.ts";
import { FeatureStatsSchema, NormModeSchema, affineFor, padAffine } from "../normalize.ts";
import { writeDirAtomic, writeFileAtomic, writeJsonAtomic } from "../io/atomic.ts";
import { readJsonFile } from "../io/json.ts";
import { decodeSafetensors, encodeSafetensors } from "./safetensors.ts";
import { VERSION } from "../version.ts";
import { pathExists } from "../io/files.ts";
import { TEXT_ENCODER_DIR, TEXT_ENCODER_MODEL } from "../text/encoder.ts";

/** How one feature is normalised: its dataset column, mode and statistics. */
export const FeatureNormSchema = z.object({ key: z.string(), mode: NormModeSchema, stats: FeatureStatsSchema });
/** How one feature is normalised (see {@link FeatureNormSchema}). */
export type FeatureNorm = z.infer<typeof FeatureNormSchema>;

/** The normalisation of a head (`stats.json`): per observation feature (by model name) and for the action. */
export const NormalizationSpecSchema = z.object({
  obs: z.record(z.string(), FeatureNormSchema),
  action: FeatureNormSchema,
});
/** The normalisation of a head (see {@link NormalizationSpecSchema}). */
export type NormalizationSpec = z.infer<typeof NormalizationSpecSchema>;

/** `train_state.json`: the step and whatever JSON the trainer keeps (its own schema checks the rest). */
export const TrainStateFileSchema = z.looseObject({ step: z.number().int().nonnegative() });

/** `checkpoints/latest.json`: the folder name of the newest complete checkpoint. */
const LatestSchema = z.object({ checkpoint: z.string().regex(/^step-\d+$/, "expected a step-NNNNNN folder name") });

/**
 * `config.json`: the head config plus the loss settings and the version that wrote it. Checkpoints
 * written before the loss settings were kept have no `loss`.
 */
const ConfigFileSchema = z.looseObject({
  actionflowVersion: z.string().optional(),
  loss: LossSettingsSchema.optional(),
});

/**
 * The part of a run's `run.json` that holds the loss settings (`input.timeSampler`, `input.path`),
 * read only for a checkpoint without them; other fields are not read here.
 */
const RunFileLossSchema = z.looseObject({
  input: z.looseObject({ timeSampler: TimeSamplerSchema.optional(), path: PathSchema.optional() }).optional(),
});

/** Resume state: raw (non-EMA) weights, AdamW moments and the trainer's counters. */
export interface OptimizerState {
  params: Map<string, NamedArray>;
  m: Map<string, NamedArray>;
  v: Map<string, NamedArray>;
  /** JSON-serialisable trainer state (step, rng seeds, losses...). */
  trainState: z.infer<typeof TrainStateFileSchema>;
}

/** A checkpoint in memory. */
export interface Checkpoint {
  dir: string;
  config: HeadConfig;
  /**
   * The time sampler and path the head was trained with (what its loss is measured with). A
   * checkpoint written before they were kept takes them from its run's `run.json`, else the
   * trainer's defaults ({@link DEFAULT_LOSS_SETTINGS}).
   */
  loss: LossSettings;
  weights: Map<string, NamedArray>;
  normalization: NormalizationSpec;
  optimizer?: OptimizerState;
}

/**
 * Writes a checkpoint for `step` under `<runDir>/checkpoints/` and points `latest.json` at it;
 * `loss` is stored in `config.json` when given (a head trained elsewhere may not know it).
 */
export async function saveCheckpoint(
  runDir: string,
  step: number,
  ckpt: Omit<Checkpoint, "dir" | "loss"> & { loss?: LossSettings },
  opts: { keep?: number } = {},
): Promise<string> {
  const root = join(runDir, "checkpoints");
  const name = `step-${String(step).padStart(6, "0")}`;
  const final = join(root, name);
  await writeDirAtomic(final, async (tmp) => {
    await writeJsonAtomic(join(tmp, "config.json"), {
      ...ckpt.config,
      ...(ckpt.loss ? { loss: ckpt.loss } : {}),
      actionflowVersion: VERSION,
    });
    await writeFileAtomic(
      join(tmp, "model.safetensors"),
      encodeSafetensors(ckpt.weights, { format: "actionflow", step: String(step) }),
    );
    await writeJsonAtomic(join(tmp, "stats.json"), ckpt.normalization);
    if (ckpt.optimizer) {
      const all = new Map<string, NamedArray>();
      for (const [k, v] of ckpt.optimizer.params) all.set(`param/${k}`, v);
      for (const [k, v] of ckpt.optimizer.m) all.set(`m/${k}`, v);
      for (const [k, v] of ckpt.optimizer.v) all.set(`v/${k}`, v);
      await writeFileAtomic(join(tmp, "optimizer.safetensors"), encodeSafetensors(all));
      await writeJsonAtomic(join(tmp, "train_state.json"), ckpt.optimizer.trainState);
    }
  });
  await writeJsonAtomic(join(root, "latest.json"), { checkpoint: name, step });
  if (opts.keep !== undefined) await pruneCheckpoints(root, name, opts.keep);
  return final;
}

/**
 * Removes all but the newest `keep` checkpoints (the current one always stays), and the leftovers
 * of a process killed mid-write (`.step-*.<pid>.<n>.tmp|old`, `.trash-*`). A pruned checkpoint is first
 * renamed out of the `step-*` namespace, so a kill mid-delete never leaves a half-deleted
 * `step-*` folder behind.
 */
async function pruneCheckpoints(root: string, current: string, keep: number): Promise<void> {
  const entries = await readdir(root);
  const names = entries.filter((n) => /^step-\d+$/.test(n) && n !== current).sort();
  const excess = names.length - (keep - 1);
  for (const n of names.slice(0, Math.max(0, excess))) {
    const trash = join(root, `.trash-${n}.${process.pid}`);
    await rename(join(root, n), trash);
    await rm(trash, { recursive: true, force: true });
  }
  for (const n of entries) {
    const tmp = /^\.step-\d+\.(\d+)\.\d+\.(tmp|old)$/.exec(n);
    if ((tmp && Number(tmp[1]) !== process.pid) || n.startsWith(".trash-"))
      await rm(join(root, n), { recursive: true, force: true });
  }
}

/**
 * Resolves a run directory, a `checkpoints/` folder or a checkpoint folder to a checkpoint folder;
 * undefined when a run has no checkpoint yet.
 */
export async function resolveCheckpointDir(path: string): Promise<string | undefined> {
  const p = resolve(path);
  if (await pathExists(join(p, "config.json"))) return p;
  for (const root of [join(p, "checkpoints"), p]) {
    const latest = join(root, "latest.json");
    if (await pathExists(latest)) {
      const { checkpoint } = await readJsonFile(latest, LatestSchema);
      const dir = join(root, checkpoint);
      if (!(await pathExists(join(dir, "config.json"))))
        throw new Error(`${latest} points at ${checkpoint}, which is missing or incomplete`);
      return dir;
    }
  }
  return undefined;
}

/**
 * The folder holding the text encoder (`text-encoder/`) of a checkpoint whose prompt comes from one:
 * the checkpoint folder itself when it has one, else its run folder (`<run>/checkpoints/<name>` ->
 * `<run>`, where training copies the encoder), else undefined.
 */
export async function textEncoderBase(checkpointDir: string): Promise<string | undefined> {
  const root = dirname(checkpointDir);
  for (const base of [checkpointDir, ...(basename(root) === "checkpoints" ? [dirname(root)] : [])])
    if (await pathExists(join(base, TEXT_ENCODER_DIR, TEXT_ENCODER_MODEL))) return base;
  return undefined;
}

/** Loads a checkpoint (config, weights, normalisation; optimizer state with `withOptimizer`). */
export async function loadCheckpoint(path: string, opts: { withOptimizer?: "yes" | "no" } = {}): Promise<Checkpoint> {
  const dir = await resolveCheckpointDir(path);
  if (!dir) throw new Error(`${path}: no checkpoint found (expected config.json or checkpoints/latest.json)`);
  const configPath = join(dir, "config.json");
  const { actionflowVersion: _version, loss: stored, ...rawConfig } = await readJsonFile(configPath, ConfigFileSchema);
  const config = parseHeadConfig(rawConfig, configPath);
  const loss = stored ?? (await runLossSettings(dir));
  const modelPath = join(dir, "model.safetensors");
  const { tensors: weights } = decodeSafetensors(new Uint8Array(await readFile(modelPath)), modelPath);
  const statsPath = join(dir, "stats.json");
  const normalization = await readJsonFile(statsPath, NormalizationSpecSchema);
  try {
    normsFor(normalization, config); // every feature present, finite maps, dims within the head's
  } catch (err) {
    throw new Error(`${statsPath}: ${(err as Error).message} (head config ${configPath})`, { cause: err });
  }
  const ckpt: Checkpoint = { dir, config, loss, weights, normalization };
  if (opts.withOptimizer === "yes") {
    const optPath = join(dir, "optimizer.safetensors");
    const { tensors } = decodeSafetensors(new Uint8Array(await readFile(optPath)), optPath);
    const pick = (prefix: string): Map<string, NamedArray> =>
      new Map([...tensors].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
    const trainState = await readJsonFile(join(dir, "train_state.json"), TrainStateFileSchema);
    ckpt.optimizer = { params: pick("param/"), m: pick("m/"), v: pick("v/"), trainState };
  }
  return ckpt;
}

/**
 * The loss settings of a checkpoint folder without them in `config.json`: from `<run>/run.json`
 * when the folder is `<run>/checkpoints/<name>` and the file is there, each missing one (and the
 * file) defaulting to {@link DEFAULT_LOSS_SETTINGS}.
 */
async function runLossSettings(checkpointDir: string): Promise<LossSettings> {
  const root = dirname(checkpointDir);
  const runFile = join(dirname(root), "run.json");
  if (basename(root) !== "checkpoints" || !(await pathExists(runFile))) return { ...DEFAULT_LOSS_SETTINGS };
  const input = (await readJsonFile(runFile, RunFileLossSchema)).input;
  return {
    timeSampler: input?.timeSampler ?? DEFAULT_LOSS_SETTINGS.timeSampler,
    path: input?.path ?? DEFAULT_LOSS_SETTINGS.path,
  };
}

/** The affine normalisation maps of a head, padded to the model's dims. */
export function normsFor(
  spec: NormalizationSpec,
  config: HeadConfig,
): { obs: Record<string, AffineNorm>; action: AffineNorm } {
  const obs: Record<string, AffineNorm> = {};
  for (const f of config.obs) {
    const n = spec.obs[f.name];
    if (!n) throw new Error(`normalisation has no entry for observation feature '${f.name}'`);
    obs[f.name] = padAffine(affineFor(n.stats, n.mode, f.name), f.shape[f.shape.length - 1]!);
  }
  return { obs, action: padAffine(affineFor(spec.action.stats, spec.action.mode, "action"), config.actionDim) };
}

/**
 * The normalisation entry of a prompt feature of K prompts: `identity` (the one-hot is fed as is),
 * stats of the one-hot's range, so `stats.json` has an entry for every feature of the head. With
 * `vectors` (a prompt embedding, one `[D]` per prompt) the stats are those of the vectors, still
 * `identity`: the embedding is fed as the encoder gave it.
 */
export function promptNorm(k: number, key = "task_index", vectors?: readonly (readonly number[])[]): FeatureNorm {
  if (vectors !== undefined && vectors.length > 0) {
    const d = vectors[0]!.length;
    const n = vectors.length;
    const mean = Array.from({ length: d }, (_, j) => vectors.reduce((s, v) => s + v[j]!, 0) / n);
    const std = mean.map((m, j) => Math.sqrt(vectors.reduce((s, v) => s + (v[j]! - m) ** 2, 0) / n));
    const min = mean.map((_, j) => Math.min(...vectors.map((v) => v[j]!)));
    const max = mean.map((_, j) => Math.max(...vectors.map((v) => v[j]!)));
    return { key, mode: "identity", stats: { mean, std, min, max, count: n } };
  }
  return {
    key,
    mode: "identity",
    stats: {
      mean: Array<number>(k).fill(1 / k),
      std: Array<number>(k).fill(Math.sqrt((1 / k) * (1 - 1 / k))),
      min: Array<number>(k).fill(0),
      max: Array<number>(k).fill(1),
      count: k,
    },
  };
}

/** The raw (dataset) action dimension, before padding to `config.actionDim`. */
export function rawActionDim(spec: NormalizationSpec): number {
  return spec.action.stats.mean.length;
}
