/**
 * The two exported graphs, built from the network description through `OnnxOps`:
 *
 * - `sample`: raw observations, noise and an action prefix -> de-normalised action chunk.
 *   Normalisation maps are baked in as constants, the observation is encoded once, and the chosen
 *   solver is unrolled over a uniform grid of `steps` steps, every step reusing the encoding.
 * - `velocity`: one evaluation of the velocity field on normalised values, for own solvers.
 *
 * Sample-graph inputs (batch is the `batch` dim_param):
 * - `obs.<name>` `[batch, ...rawShape]` float32, raw (dataset units), one per observation feature;
 *   `rawShape` is the model shape with its last dim set to the dataset's (unpadded) dim.
 * - A camera (`kind: "image"`): `obs.<name>` uint8 RGB `[batch, height, width, 3]`; the graph casts
 *   it, applies the per-channel normalisation of pixel / 255 and runs the head's image encoder.
 * - A head conditioned on a task prompt (`policy/net/prompt.ts`): `obs.<name>` `[batch]` int64, the
 *   prompt's index in the vocabulary listed by the metadata key `actionflow.prompts`; a Gather over
 *   an identity constant turns it into the one-hot the head was trained on. A head whose prompt is
 *   an embedding (a `--task-embeddings` table or a text encoder) takes `obs.<name>` float32
 *   `[batch, D]` instead, the embedding the runtime fills (as it is: not normalised); the metadata
 *   says where it comes from (`embedding`: the table's vectors, or the encoder's folder).
 * - `noise` `[batch, H, A]` float32, N(0, I) in the model's normalised action space (A = model
 *   action dim, padded dims included). Required for flow heads: the caller draws it (the
 *   actionflow runtime with a seeded `Rng`), so a chunk is reproducible. Absent for regression heads.
 * - `prefix` `[batch, H, rawA]` float32, raw actions, and `prefix_len` `[batch]` int64: real-time
 *   chunking. Both are required (onnxruntime-node ignores feeds of initializer-backed inputs, so
 *   ONNX "inputs with defaults" cannot be used): pass zeros and 0 for no prefix. The first `prefix_len` steps
 *   of the chunk are inpainted by replacement: after every solver step they are overwritten with
 *   the path value `t * x1_prefix + (1 - t) * x0` at the step's end time (x0 = the noise), so at
 *   t = 1 they equal the prefix exactly and the rest of the chunk is sampled consistently with it.
 *   This needs no training-time support and works with every flow head (`actionflow.prefix` =
 *   `replace`). A head trained with a prefix (`rtcMaxDelay` > 0, training-time RTC) instead sees the
 *   prefix clean at per-token time 1 in every evaluation, as in training (`actionflow.prefix` =
 *   `clean`, `actionflow.rtc_max_delay` = the largest prefix it was trained on).
 *
 * Output `actions` `[batch, H, rawA]` float32, in dataset units: the padded action dims are cut off.
 */
import type { ActionHead, VelocityOptions } from "../net/head.ts";
import type { ObsFeature } from "../net/config.ts";
import { imageNorm, type AffineNorm } from "../normalize.ts";
import { solverByName, uniformGrid, type SolverName, type VectorSpace } from "../flow/solvers.ts";
import { CONTRIB_DOMAIN, OnnxOps, type Kernels, type Sym, type WeightMap } from "./ops.ts";
import { Tape, type Traced } from "../autodiff/tape.ts";
import { maskedSquaredError } from "../autodiff/loss.ts";
import { objectiveOf, type NetworkJvp, type SampleSpec } from "../flow/objective.ts";
import { DataType, IR_VERSION, OPSET, type ModelProto } from "./proto.ts";
import { VERSION } from "../version.ts";
import type { FeatureIO, PromptsMetadata } from "./schema.ts";
import { TEXT_ENCODER_DIR } from "../text/encoder.ts";
import { promptDim, promptFeatureOf } from "../net/prompt.ts";

export { IR_VERSION, OPSET } from "./proto.ts";

export type { FeatureIO } from "./schema.ts";

/** Normalisation baked into the sample graph: padded affine maps and the raw action dim. */
export interface GraphNorms {
  /** Per feature name, padded to the model's last dim (`normsFor`). */
  obs: Record<string, AffineNorm>;
  /** Padded to the model's action dim. */
  action: AffineNorm;
  /** Dataset action dim (<= model action dim). */
  rawActionDim: number;
}

