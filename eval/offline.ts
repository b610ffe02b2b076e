/**
 * Offline evaluation of an exported policy on held-out demonstrations (`actionflow eval offline`).
 *
 * On every `stride`-th frame of the chosen episodes (chunks built as training builds them, see
 * `./frames.ts`) it measures, for the ONNX sample graph that will run on the robot:
 * - K sampled chunks per frame against the demonstration, in dataset units (`./metrics.ts`);
 * - a sweep of solvers x steps, each exported in memory, its error (one sample per frame, the same
 *   noise for every solver) and its ONNX latency per chunk;
 * and on the velocity graph (normalised units):
 * - the validation loss with fixed seeds: the objective's evaluation loss (flow matching with the
 *   time sampler and path the checkpoint was trained with; for regression heads their MSE to the
 *   chunk; for MeanFlow heads the flow matching of their instantaneous velocity);
 * - the log-likelihood of the demonstrated chunks by the CNF change of variables
 *   (`./likelihood.ts`), in nats per action dimension, in dataset units (the normalisation's
 *   Jacobian added) and in normalised units.
 *
 * A head that samples without noise (regression) gives one chunk per frame: it is measured with one
 * sample, and without likelihood or solver sweep. A baseline run (`baseline`) is measured on the same
 * frames with the same noise.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { openDataset, type OpenedDataset } from "../datasets/open.ts";
import {
  loadCheckpoint,
  normsFor,
  rawActionDim,
  resolveCheckpointDir,
  textEncoderBase,
} from "../policy/checkpoint/checkpoint.ts";
import { promptDim, promptFeatureOf } from "../policy/net/prompt.ts";
import { copyTextEncoder, textEncoderFilesIn } from "../policy/text/encoder.ts";
import type { Checkpoint } from "../policy/checkpoint/checkpoint.ts";
import { objectiveOf, prepareContext, type Objective } from "../policy/flow/objective.ts";
import { SOLVER_NAMES } from "../policy/flow/solvers.ts";
import { median } from "../policy/stats/quantiles.ts";
import type { SolverName } from "../policy/flow/solvers.ts";
import type { AffineNorm } from "../policy/normalize.ts";
import { exportOnnxBytes, featuresOf } from "../policy/onnx/export.ts";
import { imageNorm } from "../policy/normalize.ts";
import { CameraFrames } from "../datasets/video/cameras.ts";
import { Rng } from "../policy/random.ts";
import { OnnxPolicy, type OnnxPolicyOptions } from "../policy/runtime/onnx-policy.ts";
import { readEvalFrames } from "./frames.ts";
import type { EvalFrame, FrameFeature } from "./frames.ts";
import { flowLogLikelihood } from "./likelihood.ts";
import { ChunkErrorAccumulator } from "./metrics.ts";
import type { ChunkErrors } from "./metrics.ts";
import { chunkVelocityField, exportsDir, loadVelocityGraph, normalizePadded } from "./velocity.ts";
import type { VelocityGraph } from "./velocity.ts";

/** The solver steps of the default sweep. */
export const SWEEP_STEPS: readonly number[] = [1, 2, 4, 10, 20];

