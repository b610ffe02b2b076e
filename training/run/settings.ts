/**
 * The settings of a training run: the `--config` file, the fully resolved settings stored in run.json
 * (`RunInput`), how they are layered (defaults < stored run.json < config file < explicit options),
 * what may differ on resume, and the head config they give for a dataset.
 */
import { z } from "zod";
import type { EpisodeDataset } from "../../datasets/episodes.ts";
import { DEFAULT_LOSS_SETTINGS } from "../../policy/flow/objective.ts";
import type { PathConfig } from "../../policy/flow/path.ts";
import { PathSchema } from "../../policy/flow/path.ts";
import type { TimeSamplerConfig } from "../../policy/flow/time.ts";
import { TimeSamplerSchema } from "../../policy/flow/time.ts";
import { parseValue, readJsonFile } from "../../policy/io/json.ts";
import type { Arch, HeadConfig, Objective } from "../../policy/net/config.ts";
import {
  ArchSchema,
  MlpSchema,
  ObjectiveSchema,
  TransformerSchema,
  VisionSchema,
  parseHeadConfig,
} from "../../policy/net/config.ts";
import type { NormMode } from "../../policy/normalize.ts";
import { NormModeSchema } from "../../policy/normalize.ts";
import type { OptimConfig } from "../optim.ts";
import { DEFAULT_OPTIM, OptimSchema } from "../optim.ts";
import type { ObsSpec, PaddingMode } from "../windows.ts";
import { ObsSpecSchema, PaddingSchema } from "../windows.ts";
import { normalizePrompt, promptDim } from "../../policy/net/prompt.ts";
import { readPromptTable, tableVectors } from "../../policy/text/embeddings.ts";
import { PromptEncoder } from "../../policy/text/encoder.ts";

/**
 * The `--config` JSON file: head settings (as in `HeadConfig`, without `obs`) and training settings,
 * all optional. Unknown keys are refused (a typo must not silently fall back to a default).
 */
export const RunConfigSchema = z.strictObject({
  arch: ArchSchema.optional(),
  objective: ObjectiveSchema.optional(),
  horizon: z.number().int().positive().optional(),
  actionDim: z.number().int().positive().optional(),
  transformer: TransformerSchema.partial().strict().optional(),
  mlp: MlpSchema.partial().strict().optional(),
  /** The image encoder of camera features (see `VisionSchema`). */
  vision: VisionSchema.partial().strict().optional(),
  /** The size camera features are decoded to, `WxH` (default: the dataset's). */
  imageSize: z.string().optional(),
  /** Random-shift augmentation of camera images in pixels (default 0). */
  imageShift: z.number().int().min(0).optional(),
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
  padding: PaddingSchema.optional(),
  /** Training-time real-time chunking: the largest clean action prefix (steps) to train on (see `HeadConfig`). */
  rtcMaxDelay: z.number().int().min(0).optional(),
  /** The actions per chunk the export recommends to runtimes (see `HeadConfig.nActionSteps`). */
  nActionSteps: z.number().int().positive().optional(),
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
  /** Condition on the task prompt: `auto` (default: when the dataset has several tasks), `on` or `off`. */
  prompt: z.enum(["auto", "on", "off"]).optional(),
});
/** The content of a `--config` file. */
export type RunConfig = z.infer<typeof RunConfigSchema>;

/** Parses a `--config` object; errors name `source` and the offending field. */
export function parseRunConfig(input: unknown, source = "config"): RunConfig {
  return parseValue(input, RunConfigSchema, `${source}: invalid training config`);
}

/** Reads and parses a `--config` JSON file; errors name the file and the offending field. */
export async function readRunConfig(file: string): Promise<RunConfig> {
  return readJsonFile(file, RunConfigSchema, { missing: "the --config file", invalid: "an invalid training config" });
}