/** Options of `buildSampleModel`. */
export interface SampleModelOptions {
  /** Solver steps over the uniform grid 0..1 (ignored by regression heads). */
  steps: number;
  solver: SolverName;
  /** Extra `metadata_props` (actionflow.* keys describing the head are always written). */
  metadata?: Record<string, string>;
  /**
   * `fused` (default): onnxruntime's contrib kernels where they run the same math in fewer nodes
   * (`OnnxOps`); `plain`: standard ONNX operators only, for other runtimes. Written to
   * `actionflow.kernels`.
   */
  kernels?: Kernels;
}

/** A built graph and the parameters it uses. */
export interface BuiltModel {
  model: ModelProto;
  /** Parameter names the description read from the weights. */
  usedParams: string[];
}

/** The graph inputs of the sample graph's observation features: `obs.<name>`. */
export function obsInputName(name: string): string {
  return `obs.${name}`;
}

/** Builds the `sample` model: raw observations (+ noise, prefix) -> raw action chunk. */
export function buildSampleModel(
  head: ActionHead,
  weights: WeightMap,
  features: readonly FeatureIO[],
  norms: GraphNorms,
  opts: SampleModelOptions,
): BuiltModel {
  const cfg = head.config;
  const { horizon: H, actionDim: A } = cfg;
  const rawA = norms.rawActionDim;
  if (!Number.isInteger(rawA) || rawA < 1 || rawA > A)
    throw new Error(`raw action dim ${rawA} must be in 1..${A} (the model's action dim)`);
  checkAffine("action", norms.action, A);
  const kernels = opts.kernels ?? "fused";
  const ops = new OnnxOps({ weights, kernels });
  const solver = solverByName(opts.solver);
  if (!Number.isInteger(opts.steps) || opts.steps < 1)
    throw new Error(`steps must be a positive integer, got ${opts.steps}`);

  // Observations: raw -> normalised -> zero-padded to the model's dims.
  const obs: Record<string, Sym> = {};
  for (const f of features) {
    const norm = norms.obs[f.name];
    if (!norm) throw new Error(`normalisation has no entry for observation feature '${f.name}'`);
    const d = f.shape[f.shape.length - 1]!;
    const rawD = f.rawShape[f.rawShape.length - 1]!;
    checkAffine(`observation feature '${f.name}'`, norm, d);
    if (f.kind === "image") {
      obs[f.name] = cameraInput(ops, obsInputName(f.name), f.rawShape, norm);
      continue;
    }
    const x = ops.input(obsInputName(f.name), [-1, ...f.rawShape]);
    obs[f.name] = padLast(ops, normalizeRaw(ops, x, norm, rawD), rawD, d);
  }
  const pf = promptFeatureOf(cfg);
  if (pf?.promptEmbedding) obs[pf.name] = ops.input(obsInputName(pf.name), [-1, promptDim(pf)]);
  else if (pf) {
    // The prompt index -> its one-hot row of the identity [K, K] (an out-of-range index fails the run).
    const k = pf.prompts.length;
    const eye = new Float32Array(k * k);
    for (let i = 0; i < k; i++) eye[i * k + i] = 1;
    const index = ops.input(obsInputName(pf.name), [-1], DataType.INT64);
    obs[pf.name] = ops.node(
      "Gather",
      [ops.constant(eye, [k, k]), index],
      [-1, k],
      { axis: { int: 0 } },
      DataType.FLOAT,
    );
  }
  const ctx = head.encode(ops, obs);

  // Action prefix -> normalised, padded, and a [batch, H, 1] mask of the first prefix_len steps.
  const prefixRaw = ops.input("prefix", [-1, H, rawA]);
  const prefixLen = ops.input("prefix_len", [-1], DataType.INT64);
  const prefix = padLast(ops, normalizeRaw(ops, prefixRaw, norms.action, rawA), rawA, A);
  const lenCol = ops.reshape(prefixLen, [-1, 1]);
  const steps = ops.int64([...Array(H).keys()], [1, H]);
  const maskBool = ops.node("Less", [steps, lenCol], [-1, H], {}, DataType.BOOL);
  const mask = ops.reshape(ops.node("Cast", [maskBool], [-1, H], { to: { int: DataType.FLOAT } }, DataType.FLOAT), [
    -1,
    H,
    1,
  ]);
  // Fused: one Where on the mask (a [batch, H, A] condition made once per chunk) instead of x + mask (target - x).
  let cond: Sym | undefined;
  const inpaint = (x: Sym, target: Sym): Sym => {
    if (kernels === "plain") return ops.add(x, ops.mul(mask, ops.sub(target, x)));
    cond ??= ops.node(
      "Expand",
      [ops.reshape(maskBool, [-1, H, 1]), ops.int64([1, 1, A])],
      [-1, H, A],
      {},
      DataType.BOOL,
    );
    return ops.node("Where", [cond, target, x], [-1, H, A], {}, DataType.FLOAT);
  };
  const objective = objectiveOf(cfg);
  const cleanPrefix = objective.prefixTraining && cfg.rtcMaxDelay > 0;
  const noise = objective.noiseInput ? ops.input("noise", [-1, H, A]) : undefined;
  const needNoise = (): Sym => {
    if (!noise) throw new Error(`sample graph: a ${cfg.objective} head samples without noise`);
    return noise;
  };
  // The solver's times are constants of the graph, one time token for the whole batch: the time
  // path of every step (time MLP, every adaLN modulation) is a constant subgraph that onnxruntime
  // folds at load time, so a chunk runs only what depends on the observation and the noise.
  const timeOf = (t: number): Sym => ops.constant(Float32Array.of(t), [1, 1]);
  const space: VectorSpace<Sym> = { axpy: (y, alpha, v) => (alpha === 0 ? y : ops.add(y, ops.scale(v, alpha))) };
  const timeOpts = (h: number | undefined): VelocityOptions<Sym> => ({
    timeTokens: 1,
    ...(h === undefined ? {} : { interval: timeOf(h) }),
  });
  let spec: SampleSpec<Sym>;
  if (cleanPrefix) {
    // Training-time RTC: the prefix is fed clean at per-token time 1 (the data end) in every
    // evaluation, exactly as the head was trained; the other tokens follow the solver's time. The
    // time path runs at t = 1 and at the step's time (both constants) and each token picks its own
    // by the mask, instead of running on per-token times that depend on `prefix_len`.
    const prefixMask = ops.reshape(mask, [-1, H]);
    // A state already carrying the prefix (the noise, every step's result) is not inpainted again.
    const clean = new Set<Sym>();
    const withPrefix = (x: Sym): Sym => {
      if (clean.has(x)) return x;
      const y = inpaint(x, prefix);
      clean.add(y);
      return y;
    };
    spec = {
      ops,
      space,
      net: (xt, t, h) => head.velocity(ops, ctx, withPrefix(xt), timeOf(t), { ...timeOpts(h), prefixMask }),
      noise: () => withPrefix(needNoise()),
      zeros: () => ops.constant(new Float32Array(H * A), [1, H, A]),
      grid: uniformGrid(opts.steps),
      solver,
      afterStep: withPrefix,
    };
  } else {
    // The prefix's path value at t1: t1 * x1 + (1 - t1) * x0; fused as x0 + t1 (x1 - x0), the
    // difference once per chunk.
    const pathAt = (t1: number): Sym =>
      kernels === "plain"
        ? space.axpy(ops.scale(prefix, t1), 1 - t1, needNoise())
        : ops.add(needNoise(), ops.scale(ops.sub(prefix, needNoise()), t1));
    spec = {
      ops,
      space,
      net: (xt, t, h) => head.velocity(ops, ctx, xt, timeOf(t), timeOpts(h)),
      noise: needNoise,
      zeros: () => ops.constant(new Float32Array(H * A), [1, H, A]),
      grid: uniformGrid(opts.steps),
      solver,
      // Path value of the prefix at t1: t1 * x1 + (1 - t1) * x0 (the prefix itself at t1 = 1).
      afterStep: (xt, t1) => inpaint(xt, t1 === 1 ? prefix : pathAt(t1)),
    };
  }
  const { x, nfe } = objective.sample(spec);
  if (x.shape[0] !== -1) throw new Error(`sample graph: the chunk lost its batch dimension (shape [${x.shape}])`);

  // De-normalise the raw action dims: x = (y - offset) / scale.
  const inv = new Float32Array(rawA);
  const shift = new Float32Array(rawA);
  for (let i = 0; i < rawA; i++) {
    const s = norms.action.scale[i]!;
    if (s === 0) throw new Error(`action normalisation: dim ${i} has scale 0 and cannot be inverted`);
    inv[i] = 1 / s;
    shift[i] = -norms.action.offset[i]! / s;
  }
  const y = ops.add(ops.mul(ops.slice(x, 2, 0, rawA), ops.constant(inv, [rawA])), ops.constant(shift, [rawA]));
  ops.output(y, "actions");

  const label = objective.solverLabel(solver.name);
  const sampleSteps = objective.noiseInput ? opts.steps : 1;
  const meta = {
    ...headMetadata(head, features, "sample"),
    "actionflow.kernels": kernels,
    "actionflow.solver": label,
    "actionflow.steps": String(sampleSteps),
    "actionflow.nfe": String(nfe),
    "actionflow.action_dim": String(rawA),
    "actionflow.noise": noise ? "input" : "none",
    "actionflow.prefix": cleanPrefix ? "clean" : "replace",
    "actionflow.rtc_max_delay": String(cfg.rtcMaxDelay),
    ...(cfg.fps ? { "actionflow.fps": String(cfg.fps) } : {}),
    ...(cfg.nActionSteps ? { "actionflow.n_action_steps": String(cfg.nActionSteps) } : {}),
    ...opts.metadata,
  };
  const doc =
    `actionflow ${cfg.arch} ${cfg.objective} head: raw observations -> action chunk [batch, ${H}, ${rawA}]` +
    (noise ? ` (${label}, ${sampleSteps} steps, noise [batch, ${H}, ${A}] required)` : " (one evaluation)");
  return { model: wrapModel(ops, "actionflow_sample", doc, meta), usedParams: ops.usedParams() };
}