/** Options of {@link evaluateOffline}. */
export interface OfflineEvalOptions {
  /** Run folder, checkpoint folder or exported `policy.onnx` (its folder must hold the checkpoint). */
  policy: string;
  /** Dataset path (LeRobot folder or robomimic file). */
  dataset: string;
  /** Episode indices evaluated (e.g. the held-out ones). */
  episodes: readonly number[];
  /** Every `stride`-th frame of each episode (default 5). */
  stride?: number;
  /** Sampled chunks per frame, K (default 8). */
  samples?: number;
  /** Seed of every noise draw (default 0). */
  seed?: number;
  /** The sweep (default: every solver x {@link SWEEP_STEPS}); `[]` solvers or steps: none. */
  sweep?: { solvers: readonly SolverName[]; steps: readonly number[] };
  /** At most this many frames (evenly spaced) in the sweep (default 64). */
  sweepFrames?: number;
  /** Likelihood settings; `frames: 0` skips it. */
  likelihood?: { frames?: number; probes?: number; odeSteps?: number };
  /**
   * onnxruntime intra-op threads of the sample graphs (default 1: on a machine shared with other
   * work, one thread gives the steadiest latencies; a robot computer may use more).
   */
  threads?: number;
  /** onnxruntime execution providers of the sample graphs (default `["cpu"]`, see `OnnxPolicyOptions`). */
  executionProviders?: readonly string[];
  /** A baseline run (e.g. the regression head) evaluated on the same frames. */
  baseline?: string;
  /**
   * A camera policy on an episode without that camera's video: `error` (default) fails naming it,
   * `skip` leaves the episode out after a message.
   */
  missingVideo?: "error" | "skip";
  /** Frames kept with their sampled chunks for the report's plots (default 3). */
  exampleFrames?: number;
  /** Progress: `phase` and how far it is. */
  onProgress?: (phase: string, done: number, total: number) => void;
}

/** One point of the sweep. */
export interface SweepPoint {
  solver: SolverName;
  steps: number;
  /** Velocity evaluations per chunk. */
  nfe: number;
  /** Chunk MSE (one sample per frame), dataset units. */
  mse: number;
  /** Median ONNX latency of one chunk (batch 1), ms. */
  latencyMs: number;
}

/** The likelihood of the demonstrated chunks. */
export interface LikelihoodResult {
  /** Mean over frames of log p(chunk) / D, nats per action dim, dataset units. */
  perDim: number;
  /** The same in the normalised units the model works in. */
  perDimNormalized: number;
  /** Standard error of `perDim` (Hutchinson probes; 0 for the exact trace). */
  stdErr: number;
  method: "exact" | "hutchinson";
  /** D = H x raw action dim. */
  dims: number;
  frames: number;
}

/** The metrics of one policy on the frames. */
export interface PolicyMetrics extends ChunkErrors {
  /** The policy path as given. */
  policy: string;
  objective: string;
  /** Solver and steps of the sample graph evaluated. */
  solver: string;
  steps: number;
  /** Flow-matching (or regression) loss on the velocity graph, normalised units. */
  valLoss: number;
  /** Median latency of one chunk of the evaluated graph, ms (batch 1, `threads` intra-op threads). */
  latencyMs: number;
  threads: number;
  sweep: SweepPoint[];
  likelihood: LikelihoodResult | null;
}

/** Sampled chunks of one frame, for the report. */
export interface ExampleFrame {
  episode: number;
  frame: number;
  /** `[H][A]`, dataset units. */
  demo: number[][];
  /** K x `[H][A]`. */
  samples: number[][][];
  /** The baseline's first sample `[H][A]`, when there is a baseline. */
  baseline?: number[][];
}

/** The result of {@link evaluateOffline}. */
export interface OfflineEvalResult {
  metrics: PolicyMetrics;
  baseline?: PolicyMetrics;
  dataset: string;
  episodes: number[];
  stride: number;
  frames: number;
  horizon: number;
  actionDim: number;
  /** Names of the action dims (from the dataset, else `a0`, `a1`, ...). */
  jointNames: string[];
  examples: ExampleFrame[];
  /** The policy's run folder (where `run.json` and the checkpoints are), for training curves. */
  runDir: string | undefined;
  seconds: number;
}

/** The figures of one policy as `eval offline --json` prints them (flat; the likelihood's fields `null` without one). */
export function policyFigures(m: PolicyMetrics): Record<string, unknown> {
  return {
    policy: m.policy,
    objective: m.objective,
    valLoss: m.valLoss,
    mse: m.mse,
    l1: m.l1,
    firstActionL1: m.firstActionL1,
    bestOfK: m.bestOfK,
    spread: m.spread,
    perStepMse: m.perStepMse,
    perJointMse: m.perJointMse,
    sweep: m.sweep.map((p) => ({ solver: p.solver, steps: p.steps, nfe: p.nfe, mse: p.mse, latencyMs: p.latencyMs })),
    logLikelihoodPerDim: m.likelihood?.perDim ?? null,
    logLikelihoodStdErr: m.likelihood?.stdErr ?? null,
    logLikelihoodPerDimNormalized: m.likelihood?.perDimNormalized ?? null,
    logLikelihoodMethod: m.likelihood?.method ?? null,
    latencyMs: m.latencyMs,
    threads: m.threads,
    solver: m.solver,
    steps: m.steps,
  };
}

