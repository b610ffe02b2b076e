/**
 * ReFlow couplings for a policy: (noise, chunk) pairs from a teacher's exported ONNX sample graph,
 * conditioned on the observations of a dataset's chunk windows, their cache file, and the
 * {@link BatchSource} that replays them to the trainer.
 *
 * Spaces: the noise is what the ONNX graph takes, normalised action space `[horizon,
 * modelActionDim]`; the graph returns raw (dataset-unit) actions `[horizon, actionDim]`, which the
 * source normalises with the teacher's action map and zero-pads to `modelActionDim` (as the windows
 * pad the data), so the trainer's path from `noise` to the chunk is exactly the teacher's ODE
 * solution in the space the network works in.
 *
 * Cache file (`safetensors`, written atomically): tensors `train.position` `[N]` (the window's split
 * position), `train.noise` `[N, H, modelActionDim]`, `train.actions` `[N, H, actionDim]` (raw), and
 * the same three for `val.*`; `__metadata__.actionflow.pairs` holds {@link PairsKey} as JSON: a cache
 * made with other settings or another teacher is refused, never silently reused.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import type { Checkpoint } from "../../policy/checkpoint/checkpoint.ts";
import { decodeSafetensors, encodeSafetensors } from "../../policy/checkpoint/safetensors.ts";
import { writeFileAtomic } from "../../policy/io/atomic.ts";
import { parseJson } from "../../policy/io/json.ts";
import type { NamedArray } from "../../policy/net/tfjs-ops.ts";
import { exportOnnxBytes } from "../../policy/onnx/export.ts";
import type { AffineNorm } from "../../policy/normalize.ts";
import { Rng } from "../../policy/random.ts";
import { OnnxPolicy } from "../../policy/runtime/onnx-policy.ts";
import type { Batch, BatchSource } from "../batch.ts";
import type { WindowSource } from "../windows.ts";

/** What identifies a set of pairs: a cache whose key differs is not reused. */
export const PairsKeySchema = z.object({
  /** SHA-256 of the teacher checkpoint's `model.safetensors`. */
  teacherSha256: z.string(),
  teacherSteps: z.number().int().positive(),
  teacherSolver: z.string(),
  pairs: z.number().int().positive(),
  valPairs: z.number().int().nonnegative(),
  seed: z.number().int(),
  horizon: z.number().int().positive(),
  modelActionDim: z.number().int().positive(),
  actionDim: z.number().int().positive(),
  trainFrames: z.number().int().positive(),
  valFrames: z.number().int().nonnegative(),
});
/** See {@link PairsKeySchema}. */
export type PairsKey = z.infer<typeof PairsKeySchema>;

/** One split's pairs. */
export interface PairSet {
  /** `[N]` split positions of the windows whose observations condition each pair. */
  positions: Int32Array;
  /** `[N, H, modelActionDim]` normalised-space noise, as the ONNX graph takes it. */
  noise: Float32Array;
  /** `[N, H, actionDim]` raw actions the teacher's graph returned for that noise and observation. */
  actions: Float32Array;
}

/** The train and validation pairs of a distillation. */
export interface Pairs {
  key: PairsKey;
  train: PairSet;
  val: PairSet;
}