/** Every setting of a run, fully resolved (stored as `input` in run.json). */
export const RunInputSchema = z.object({
  arch: ArchSchema,
  objective: ObjectiveSchema,
  horizon: z.number().int().positive(),
  actionDim: z.number().int().positive(),
  transformer: TransformerSchema,
  mlp: MlpSchema,
  /** Runs stored before cameras existed have the default encoder (and no camera). */
  vision: VisionSchema.prefault({}),
  /** Random-shift augmentation of camera images, pixels (0 without cameras). */
  imageShift: z.number().int().min(0).default(0),
  obs: z.array(ObsSpecSchema),
  obsDims: z.record(z.string(), z.number().int().positive()),
  action: z.string(),
  normalization: z.object({ obs: z.record(z.string(), NormModeSchema), action: NormModeSchema }),
  steps: z.number().int().positive(),
  batch: z.number().int().positive(),
  /** Runs stored before this setting existed trained with the loss masked past episode ends. */
  padding: PaddingSchema.default("mask"),
  /** Runs stored before this setting existed trained without a prefix. */
  rtcMaxDelay: z.number().int().min(0).default(0),
  /** The actions per chunk the export recommends (absent: none; runtimes use their own default). */
  nActionSteps: z.number().int().positive().optional(),
  seed: z.number().int(),
  valEpisodes: z.union([z.string(), z.number()]),
  optim: OptimSchema,
  timeSampler: TimeSamplerSchema,
  path: PathSchema,
  checkpointEvery: z.number().int().positive(),
  valEvery: z.number().int().positive(),
  keep: z.number().int().positive(),
  valWindows: z.number().int().positive(),
});
/** Every setting of a run, fully resolved (see {@link RunInputSchema}). */
export type RunInput = z.infer<typeof RunInputSchema>;

/** The settings a caller may give a run (each optional: defaults, or run.json on resume). */
export interface RunSettings {
  /** Settings from a `--config` file (see {@link RunConfigSchema}). */
  config?: RunConfig;
  steps?: number;
  batch?: number;
  horizon?: number;
  /** Loss on chunk steps past an episode's end (default `hold`; see `WindowSourceOptions.padding`). */
  padding?: PaddingMode;
  /** Training-time real-time chunking: the largest clean action prefix to train on (default 0: none). */
  rtcMaxDelay?: number;
  /**
   * The actions per chunk the export recommends to runtimes that are not told (`HeadConfig.nActionSteps`);
   * default {@link DEFAULT_IMAGE_N_ACTION_STEPS} for a policy with cameras, else none.
   */
  nActionSteps?: number;
  seed?: number;
  /** Validation episodes: `"8:10"`, `"3,7"`, a fraction or a count (see `splitEpisodes`). */
  valEpisodes?: string | number;
  /** `name=column,...` (default `state=observation.state` plus `env=observation.environment_state` when present). */
  obs?: string | Record<string, string>;
  /** The action column (default `action`). */
  action?: string;
  /** The size camera features are decoded to, `WxH` (default: each camera's own size in the dataset). */
  imageSize?: string;
  /** Random-shift augmentation of camera images in pixels (default {@link DEFAULT_IMAGE_SHIFT} with cameras). */
  imageShift?: number;
  arch?: Arch;
  objective?: Objective;
  lr?: number;
  normalization?: { obs?: NormMode | Record<string, NormMode>; action?: NormMode };
  checkpointEvery?: number;
  valEvery?: number;
  keep?: number;
  valWindows?: number;
  /**
   * Condition the head on each frame's task prompt (a closed vocabulary of the dataset's task
   * strings, see `policy/net/prompt.ts`): `auto` (default) when the dataset has more than one
   * distinct task, `on` whenever it has tasks, `off` never (the control without the prompt).
   */
  prompt?: PromptMode;
  /**
   * The prompt as an embedding from a file (`--task-embeddings`): a safetensors file with one `[D]`
   * vector per prompt, named by the prompt (see `policy/text/embeddings.ts`); every task string of
   * the dataset must be there. Implies `prompt` `on`.
   */
  taskEmbeddings?: string;
  /**
   * The prompt as an embedding from an ONNX text encoder and its `tokenizer.json` (`--text-encoder`,
   * `--tokenizer`; see `policy/text/encoder.ts`), L2-normalised unless `normalize` is false; the run
   * folder keeps a copy of both, and the policy then takes any prompt. Implies `prompt` `on`.
   */
  textEncoder?: { model: string; tokenizer: string; normalize?: boolean };
}

/** A prompt feature's embedding as a run resolves it (see {@link promptEmbeddingFor}). */
export type PromptEmbedding = NonNullable<ObsSpec["promptEmbedding"]>;