/** The result as `eval offline --json` prints it: the policy's figures, the frames evaluated, the baseline's figures. */
export function offlineFigures(r: OfflineEvalResult): Record<string, unknown> {
  return {
    ...policyFigures(r.metrics),
    frames: r.frames,
    episodes: r.episodes,
    stride: r.stride,
    horizon: r.horizon,
    actionDim: r.actionDim,
    ...(r.baseline ? { baseline: policyFigures(r.baseline) } : {}),
  };
}

/** Noise seed of sample k of frame f: distinct streams, the same for every policy and solver. */
export function noiseSeed(seed: number, frame: number, k: number): number {
  return (Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(frame + 1, 0x85ebca6b) ^ Math.imul(k + 1, 0xc2b2ae35)) >>> 0;
}

/** Runs the offline evaluation (see the module doc). */
export async function evaluateOffline(opts: OfflineEvalOptions): Promise<OfflineEvalResult> {
  const t0 = performance.now();
  const stride = opts.stride ?? 5;
  const K = opts.samples ?? 8;
  if (!Number.isInteger(K) || K < 1) throw new RangeError(`eval: samples must be a positive integer, got ${K}`);
  const threads = opts.threads ?? 1;
  const ort = { threads, ...(opts.executionProviders ? { executionProviders: opts.executionProviders } : {}) };
  const main = await openPolicy(opts.policy, ort);
  let base: OpenedPolicy | undefined;
  try {
    if (opts.baseline !== undefined) base = await openPolicy(opts.baseline, ort);
    return await evaluateOpened(main, base, { ...opts, stride, samples: K }, t0);
  } finally {
    await main.policy.release();
    await base?.policy.release();
  }
}