/** Options of {@link generatePairs}. */
export interface GeneratePairsOptions {
  /** The teacher checkpoint (its head, EMA weights and normalisation). */
  teacher: Checkpoint;
  /** SHA-256 of its `model.safetensors` (see `weightsDigest`). */
  teacherSha256: string;
  /** Solver steps of the teacher's graph (e.g. 20) and its solver (`euler` or `rk4`, ...). */
  teacherSteps: number;
  teacherSolver: string;
  /** Raw-unit windows (identity normalisation, unpadded) of the training and validation splits. */
  rawTrain: WindowSource;
  rawVal: WindowSource;
  pairs: number;
  valPairs: number;
  seed: number;
  /** Pairs per onnxruntime call (default 32). */
  batch?: number;
  /** onnxruntime intra-op threads (default: one per core; pairs are solved in batches). */
  threads?: number;
  /** Called after each batch with the pairs done and the total. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * `n` split positions spread evenly over `frames` windows: `floor(i * frames / n)` (every window
 * once per `frames / n` when `n >= frames`).
 */
export function pairPositions(n: number, frames: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor((i * frames) / n);
  return out;
}

/**
 * Solves the teacher's flow from fresh noise for each pair: exports the teacher's sample graph in
 * memory with `teacherSteps` steps of `teacherSolver`, loads it in onnxruntime and runs it on the
 * raw observations of the windows at {@link pairPositions}. Noise comes from `Rng(seed)` (train
 * pairs first, then validation pairs), so the same options give the same pairs. Throws when the
 * teacher produces a non-finite action (naming the pair).
 */
export async function generatePairs(opts: GeneratePairsOptions): Promise<Pairs> {
  const { teacher } = opts;
  const H = teacher.config.horizon;
  const Am = teacher.config.actionDim;
  const built = await exportOnnxBytes(teacher, { steps: opts.teacherSteps, solver: opts.teacherSolver });
  const dir = await mkdtemp(join(tmpdir(), "actionflow-reflow-teacher-"));
  try {
    const file = join(dir, "teacher.onnx");
    await writeFile(file, built.sample);
    const policy = await OnnxPolicy.load(file, { threads: opts.threads ?? availableParallelism() });
    try {
      const key: PairsKey = {
        teacherSha256: opts.teacherSha256,
        teacherSteps: opts.teacherSteps,
        teacherSolver: built.solver,
        pairs: opts.pairs,
        valPairs: opts.valPairs,
        seed: opts.seed,
        horizon: H,
        modelActionDim: Am,
        actionDim: policy.actionDim,
        trainFrames: opts.rawTrain.frames,
        valFrames: opts.rawVal.frames,
      };
      const rng = new Rng(opts.seed);
      const total = opts.pairs + opts.valPairs;
      let done = 0;
      const one = async (source: WindowSource, n: number): Promise<PairSet> => {
        const positions = pairPositions(n, source.frames);
        const noise = rng.normalArray(n * H * Am);
        const actions = new Float32Array(n * H * policy.actionDim);
        const per = opts.batch ?? 32;
        const chunk = H * policy.actionDim;
        for (let from = 0; from < n; from += per) {
          const to = Math.min(n, from + per);
          const windows = source.batchAt(Array.from(positions.subarray(from, to)));
          const items = Array.from({ length: to - from }, (_, b) => {
            const observation: Record<string, Float32Array> = {};
            for (const f of policy.features) {
              const d = f.rawShape.reduce((x, y) => x * y, 1);
              observation[f.name] = windows.obs[f.name]!.slice(b * d, (b + 1) * d);
            }
            const i = from + b;
            return { observation, options: { noise: noise.subarray(i * H * Am, (i + 1) * H * Am) } };
          });
          const out = await policy.sampleBatch(items);
          out.forEach((r, b) => {
            if (r instanceof Error)
              throw new Error(`reflow pairs: teacher failed on pair ${from + b} (window ${positions[from + b]})`, {
                cause: r,
              });
            actions.set(r, (from + b) * chunk);
          });
          done += to - from;
          opts.onProgress?.(done, total);
        }
        return { positions, noise, actions };
      };
      const train = await one(opts.rawTrain, opts.pairs);
      const val = await one(opts.rawVal, opts.valPairs);
      return { key, train, val };
    } finally {
      await policy.release();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Writes `pairs` to `file` atomically (see the module comment for the layout). */
export async function writePairs(file: string, pairs: Pairs): Promise<void> {
  const { horizon: H, modelActionDim: Am, actionDim: A } = pairs.key;
  const tensors = new Map<string, NamedArray>();
  for (const [name, set] of [
    ["train", pairs.train],
    ["val", pairs.val],
  ] as const) {
    const n = set.positions.length;
    tensors.set(`${name}.position`, { shape: [n], data: Float32Array.from(set.positions) });
    tensors.set(`${name}.noise`, { shape: [n, H, Am], data: set.noise });
    tensors.set(`${name}.actions`, { shape: [n, H, A], data: set.actions });
  }
  await writeFileAtomic(file, encodeSafetensors(tensors, { "actionflow.pairs": JSON.stringify(pairs.key) }));
}

/**
 * Reads a pair cache; undefined when `file` does not exist. Throws naming the file when it is
 * corrupt, and naming every differing field when it was made for another key than `expected`.
 */
export async function readPairs(file: string, expected: PairsKey): Promise<Pairs | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(file));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`${file}: cannot read the pair cache`, { cause: err });
  }
  const { tensors, metadata } = decodeSafetensors(bytes, file);
  const key = parseJson(metadata["actionflow.pairs"] ?? "", PairsKeySchema, `${file}: __metadata__ actionflow.pairs`);
  const diffs = (Object.keys(expected) as (keyof PairsKey)[])
    .filter((k) => key[k] !== expected[k])
    .map((k) => `${k}: cache ${String(key[k])}, wanted ${String(expected[k])}`);
  if (diffs.length)
    throw new Error(
      `${file}: the pair cache was made with other settings (${diffs.join("; ")}); delete it or use them`,
    );
  const set = (name: string, n: number): PairSet => {
    const get = (t: string, size: number): Float32Array => {
      const a = tensors.get(`${name}.${t}`);
      if (!a || a.data.length !== size)
        throw new Error(
          `${file}: tensor ${name}.${t} is missing or has ${a?.data.length ?? 0} values, expected ${size}`,
        );
      return a.data;
    };
    return {
      positions: Int32Array.from(get("position", n)),
      noise: get("noise", n * key.horizon * key.modelActionDim),
      actions: get("actions", n * key.horizon * key.actionDim),
    };
  };
  return { key, train: set("train", key.pairs), val: set("val", key.valPairs) };
}