/**
 * Builds the `velocity` model: normalised `xt` `[batch, H, A]`, `t` `[batch, H]`, normalised `obs.<name>` ->
 * `velocity`.
 */
export function buildVelocityModel(
  head: ActionHead,
  weights: WeightMap,
  features: readonly FeatureIO[],
  opts: { metadata?: Record<string, string>; kernels?: Kernels } = {},
): BuiltModel {
  const cfg = head.config;
  const { horizon: H, actionDim: A } = cfg;
  const kernels = opts.kernels ?? "fused";
  const ops = new OnnxOps({ weights, kernels });
  const obs: Record<string, Sym> = {};
  for (const f of features) obs[f.name] = ops.input(obsInputName(f.name), [-1, ...f.shape]);
  const pf = promptFeatureOf(cfg);
  if (pf && !(pf.name in obs)) obs[pf.name] = ops.input(obsInputName(pf.name), [-1, promptDim(pf)]);
  const xt = ops.input("xt", [-1, H, A]);
  const t = ops.input("t", [-1, H]);
  const v = head.velocity(ops, head.encode(ops, obs), xt, t);
  ops.output(v, "velocity");
  const meta = { ...headMetadata(head, features, "velocity"), "actionflow.kernels": kernels, ...opts.metadata };
  const doc = `actionflow ${cfg.arch} velocity field: normalised xt [batch, ${H}, ${A}], t [batch, ${H}] (0 = noise, 1 = data), normalised obs.* -> velocity`;
  return { model: wrapModel(ops, "actionflow_velocity", doc, meta), usedParams: ops.usedParams() };
}