/** {@link evaluateOffline} once the policies are open (the caller releases them). */
async function evaluateOpened(
  main: OpenedPolicy,
  base: OpenedPolicy | undefined,
  opts: OfflineEvalOptions & { stride: number; samples: number },
  t0: number,
): Promise<OfflineEvalResult> {
  const { stride, samples: K } = opts;
  const H = main.ckpt.config.horizon;
  const actionKey = main.ckpt.normalization.action.key;
  if (base) {
    if (base.ckpt.config.horizon !== H)
      throw new Error(`--baseline ${opts.baseline}: horizon ${base.ckpt.config.horizon}, the policy's is ${H}`);
    if (base.ckpt.normalization.action.key !== actionKey)
      throw new Error(
        `--baseline ${opts.baseline}: action column '${base.ckpt.normalization.action.key}', the policy's is '${actionKey}'`,
      );
  }
  const opened = await openDataset(opts.dataset);
  let frames: EvalFrame[];
  let A: number;
  let jointNames: string[];
  let episodes = [...opts.episodes];
  try {
    const obs = new Map<string, FrameFeature>();
    for (const p of [main, ...(base ? [base] : [])])
      for (const f of featuresOf(p.ckpt)) {
        const size = f.rawShape.reduce((a, b) => a * b, 1);
        const image = f.kind === "image" ? { width: f.rawShape[1]!, height: f.rawShape[0]! } : undefined;
        const prev = obs.get(f.key);
        if (prev && (prev.size !== size || prev.image?.width !== image?.width))
          throw new Error(
            `--baseline ${opts.baseline}: feature '${f.key}' has another shape than the policy's ([${f.rawShape.join(", ")}])`,
          );
        obs.set(f.key, { key: f.key, size, ...(image ? { image } : {}) });
      }
    // a prompt-conditioned policy is given each frame's task
    const prompted = [main, ...(base ? [base] : [])].some((p) => p.policy.prompts !== undefined);
    const cameras = new CameraFrames(opened);
    const camList = [...obs.values()].flatMap((f) => (f.image ? [{ key: f.key, ...f.image }] : []));
    episodes = await cameras.usable(episodes, camList, opts.missingVideo ?? "error");
    const read = await readEvalFrames({
      dataset: opened.dataset,
      episodes,
      stride,
      horizon: H,
      action: actionKey,
      obs: [...obs.values()],
      images: (episode, key, size) => cameras.load(episode, key, size),
      ...(prompted ? { tasks: taskReader(opened, opts.dataset) } : {}),
    });
    frames = read.frames;
    A = read.actionDim;
    jointNames = namesOf(opened.dataset.features[actionKey], A);
  } finally {
    opened.dataset.close();
  }
  if (frames.length === 0) throw new Error(`eval: episodes ${episodes.join(", ")} have no frames`);
  if (rawActionDim(main.ckpt.normalization) !== A)
    throw new Error(
      `eval: the policy acts in ${rawActionDim(main.ckpt.normalization)} dims, column '${actionKey}' has ${A}`,
    );

  const exampleAt = spaced(frames.length, opts.exampleFrames ?? 3);
  const examples: ExampleFrame[] = exampleAt.map((f) => ({
    episode: frames[f]!.episode,
    frame: frames[f]!.frame,
    demo: rows(frames[f]!.chunk, A),
    samples: [],
  }));
  const seed = opts.seed ?? 0;
  const ctx: EvalContext = { frames, A, K, seed, opts, exampleAt, sweep: "run" };
  const metrics = await evaluatePolicy(main, ctx, "policy", (f, chunks) => {
    const e = examples[exampleAt.indexOf(f)];
    if (e) e.samples = chunks.map((c) => rows(c, A));
  });
  const baseline = base
    ? await evaluatePolicy(base, { ...ctx, sweep: "skip" }, "baseline", (f, chunks) => {
        const e = examples[exampleAt.indexOf(f)];
        if (e && chunks[0]) e.baseline = rows(chunks[0], A);
      })
    : undefined;
  return {
    metrics,
    ...(baseline ? { baseline } : {}),
    dataset: opts.dataset,
    episodes,
    stride,
    frames: frames.length,
    horizon: H,
    actionDim: A,
    jointNames,
    examples,
    runDir: main.runDir,
    seconds: (performance.now() - t0) / 1000,
  };
}

interface OpenedPolicy {
  path: string;
  ckpt: Checkpoint;
  policy: OnnxPolicy;
  /** Where `policy.velocity.onnx` would be. */
  exportsDir: string;
  runDir: string | undefined;
  /** The head's objective (how its loss is formed, whether it samples from noise). */
  objective: Objective;
}

async function openPolicy(path: string, ort: OnnxPolicyOptions): Promise<OpenedPolicy> {
  const dir = await exportsDir(path);
  const ckptDir = await resolveCheckpointDir(dir);
  if (!ckptDir) throw new Error(`${path}: no checkpoint found (expected a run folder with checkpoints/latest.json)`);
  const ckpt = await loadCheckpoint(ckptDir);
  const policy = await OnnxPolicy.load(path, ort);
  const runDir = basename(dirname(ckptDir)) === "checkpoints" ? dirname(dirname(ckptDir)) : undefined;
  return { path, ckpt, policy, exportsDir: dir, runDir, objective: objectiveOf(ckpt.config) };
}

interface EvalContext {
  /** The baseline skips the sweep: it is a question about the policy's own solver. */
  sweep: "run" | "skip";
  frames: EvalFrame[];
  A: number;
  K: number;
  seed: number;
  opts: OfflineEvalOptions;
  exampleAt: number[];
}