/**
 * The embedding of the dataset's prompt vocabulary (`promptVocabulary(tasks)`, in that order) the
 * settings ask for: the `taskEmbeddings` file's vectors (a task the file lacks is an error naming it
 * and the file) or the `textEncoder`'s; undefined when they ask for neither (the one-hot). Throws
 * when both are given, with `prompt` `off`, or when the dataset has no task strings.
 */
export async function promptEmbeddingFor(
  opts: Pick<RunSettings, "taskEmbeddings" | "textEncoder" | "prompt" | "config">,
  tasks: readonly string[],
): Promise<PromptEmbedding | undefined> {
  const { taskEmbeddings: file, textEncoder: enc } = opts;
  if (file === undefined && enc === undefined) return undefined;
  if (file !== undefined && enc !== undefined)
    throw new Error("--task-embeddings and --text-encoder are two sources of the prompt embedding: give one");
  const flag = file !== undefined ? "--task-embeddings" : "--text-encoder";
  if ((opts.config?.prompt ?? opts.prompt) === "off")
    throw new Error(`${flag} embeds the task prompt, which --no-prompt (prompt 'off') drops: give one or the other`);
  const vocab = promptVocabulary(tasks);
  if (vocab.length === 0) throw new Error(`${flag}: the dataset has no task strings to embed`);
  const toNumbers = (vs: readonly Float32Array[]): number[][] => vs.map((v) => Array.from(v));
  if (file !== undefined)
    return { source: "table", vectors: toNumbers(tableVectors(await readPromptTable(file), vocab)) };
  const normalize = enc!.normalize ?? true;
  const encoder = await PromptEncoder.load(enc!, { normalize });
  try {
    return { source: "encoder", normalize, vectors: toNumbers(await encoder.embed(vocab)) };
  } finally {
    await encoder.release();
  }
}

/** When a run conditions on the task prompt (see {@link RunSettings.prompt}). */
export type PromptMode = "auto" | "on" | "off";

/** The model name of the prompt feature a run adds. */
export const PROMPT_FEATURE = "prompt";

/**
 * The vocabulary of a dataset's task strings (by task index): each distinct prompt once (matched
 * normalised, the first spelling kept), in task-index order.
 */
export function promptVocabulary(tasks: readonly string[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const t of tasks) {
    if (typeof t !== "string" || t.trim() === "") continue;
    const k = normalizePrompt(t);
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(t);
  }
  return out;
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

/**
 * Default batch: 16, so the default transformer's run stays within minutes on 2 idle cores (G1,
 * sim tasks). Batch 8 halves the time but trains visibly worse flow heads: on the avoid task
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
/**
 * Default random shift of camera images: none. On the simulator's fixed camera a 4-pixel shift (DrQ's
 * on 84 px images) cost reach success (40 against 50 over 50 seeded episodes, see docs/cameras.md);
 * a real camera that moves between sessions may want `--image-shift 4` (not measured here).
 */
export const DEFAULT_IMAGE_SHIFT = 0;
/**
 * The actions per chunk an image policy recommends to runtimes (`sim eval`'s own default is 8). An
 * image policy re-perceives the scene at every request, and each request redraws where it thinks the
 * target is: on reach (vision only, 50 seeded episodes) executing 16 actions per chunk instead of 8
 * took three trainings from 88 / 92 / 90 to 94 / 96 / 96 (see docs/cameras.md).
 */
export const DEFAULT_IMAGE_N_ACTION_STEPS = 16;
/**
 * Default run length: 4000 steps. At 2000 the flow head's chunks are still underfitted: on `fork`
 * a bad training seed samples chunks that turn too late for the gap (seed 1: 80 at 2000 steps, 98
 * at 4000, same data and evaluation; see README), and training twice as long costs twice the time.
 */
export const DEFAULT_STEPS = 4000;

/** Settings that may change on resume. */
const RESUMABLE_KEYS = new Set<keyof RunInput>(["steps", "checkpointEvery", "valEvery", "keep"]);

/** JSON with object keys sorted, so two settings compare equal whatever their key order. */
export const stable = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === "object" && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
      : x,
  );

/**
 * Throws naming `runFile` and every differing setting when `input` changes the mathematics of the
 * stored run (anything but `steps`, the checkpoint/validation cadence and `keep`).
 */