/** Options of {@link pairSource}. */
export interface PairSourceOptions {
  set: PairSet;
  /** Normalised windows of the same split (their observations condition the pairs). */
  windows: WindowSource;
  /** The teacher's action map (raw dims). */
  actionNorm: AffineNorm;
  horizon: number;
  /** Raw action dim of `set.actions`, and the model's padded one. */
  actionDim: number;
  modelActionDim: number;
}

/**
 * Replays pairs as training batches: `next` draws pairs uniformly with the given `rng` (so a resumed
 * run draws what the uninterrupted one would have), `epoch` walks them in order (validation). Each
 * batch carries the pair's `noise`, its chunk normalised and padded as `actions`, the window's
 * normalised observations, and no padding mask (the teacher's chunk is a target at every step).
 */
export function pairSource(o: PairSourceOptions): BatchSource & { readonly size: number } {
  const { set, windows, horizon: H, actionDim: A, modelActionDim: Am } = o;
  const n = set.positions.length;
  const target = new Float32Array(n * H * Am);
  for (let i = 0; i < n * H; i++) {
    for (let d = 0; d < A; d++)
      target[i * Am + d] = set.actions[i * A + d]! * o.actionNorm.scale[d]! + o.actionNorm.offset[d]!;
  }
  const batchOf = (idx: readonly number[]): Batch => {
    const w = windows.batchAt(idx.map((i) => set.positions[i]!));
    const actions = new Float32Array(idx.length * H * Am);
    const noise = new Float32Array(idx.length * H * Am);
    idx.forEach((i, b) => {
      actions.set(target.subarray(i * H * Am, (i + 1) * H * Am), b * H * Am);
      noise.set(set.noise.subarray(i * H * Am, (i + 1) * H * Am), b * H * Am);
    });
    return { size: idx.length, obs: w.obs, actions, isPad: new Uint8Array(idx.length * H), noise };
  };
  return {
    size: n,
    next(size: number, rng: Rng): Batch {
      return batchOf(Array.from({ length: size }, () => rng.int(n)));
    },
    *epoch(size: number): Iterable<Batch> {
      for (let from = 0; from < n; from += size)
        yield batchOf(Array.from({ length: Math.min(size, n - from) }, (_, k) => from + k));
    },
  };
}