/** Options of `buildTrainModel`. */
export interface TrainModelOptions {
  /** Time tokens of the `t` input: 1 (one time per sample) or the horizon (per-token, prefix training). */
  timeTokens: number;
  /** Extra `metadata_props`. */
  metadata?: Record<string, string>;
}

/** A built training graph and its parameters, in the order of the `grad.<name>` outputs. */
export interface BuiltTrainModel {
  model: ModelProto;
  /** Every parameter of the head (name and shape), in first-use order: one input and one gradient each. */
  params: { name: string; shape: number[] }[];
}

/** The graph output holding the gradient of parameter `name`. */
export function gradOutputName(name: string): string {
  return `grad.${name}`;
}

/**
 * Builds the `train` model: the masked loss of one batch and its gradient with respect to every
 * parameter, the backward pass emitted by reverse-mode differentiation (`policy/autodiff/tape.ts`)
 * of the same network description the other graphs run.
 *
 * Inputs (batch is the `batch` dim_param), all float32: every parameter, named as the parameter
 * with its shape; normalised `obs.<name>` `[batch, ...shape]`; `xt` and `target`
 * `[batch, H, A]`; `t` `[batch, timeTokens]`; `interval` `[batch, timeTokens]` (average-velocity
 * heads only); `is_pad` `[batch, H]` (1 = step left out of the loss); `denominator` `[]` (the
 * batch's `lossDenominator`). The inputs are the head objective's `prepare` (a regression batch is
 * fed xt = 0, t = 1, target = actions). Outputs: `loss` `[]` = `sum((v - goal)^2 (1 - is_pad) w) /
 * denominator`, exactly the tfjs trainer's `maskedLoss`, where the objective's `lossTarget` makes
 * `goal` and the per-sample weights w from `target` (flow, regression: goal = target, w = 1;
 * meanflow: the MeanFlow target and adaptive weights, the JVP by forward-mode tangents on the tape,
 * both under stop-gradient); and `grad.<name>` (shape of the parameter; zeros where the loss does
 * not depend on it).
 */