async function evaluatePolicy(
  p: OpenedPolicy,
  ctx: EvalContext,
  label: string,
  onExample: (frame: number, chunks: Float32Array[]) => void,
): Promise<PolicyMetrics> {
  const { frames, A, seed, opts } = ctx;
  const progress = opts.onProgress ?? ((): void => {});
  // a head that samples without noise gives the same chunk every time: no spread, density or solver
  const stochastic = p.objective.noiseInput;
  const K = stochastic ? ctx.K : 1;
  const H = p.ckpt.config.horizon;

  // K samples per frame on the sample graph.
  await p.policy.warmup({ runs: 2 });
  const acc = new ChunkErrorAccumulator(H, A);
  const times: number[] = [];
  for (let f = 0; f < frames.length; f++) {
    const chunks: Float32Array[] = [];
    for (let k = 0; k < K; k++) {
      const s = performance.now();
      chunks.push(
        await p.policy.sampleChunk(frames[f]!.obs, { seed: noiseSeed(seed, f, k), ...promptOf(p, frames[f]!) }),
      );
      times.push(performance.now() - s);
    }
    acc.add(chunks, frames[f]!.chunk);
    if (ctx.exampleAt.includes(f)) onExample(f, chunks);
    progress(`${label}: samples`, f + 1, frames.length);
  }
  const errors = acc.result();

  const prompts = await promptVectors(p, frames);
  const graph = await loadVelocityGraph(p.ckpt, p.exportsDir);
  let valLoss: number;
  let likelihood: LikelihoodResult | null = null;
  try {
    valLoss = await velocityLoss(graph, p, frames, prompts, seed, (d) => progress(`${label}: loss`, d, frames.length));
    const llFrames = opts.likelihood?.frames ?? 8;
    if (stochastic && llFrames > 0)
      likelihood = await chunkLikelihood(graph, p, frames, prompts, llFrames, seed, opts, label);
  } finally {
    await graph.release();
  }

  const sweep: SweepPoint[] = [];
  const solvers = !stochastic || ctx.sweep === "skip" ? [] : (opts.sweep?.solvers ?? SOLVER_NAMES);
  const steps = opts.sweep?.steps ?? SWEEP_STEPS;
  if (solvers.length > 0 && steps.length > 0) {
    const at = spaced(frames.length, opts.sweepFrames ?? 64);
    const dir = await mkdtemp(join(tmpdir(), "actionflow-sweep-"));
    try {
      // a text encoder policy's sweep graphs need the encoder beside them
      const encoderBase = p.policy.anyPrompt ? await textEncoderBase(p.ckpt.dir) : undefined;
      if (encoderBase !== undefined) await copyTextEncoder(textEncoderFilesIn(encoderBase), dir);
      let done = 0;
      for (const solver of solvers) {
        for (const n of steps) {
          sweep.push(
            await sweepPoint(
              p.ckpt,
              dir,
              { solver, steps: n, threads: opts.threads ?? 1, providers: opts.executionProviders },
              frames,
              at,
              A,
              seed,
            ),
          );
          progress(`${label}: sweep`, ++done, solvers.length * steps.length);
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return {
    policy: p.path,
    objective: p.policy.objective,
    solver: p.policy.solver,
    steps: p.policy.steps,
    valLoss,
    latencyMs: median(times),
    threads: ctx.opts.threads ?? 1,
    ...errors,
    sweep,
    likelihood,
  };
}

/**
 * The objective's evaluation loss on the velocity graph (see `Objective.evaluationInputs`), with the
 * checkpoint's loss settings and a seeded draw per frame.
 */
async function velocityLoss(
  graph: VelocityGraph,
  p: OpenedPolicy,
  frames: EvalFrame[],
  prompts: PromptVectors | undefined,
  seed: number,
  progress: (done: number) => void,
): Promise<number> {
  const cfg = p.ckpt.config;
  const { horizon: H, actionDim: Am } = cfg;
  const norms = normsFor(p.ckpt.normalization, cfg);
  const rawA = rawActionDim(p.ckpt.normalization);
  const prep = prepareContext(cfg, p.ckpt.loss);
  const features = featuresOf(p.ckpt);
  const isPad = new Uint8Array(H);
  const batch = 32;
  let sum = 0;
  for (let start = 0; start < frames.length; start += batch) {
    const part = frames.slice(start, start + batch);
    const n = part.length;
    const obs = obsBatch(part, features, norms.obs, prompts);
    const xt = new Float32Array(n * H * Am);
    const t = new Float32Array(n * H);
    const target = new Float32Array(n * H * Am);
    part.forEach((fr, b) => {
      const actions = normalizePadded(fr.chunk, norms.action, rawA);
      const rng = new Rng((seed + 7919 + start + b) >>> 0);
      const x = p.objective.evaluationInputs({ size: 1, actions, isPad }, prep, rng);
      xt.set(x.xt, b * H * Am);
      t.set(x.t, b * H);
      target.set(x.target, b * H * Am);
    });
    const v = await graph.run(obs, xt, t, n);
    for (let i = 0; i < v.length; i++) sum += (v[i]! - target[i]!) ** 2;
    progress(Math.min(frames.length, start + batch));
  }
  return sum / (frames.length * H * Am);
}

async function chunkLikelihood(
  graph: VelocityGraph,
  p: OpenedPolicy,
  frames: EvalFrame[],
  prompts: PromptVectors | undefined,
  count: number,
  seed: number,
  opts: OfflineEvalOptions,
  label: string,
): Promise<LikelihoodResult> {
  const cfg = p.ckpt.config;
  const norms = normsFor(p.ckpt.normalization, cfg);
  const rawA = rawActionDim(p.ckpt.normalization);
  const features = featuresOf(p.ckpt);
  const D = cfg.horizon * rawA;
  // log p_raw(a) = log p_norm(y) + sum of log|scale| over the chunk's dims.
  let logJac = 0;
  for (let i = 0; i < rawA; i++) logJac += Math.log(Math.abs(norms.action.scale[i]!));
  logJac *= cfg.horizon;
  const at = spaced(frames.length, count);
  let sumNorm = 0;
  let varSum = 0;
  let method: "exact" | "hutchinson" = "exact";
  for (const [i, f] of at.entries()) {
    const fr = frames[f]!;
    const obs = obsBatch([fr], features, norms.obs, prompts);
    const y = normalizePadded(fr.chunk, norms.action, rawA);
    const x1 = new Float64Array(D);
    for (let h = 0; h < cfg.horizon; h++) for (let j = 0; j < rawA; j++) x1[h * rawA + j] = y[h * cfg.actionDim + j]!;
    const r = await flowLogLikelihood(chunkVelocityField(graph, obs, rawA), x1, {
      steps: opts.likelihood?.odeSteps ?? 16,
      probes: opts.likelihood?.probes ?? 4,
      seed: noiseSeed(seed, f, 1000),
    });
    method = r.method;
    sumNorm += r.logLikelihood;
    varSum += r.stdErr * r.stdErr;
    opts.onProgress?.(`${label}: likelihood`, i + 1, at.length);
  }
  const n = at.length;
  const perDimNormalized = sumNorm / n / D;
  return {
    perDim: perDimNormalized + logJac / D,
    perDimNormalized,
    stdErr: Math.sqrt(varSum) / n / D,
    method,
    dims: D,
    frames: n,
  };
}

async function sweepPoint(
  ckpt: Checkpoint,
  dir: string,
  how: { solver: SolverName; steps: number; threads: number; providers: readonly string[] | undefined },
  frames: EvalFrame[],
  at: number[],
  A: number,
  seed: number,
): Promise<SweepPoint> {
  const { solver, steps, threads, providers } = how;
  const built = await exportOnnxBytes(ckpt, { steps, solver });
  const file = join(dir, `${solver}-${steps}.onnx`);
  await writeFile(file, built.sample);
  const policy = await OnnxPolicy.load(file, { threads, ...(providers ? { executionProviders: providers } : {}) });
  try {
    await policy.warmup({ runs: 2 });
    const acc = new ChunkErrorAccumulator(ckpt.config.horizon, A);
    const times: number[] = [];
    for (const f of at) {
      const s = performance.now();
      const c = await policy.sampleChunk(frames[f]!.obs, {
        seed: noiseSeed(seed, f, 0),
        ...promptOf({ policy }, frames[f]!),
      });
      times.push(performance.now() - s);
      acc.add([c], frames[f]!.chunk);
    }
    return { solver, steps, nfe: built.nfe, mse: acc.result().mse, latencyMs: median(times) };
  } finally {
    await policy.release();
  }
}

/** Normalised, padded observations of frames for the velocity graph, by model feature name. */
function obsBatch(
  part: readonly EvalFrame[],
  features: ReturnType<typeof featuresOf>,
  norms: Record<string, AffineNorm>,
  prompts?: PromptVectors,
): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  if (prompts !== undefined) {
    const data = new Float32Array(part.length * prompts.dim);
    part.forEach((fr, b) => data.set(prompts.byTask.get(fr.task!)!, b * prompts.dim));
    out[prompts.feature] = data;
  }
  for (const f of features) {
    const rawD = f.rawShape[f.rawShape.length - 1]!;
    const size = f.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(part.length * size);
    part.forEach((fr, b) => {
      const raw = fr.obs[f.key];
      if (!raw) throw new Error(`eval: frame ${fr.frame} of episode ${fr.episode} has no '${f.key}'`);
      // A camera's normalisation is of pixel / 255 (see policy/onnx/graphs.ts).
      const n = f.kind === "image" ? imageNorm(norms[f.name]!) : norms[f.name]!;
      data.set(normalizePadded(raw, n, rawD), b * size);
    });
    out[f.name] = data;
  }
  return out;
}

/** The prompt vectors of a prompt-conditioned head for the frames' tasks (the velocity graph's input). */
interface PromptVectors {
  /** The head's prompt feature (its model name). */
  feature: string;
  dim: number;
  /** The vector `[dim]` by task string. */
  byTask: Map<string, Float32Array>;
}

/** The frame's task as the request's prompt, for a policy conditioned on one (nothing otherwise). */
function promptOf(p: { policy: Pick<OnnxPolicy, "prompts"> }, frame: EvalFrame): { prompt?: string } {
  if (p.policy.prompts === undefined) return {};
  if (frame.task === undefined)
    throw new Error(
      `eval: frame ${frame.frame} of episode ${frame.episode} has no task for the prompt-conditioned policy`,
    );
  return { prompt: frame.task };
}

/** The vector the head sees for each distinct task of the frames; undefined for a head without a prompt. */
async function promptVectors(p: OpenedPolicy, frames: readonly EvalFrame[]): Promise<PromptVectors | undefined> {
  const pf = promptFeatureOf(p.ckpt.config);
  if (pf === undefined) return undefined;
  const byTask = new Map<string, Float32Array>();
  for (const fr of frames) {
    const { prompt } = promptOf(p, fr);
    if (prompt !== undefined && !byTask.has(prompt)) byTask.set(prompt, await p.policy.promptVector(prompt));
  }
  return { feature: pf.name, dim: promptDim(pf), byTask };
}

/**
 * Each frame's task strings of a dataset's episode: a LeRobot dataset's `meta/tasks`; a format
 * without tasks (robomimic) fails naming the file.
 */
function taskReader(opened: OpenedDataset, path: string): (episode: number) => Promise<readonly string[]> {
  if (opened.format !== "lerobot")
    throw new Error(
      `eval: the policy is conditioned on a task prompt but ${path} (${opened.format}) has no task strings to give it`,
    );
  return (episode) => opened.dataset.readTasks(episode);
}

/** `count` indices spread evenly over 0..n-1 (all of them when n <= count). */
export function spaced(n: number, count: number): number[] {
  if (count <= 0) return [];
  if (n <= count) return Array.from({ length: n }, (_, i) => i);
  return Array.from({ length: count }, (_, i) => Math.floor(((i + 0.5) * n) / count));
}

function rows(chunk: Float32Array, A: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < chunk.length; i += A) out.push(Array.from(chunk.subarray(i, i + A)));
  return out;
}

/** The action dims' names from a feature's `names` (flat list of the right length), else a0, a1, ... */
function namesOf(feature: unknown, A: number): string[] {
  const names = (feature as { names?: unknown } | undefined)?.names;
  if (Array.isArray(names) && names.length === A && names.every((n) => typeof n === "string")) return names;
  return Array.from({ length: A }, (_, i) => `a${i}`);
}