export function checkResumable(stored: RunInput, input: RunInput, runFile: string): void {
  const diffs: string[] = [];
  for (const k of Object.keys(input) as (keyof RunInput)[]) {
    if (RESUMABLE_KEYS.has(k)) continue;
    if (stable(input[k]) !== stable(stored[k]))
      diffs.push(`${k}: run.json has ${stable(stored[k])}, given ${stable(input[k])}`);
  }
  if (diffs.length) throw new Error(`${runFile}: cannot resume with different settings: ${diffs.join("; ")}`);
}

/** Layers the settings: defaults < stored < config file < explicit options, for a dataset with these features. */
export function resolveInput(
  opts: RunSettings,
  stored: RunInput | undefined,
  features: EpisodeDataset["features"],
  tasks: readonly string[] = [],
  embedding?: PromptEmbedding,
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
  let obs = obsGiven !== undefined ? parseObsSpec(obsGiven) : (stored?.obs ?? defaultObs());
  const promptMode = pick<PromptMode>(c.prompt, opts.prompt);
  if (!stored || promptMode !== undefined || embedding !== undefined) {
    obs = obs.filter((o) => o.prompts === undefined);
    const vocab = promptVocabulary(tasks);
    const mode = embedding !== undefined ? "on" : (promptMode ?? "auto");
    if (mode === "on" && vocab.length === 0)
      throw new Error("prompt 'on' (--prompt-feature): the dataset has no task strings to condition on");
    if (mode === "on" || (mode === "auto" && vocab.length > 1)) {
      if (obs.some((o) => o.name === PROMPT_FEATURE))
        throw new Error(`--obs: the name '${PROMPT_FEATURE}' is taken by the task prompt feature; rename the column's`);
      obs.push({
        name: PROMPT_FEATURE,
        key: "task_index",
        prompts: vocab,
        ...(embedding !== undefined ? { promptEmbedding: embedding } : {}),
      });
    }
  }
  const imageSize = pick<string>(c.imageSize, opts.imageSize);
  if (!stored || obsGiven !== undefined || imageSize !== undefined)
    obs = obs.map((o) => withCamera(o, features[o.key], imageSize));
  const hasCamera = obs.some((o) => o.image !== undefined);
  const steps = pick(stored?.steps, c.steps, opts.steps) ?? DEFAULT_STEPS;
  const normObsGiven = pick<NormMode | Record<string, NormMode>>(c.normalization?.obs, opts.normalization?.obs);
  const normObs: Record<string, NormMode> = {};
  for (const o of obs) {
    if (o.prompts !== undefined) {
      normObs[o.name] = "identity";
      continue;
    }
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
  const horizon = pick(stored?.horizon, c.horizon, opts.horizon) ?? 50;
  const valEvery =
    pick(stored?.valEvery, c.valEvery, opts.valEvery) ?? Math.min(250, Math.max(1, Math.ceil(steps / 8)));
  return {
    arch: pick(stored?.arch, c.arch, opts.arch) ?? "transformer",
    objective: pick(stored?.objective, c.objective, opts.objective) ?? "flow",
    horizon,
    actionDim: pick(stored?.actionDim, c.actionDim) ?? 32,
    transformer: TransformerSchema.parse({ ...stored?.transformer, ...c.transformer }),
    mlp: MlpSchema.parse({ ...stored?.mlp, ...c.mlp }),
    vision: VisionSchema.parse({ ...stored?.vision, ...c.vision }),
    imageShift: hasCamera ? (pick(stored?.imageShift, c.imageShift, opts.imageShift) ?? DEFAULT_IMAGE_SHIFT) : 0,
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
    rtcMaxDelay: pick(stored?.rtcMaxDelay, c.rtcMaxDelay, opts.rtcMaxDelay) ?? 0,
    ...nActionStepsOf(pick(stored?.nActionSteps, c.nActionSteps, opts.nActionSteps), hasCamera, horizon),
    seed: pick(stored?.seed, c.seed, opts.seed) ?? 0,
    valEpisodes: pick<string | number>(stored?.valEpisodes, c.valEpisodes, opts.valEpisodes) ?? "0.1",
    optim,
    timeSampler: pick<TimeSamplerConfig>(stored?.timeSampler, c.timeSampler) ?? DEFAULT_LOSS_SETTINGS.timeSampler,
    path: pick<PathConfig>(stored?.path, c.path) ?? DEFAULT_LOSS_SETTINGS.path,
    checkpointEvery: pick(stored?.checkpointEvery, c.checkpointEvery, opts.checkpointEvery) ?? 500,
    valEvery,
    keep: pick(stored?.keep, c.keep, opts.keep) ?? 2,
    valWindows: pick(stored?.valWindows, c.valWindows, opts.valWindows) ?? 256,
  };
}

/**
 * The run's recommended actions per chunk: the one given (at most the horizon), else for a policy
 * with cameras {@link DEFAULT_IMAGE_N_ACTION_STEPS} (within the horizon), else none.
 */
function nActionStepsOf(given: number | undefined, hasCamera: boolean, horizon: number): { nActionSteps?: number } {
  if (given !== undefined) {
    if (given > horizon) throw new Error(`nActionSteps ${given} must be at most the horizon ${horizon}`);
    return { nActionSteps: given };
  }
  return hasCamera ? { nActionSteps: Math.min(DEFAULT_IMAGE_N_ACTION_STEPS, horizon) } : {};
}

/**
 * `o` as a camera when its column is a video or image feature: decoded to `size` (`WxH`) or the
 * feature's own `[height, width, 3]`; other columns pass through.
 */
function withCamera(
  o: ObsSpec,
  f: { dtype: string; shape: readonly number[] } | undefined,
  size: string | undefined,
): ObsSpec {
  if (o.prompts !== undefined || !f || (f.dtype !== "video" && f.dtype !== "image")) {
    const { image: _drop, ...rest } = o;
    return rest;
  }
  if (size === undefined) {
    if (f.shape.length !== 3 || f.shape[2] !== 3)
      throw new Error(
        `camera '${o.key}' has shape [${f.shape.join(", ")}], not [height, width, 3]; give --image-size WxH`,
      );
    return { ...o, image: { width: f.shape[1]!, height: f.shape[0]! } };
  }
  const m = /^(\d+)x(\d+)$/.exec(size.trim());
  const width = Number(m?.[1]);
  const height = Number(m?.[2]);
  if (!m || !(width > 0) || !(height > 0)) throw new Error(`--image-size: '${size}' is not WxH (e.g. 96x72)`);
  return { ...o, image: { width, height } };
}

/**
 * The head config the settings give for a dataset with these `features`, and each obs feature's model
 * shape (`[d]` or `[n, d]`, last dim padded to `obsDims`). Throws naming `datasetPath` and the column
 * when a column is missing, not float, not `[D]`/`[N, D]`, or wider than the model's dim.
 */
export function resolveHead(
  input: RunInput,
  dataset: Pick<EpisodeDataset, "features" | "fps">,
  datasetPath: string,
  source: string,
): { head: HeadConfig; obsShapes: Record<string, number[]> } {
  const { features } = dataset;
  const columnDim = (key: string, role: string): { dim: number; shape: readonly number[] } => {
    const f = features[key];
    if (!f)
      throw new Error(
        `${datasetPath}: ${role} column '${key}' not in the dataset (columns: ${Object.keys(features).join(", ")})`,
      );
    if (f.shape.length === 0 || f.shape.length > 2)
      throw new Error(`${datasetPath}: ${role} column '${key}' has shape [${f.shape.join(", ")}], need [D] or [N, D]`);
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
    if (o.prompts !== undefined) {
      obsShapes[o.name] = [promptDim({ prompts: o.prompts, promptEmbedding: o.promptEmbedding })];
      continue;
    }
    if (o.image !== undefined) {
      if (!features[o.key]) columnDim(o.key, `obs '${o.name}'`);
      obsShapes[o.name] = [o.image.height, o.image.width, 3];
      continue;
    }
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
      obs: input.obs.map((o) => ({
        name: o.name,
        key: o.key,
        shape: obsShapes[o.name],
        ...(o.prompts !== undefined ? { prompts: o.prompts } : {}),
        ...(o.promptEmbedding !== undefined ? { promptEmbedding: o.promptEmbedding } : {}),
        ...(o.image !== undefined ? { kind: "image" as const } : {}),
      })),
      transformer: input.transformer,
      mlp: input.mlp,
      vision: input.vision,
      rtcMaxDelay: input.rtcMaxDelay,
      ...(dataset.fps ? { fps: dataset.fps } : {}),
      ...(input.nActionSteps !== undefined ? { nActionSteps: input.nActionSteps } : {}),
    },
    source,
  );
  return { head, obsShapes };
}