export function buildTrainModel(
  head: ActionHead,
  features: readonly Pick<FeatureIO, "name" | "shape">[],
  opts: TrainModelOptions,
): BuiltTrainModel {
  const cfg = head.config;
  const { horizon: H, actionDim: A } = cfg;
  const T = opts.timeTokens;
  if (T !== 1 && T !== H) throw new Error(`train graph: timeTokens must be 1 or ${H} (the horizon), got ${T}`);
  const objective = objectiveOf(cfg);
  const ops = new OnnxOps({ params: "inputs" });
  const tape = new Tape(ops);
  const input = (name: string, shape: number[]): Traced<Sym> => tape.input(ops.input(name, shape), shape);
  // An objective whose target needs the network's JVP differentiates along xt, t and interval.
  const netInput = (name: string, shape: number[]): Traced<Sym> =>
    objective.targetNeedsJvp ? tape.variable(ops.input(name, shape), shape) : input(name, shape);
  const obs: Record<string, Traced<Sym>> = {};
  for (const f of features) obs[f.name] = input(obsInputName(f.name), [-1, ...f.shape]);
  const xt = netInput("xt", [-1, H, A]);
  const t = netInput("t", [-1, T]);
  const interval = objective.intervalInput ? netInput("interval", [-1, T]) : undefined;
  const target = input("target", [-1, H, A]);
  const isPad = input("is_pad", [-1, H]);
  const denominator = input("denominator", []);
  const v = head.velocity(tape, head.encode(tape, obs), xt, t, { timeTokens: T, ...(interval ? { interval } : {}) });
  const keep = ops.sub(ops.constant(Float32Array.of(1), []), ops.reshape(isPad.value, [-1, H, 1]));
  const jvp: NetworkJvp<Sym> = (tan) => {
    const seeds = new Map<Traced<Sym>, Sym>([
      [xt, tan.xt],
      [t, tan.t],
    ]);
    if (interval) seeds.set(interval, tan.interval);
    const [d] = tape.tangents(seeds, [v]);
    return { value: v.value, jvp: d ?? ops.scale(v.value, 0) };
  };
  const lt = objective.lossTarget(
    ops,
    {
      xt: xt.value,
      t: t.value,
      ...(interval ? { interval: interval.value } : {}),
      target: target.value,
      keep,
      timeTokens: T,
      horizon: H,
      actionDim: A,
    },
    jvp,
  );
  // The objective's target and weights are computed off the tape: no gradient flows through them.
  const goal = lt.target === target.value ? target : tape.input(lt.target, [-1, H, A]);
  const weight = lt.weight === undefined ? undefined : tape.input(lt.weight, [-1, 1, 1]);
  const loss = maskedSquaredError(tape, v, goal, isPad, denominator, {
    horizon: H,
    ...(weight ? { weight } : {}),
  });
  ops.output(loss.value, "loss");
  const params: { name: string; shape: number[] }[] = [];
  for (const [name, g] of tape.gradients(loss)) {
    const shape = [...tape.paramSpecs().get(name)!.shape];
    params.push({ name, shape });
    const size = shape.reduce((a, b) => a * b, 1);
    ops.output(g ?? ops.constant(new Float32Array(size), shape), gradOutputName(name));
  }
  const meta = { ...headMetadata(head, features, "train"), ...opts.metadata };
  const doc = `actionflow ${cfg.arch} ${cfg.objective} training graph: parameters, normalised obs.*, xt, t [batch, ${T}]${interval ? `, interval [batch, ${T}]` : ""}, target, is_pad, denominator -> loss, grad.*`;
  return { model: wrapModel(ops, "actionflow_train", doc, meta), params };
}

