/**
 * The exported velocity graph (`policy.velocity.onnx`, see `policy/onnx/graphs.ts`) on
 * onnxruntime-node, for the metrics that need the velocity field itself: the flow-matching loss and
 * the likelihood. Inputs are normalised and padded to the model's sizes: `obs.<name>`
 * `[n, ...shape]`, `xt` `[n, H, A]`, `t` `[n, H]` (0 = noise, 1 = data); output `velocity` `[n, H, A]`.
 *
 * {@link loadVelocityGraph} takes `<run>/policy.velocity.onnx` when it was exported from the run's
 * checkpoint (same weights digest), else builds the graph from the checkpoint in memory.
 */
import { readFile, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import * as ort from "onnxruntime-node";
import type { Checkpoint } from "../policy/checkpoint/checkpoint.ts";
import type { HeadConfig } from "../policy/net/config.ts";
import { exportOnnxBytes, weightsDigest } from "../policy/onnx/export.ts";
import { obsInputName } from "../policy/onnx/graphs.ts";
import { decodeModel, metadataOf } from "../policy/onnx/proto.ts";
import type { AffineNorm } from "../policy/normalize.ts";
import type { VelocityField } from "./likelihood.ts";

/** The velocity graph of one head; `release()` when done. */
export class VelocityGraph {
  /** Where the graph came from (file, or `checkpoint <dir> (exported in memory)`). */
  readonly source: string;
  readonly config: HeadConfig;
  private readonly session: ort.InferenceSession;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(session: ort.InferenceSession, config: HeadConfig, source: string) {
    this.session = session;
    this.config = config;
    this.source = source;
  }

  /** Opens serialised velocity-graph bytes for a head of `config`. */
  static async create(bytes: Uint8Array, config: HeadConfig, source: string): Promise<VelocityGraph> {
    const meta = metadataOf(decodeModel(bytes, source));
    if (meta["actionflow.graph"] !== "velocity")
      throw new Error(`${source}: not an actionflow velocity graph (actionflow.graph = ${meta["actionflow.graph"]})`);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: "all", logSeverityLevel: 3 });
    } catch (err) {
      throw new Error(`${source}: onnxruntime could not load the velocity graph`, { cause: err });
    }
    return new VelocityGraph(session, config, source);
  }

  /**
   * Velocity `[n * H * A]` at normalised `xt` `[n * H * A]` and times `t` `[n * H]`, for normalised,
   * padded observations `obs[name]` `[n * size(shape)]`. Calls are serialised.
   */
  async run(obs: Record<string, Float32Array>, xt: Float32Array, t: Float32Array, n: number): Promise<Float32Array> {
    const { horizon: H, actionDim: A } = this.config;
    if (xt.length !== n * H * A) throw new Error(`velocity graph: xt has ${xt.length} values, expected ${n}x${H}x${A}`);
    if (t.length !== n * H) throw new Error(`velocity graph: t has ${t.length} values, expected ${n}x${H}`);
    const feeds: Record<string, ort.Tensor> = {
      xt: new ort.Tensor("float32", xt, [n, H, A]),
      t: new ort.Tensor("float32", t, [n, H]),
    };
    for (const f of this.config.obs) {
      const x = obs[f.name];
      const size = f.shape.reduce((a, b) => a * b, 1);
      if (!x || x.length !== n * size)
        throw new Error(
          `velocity graph: observation '${f.name}' has ${x?.length ?? 0} values, expected ${n} x [${f.shape.join(", ")}]`,
        );
      feeds[obsInputName(f.name)] = new ort.Tensor("float32", x, [n, ...f.shape]);
    }
    const go = async (): Promise<Float32Array> => {
      const out = await this.session.run(feeds);
      const v = out["velocity"];
      if (!v) throw new Error(`${this.source}: the graph returned no 'velocity'`);
      return (v.data as Float32Array).slice();
    };
    const result = this.queue.then(go, go);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Frees the onnxruntime session. */
  async release(): Promise<void> {
    await this.queue;
    await this.session.release();
  }
}

/**
 * The velocity graph of `ckpt`: `<policyDir>/policy.velocity.onnx` when its weights digest is the
 * checkpoint's, else exported from the checkpoint in memory.
 */
export async function loadVelocityGraph(ckpt: Checkpoint, policyDir: string): Promise<VelocityGraph> {
  const file = join(policyDir, "policy.velocity.onnx");
  if (await isFile(file)) {
    const bytes = new Uint8Array(await readFile(file));
    const meta = metadataOf(decodeModel(bytes, file));
    if (meta["actionflow.weights_sha256"] === (await weightsDigest(ckpt.dir)))
      return VelocityGraph.create(bytes, ckpt.config, file);
  }
  const built = await exportOnnxBytes(ckpt);
  return VelocityGraph.create(built.velocity, ckpt.config, `checkpoint ${ckpt.dir} (exported in memory)`);
}

/** The folder holding a policy path's exports: the path itself for a folder, its parent for a file. */
export async function exportsDir(policyPath: string): Promise<string> {
  return (await isFile(policyPath)) ? dirname(policyPath) : policyPath;
}

/**
 * Normalises raw values `[rows * rawD]` with the padded map `norm` (`[d]`) into `[rows * d]`; the
 * padded dims are 0, as the trainer and the sample graph feed them.
 */
export function normalizePadded(raw: ArrayLike<number>, norm: AffineNorm, rawD: number): Float32Array {
  const d = norm.scale.length;
  const rows = raw.length / rawD;
  if (!Number.isInteger(rows)) throw new Error(`normalizePadded: ${raw.length} values are not rows of ${rawD}`);
  const out = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++)
    for (let i = 0; i < rawD; i++) out[r * d + i] = raw[r * rawD + i]! * norm.scale[i]! + norm.offset[i]!;
  return out;
}

/**
 * The velocity field of one observation over the chunk's raw action dims (D = H * rawA, normalised
 * units), as {@link VelocityField}: the padded action dims are held at 0. At x_pad = 0 the exact
 * marginal velocity of the padded dims is 0 (their data is 0 and their noise independent), and the
 * raw dims then follow the flow of the raw dims alone, so the density of the raw dims is what the
 * likelihood measures.
 */
export function chunkVelocityField(
  graph: VelocityGraph,
  obs: Record<string, Float32Array>,
  rawActionDim: number,
): VelocityField {
  const { horizon: H, actionDim: A } = graph.config;
  const rawA = rawActionDim;
  return async (xs, t) => {
    const n = xs.length;
    const xt = new Float32Array(n * H * A);
    for (let b = 0; b < n; b++) {
      const x = xs[b]!;
      for (let h = 0; h < H; h++) for (let i = 0; i < rawA; i++) xt[(b * H + h) * A + i] = x[h * rawA + i]!;
    }
    const repeated: Record<string, Float32Array> = {};
    for (const [name, o] of Object.entries(obs)) {
      const r = new Float32Array(n * o.length);
      for (let b = 0; b < n; b++) r.set(o, b * o.length);
      repeated[name] = r;
    }
    const v = await graph.run(repeated, xt, new Float32Array(n * H).fill(t), n);
    return xs.map((_, b) => {
      const out = new Float64Array(H * rawA);
      for (let h = 0; h < H; h++) for (let i = 0; i < rawA; i++) out[h * rawA + i] = v[(b * H + h) * A + i]!;
      return out;
    });
  };
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}