function headMetadata(
  head: ActionHead,
  features: readonly Pick<FeatureIO, "name" | "shape">[],
  graph: "sample" | "velocity" | "train",
): Record<string, string> {
  const cfg = head.config;
  const pf = promptFeatureOf(cfg);
  return {
    "actionflow.version": VERSION,
    "actionflow.graph": graph,
    "actionflow.config": JSON.stringify(cfg),
    "actionflow.features": JSON.stringify(features),
    "actionflow.objective": cfg.objective,
    "actionflow.horizon": String(cfg.horizon),
    "actionflow.model_action_dim": String(cfg.actionDim),
    "actionflow.time_convention": "t=0 noise, t=1 data",
    ...(pf ? { "actionflow.prompts": JSON.stringify(promptsMetadata(pf)) } : {}),
  };
}

/** The `actionflow.prompts` metadata of a head's prompt feature (see `PromptsMetadataSchema`). */
function promptsMetadata(pf: ObsFeature & { prompts: string[] }): PromptsMetadata {
  const e = pf.promptEmbedding;
  if (e === undefined) return { feature: pf.name, prompts: pf.prompts };
  const dim = promptDim(pf);
  return {
    feature: pf.name,
    prompts: pf.prompts,
    embedding:
      e.source === "table"
        ? { source: "table", dim, vectors: e.vectors }
        : { source: "encoder", dim, normalize: e.normalize ?? true, folder: TEXT_ENCODER_DIR, vectors: e.vectors },
  };
}

function wrapModel(ops: OnnxOps, name: string, doc: string, meta: Record<string, string>): ModelProto {
  const graph = ops.graph(name, doc);
  const contrib = graph.node.some((n) => n.domain === CONTRIB_DOMAIN);
  return {
    irVersion: IR_VERSION,
    opsetImport: [{ domain: "", version: OPSET }, ...(contrib ? [{ domain: CONTRIB_DOMAIN, version: 1 }] : [])],
    producerName: "actionflow",
    producerVersion: VERSION,
    docString: doc,
    graph,
    metadataProps: Object.entries(meta).map(([key, value]) => ({ key, value })),
  };
}

/**
 * A camera's graph input `name`: uint8 RGB `[batch, ...rawShape]`, cast to float and normalised per
 * channel in pixel units ({@link imageNorm}).
 */
export function cameraInput(ops: OnnxOps, name: string, rawShape: readonly number[], norm: AffineNorm): Sym {
  const pixels = ops.input(name, [-1, ...rawShape], DataType.UINT8);
  const x = ops.node("Cast", [pixels], [-1, ...rawShape], { to: { int: DataType.FLOAT } }, DataType.FLOAT);
  return normalizeRaw(ops, x, imageNorm(norm), 3);
}

/** x * scale + offset over the first `rawD` dims of the map (raw values, unpadded). */
function normalizeRaw(ops: OnnxOps, x: Sym, norm: AffineNorm, rawD: number): Sym {
  return ops.add(
    ops.mul(x, ops.constant(norm.scale.slice(0, rawD), [rawD])),
    ops.constant(norm.offset.slice(0, rawD), [rawD]),
  );
}

/** Zero-pads the last axis of x from `from` to `to` (normalised padding dims are 0). */
function padLast(ops: OnnxOps, x: Sym, from: number, to: number): Sym {
  if (from === to) return x;
  const r = x.shape.length;
  const pads = new Array<number>(2 * r).fill(0);
  pads[2 * r - 1] = to - from;
  return ops.node("Pad", [x, ops.int64(pads)], [...x.shape.slice(0, -1), to], { mode: "constant" });
}

function checkAffine(what: string, norm: AffineNorm, dim: number): void {
  if (norm.scale.length !== dim || norm.offset.length !== dim) {
    throw new Error(`${what}: normalisation has ${norm.scale.length} dims, the model needs ${dim}`);
  }
}
