/**
 * The toy problems as runnable experiments: two moons (sample quality by energy distance, with a
 * ReFlow round for few-step sampling) and bimodal actions (flow head vs regression head).
 */
import * as tf from "@tensorflow/tfjs";
import { writeFile, mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import type { HeadConfig } from "../../policy/net/config.ts";
import { parseHeadConfig } from "../../policy/net/config.ts";
import { buildHead } from "../../policy/net/network.ts";
import { sampleChunkTfjs, tidyRead } from "../../policy/sampling/tfjs.ts";
import { uniformGrid } from "../../policy/flow/solvers.ts";
import { Rng } from "../../policy/random.ts";
import type { BatchSource } from "../batch.ts";
import { fit } from "../fit.ts";
import { reflowCouplings } from "../reflow.ts";
import type { OptimConfig } from "../optim.ts";
import { Trainer } from "../trainer.ts";
import { energyDistance } from "./metrics.ts";
import { moonsSource, sampleMoons } from "./moons.ts";
import { bimodalModes, bimodalSeparation, bimodalSource, distance } from "./bimodal.ts";
import { scatterPanelsSvg } from "./picture.ts";

/** Reports training progress: `(phase, step, total, loss)`. */
export type ToyProgress = (phase: string, step: number, total: number, loss: number) => void;

/** Options shared by the toy experiments. */
export interface ToyOptions {
  seed: number;
  arch: HeadConfig["arch"];
  /** Training steps of each head. */
  steps: number;
  batchSize: number;
  /** Euler steps used for sampling (the toy's reported measure uses 10). */
  sampleSteps: number;
  onProgress?: ToyProgress;
}

function toyHead(arch: HeadConfig["arch"], horizon: number, objective: HeadConfig["objective"]): HeadConfig {
  return parseHeadConfig({
    arch,
    objective,
    horizon,
    actionDim: 2,
    obs: [{ name: "state", key: "state", shape: [1] }],
    mlp: { width: 128, depth: 3, timeEmbedDim: 16 },
    transformer: { width: 64, depth: 2, heads: 4, mlpRatio: 2, timeEmbedDim: 32 },
  });
}

async function train(
  config: HeadConfig,
  source: BatchSource,
  opts: ToyOptions & { phase: string; optim: Partial<OptimConfig>; init?: Trainer },
): Promise<Trainer> {
  const head = buildHead(config);
  const init = opts.init?.state();
  const trainer = new Trainer({
    head,
    seed: opts.seed,
    optim: { decaySteps: opts.steps, ...opts.optim },
    timeSampler: { kind: "uniform" },
    // A ReFlow round starts from the teacher's EMA weights with fresh optimizer moments.
    resume: init ? { params: init.ema, ema: init.ema, m: new Map(), v: new Map(), step: 0 } : undefined,
  });
  await fit({
    trainer,
    source,
    steps: opts.steps,
    batchSize: opts.batchSize,
    seed: opts.seed,
    onStep: (r, s) => opts.onProgress?.(opts.phase, r.step + 1, opts.steps, s.trainLoss),
  });
  return trainer;
}

/** Samples `n` chunks `[n, horizon, 2]` for observations `state` (`[n]`), from seeded noise. */
function sample(
  trainer: Trainer,
  state: Float32Array,
  rng: Rng,
  steps: number,
  onStep?: (x: Float32Array, t: number) => void,
): Float32Array {
  const { horizon: H, actionDim: A } = trainer.head.config;
  const n = state.length;
  const noise = rng.normalArray(n * H * A);
  onStep?.(noise, 0);
  return tidyRead(() =>
    sampleChunkTfjs(trainer.head, trainer.emaOps, { state: tf.tensor(state, [n, 1]) }, tf.tensor(noise, [n, H, A]), {
      steps,
      onStep: onStep && ((xt, t) => onStep((xt.dataSync() as Float32Array).slice(), t)),
    }),
  );
}

/** Options of `runMoons`. */
export interface MoonsOptions extends ToyOptions {
  /** Fine-tuning steps of the ReFlow round (0 skips it). */
  reflowSteps: number;
  /** Where to write the picture of the flow (SVG); none when undefined. */
  picture?: string;
}

/** Result of `runMoons`. */
export interface MoonsResult {
  energyDistance: number;
  noiseFloor: number;
  ratio: number;
  /** Energy distance of the flow before ReFlow, sampled the same way. */
  energyDistanceBeforeReflow: number;
  sampleSteps: number;
  trainSteps: number;
  reflowSteps: number;
  samples: number;
  seconds: number;
  picture?: string;
}

/**
 * Two moons: trains a flow head, optionally straightens it with one ReFlow round, and measures the
 * energy distance between 2000 samples and 2000 fresh data points against the distance between
 * two fresh data sets (the noise floor).
 */
export async function runMoons(opts: MoonsOptions): Promise<MoonsResult> {
  const start = performance.now();
  const n = 2000;
  const config = toyHead(opts.arch, 1, "flow");
  const source = moonsSource();
  const teacher = await train(config, source, { ...opts, phase: "flow", optim: { lr: 2e-3, warmupSteps: 50 } });
  const zeros = new Float32Array(n);
  const evalRng = (): Rng => new Rng(opts.seed + 101);
  const data = sampleMoons(n, new Rng(opts.seed + 102));
  const noiseFloor = energyDistance(
    sampleMoons(n, new Rng(opts.seed + 103)),
    sampleMoons(n, new Rng(opts.seed + 104)),
    2,
  );
  const before = energyDistance(sample(teacher, zeros, evalRng(), opts.sampleSteps), data, 2);

  let final = teacher;
  if (opts.reflowSteps > 0) {
    const pairs = reflowCouplings(teacher, { pairs: 4000, source, seed: opts.seed + 105 });
    final = await train(config, pairs, {
      ...opts,
      steps: opts.reflowSteps,
      phase: "reflow",
      optim: { lr: 1e-3, warmupSteps: 20 },
      init: teacher,
    });
    teacher.dispose();
  }
  const snapshots: { t: number; points: Float32Array }[] = [];
  const samples = sample(final, zeros, evalRng(), opts.sampleSteps, (x, t) => snapshots.push({ t, points: x }));
  const e = energyDistance(samples, data, 2);
  final.dispose();

  if (opts.picture) {
    const grid = uniformGrid(opts.sampleSteps);
    const wanted = [0, 0.25, 0.5, 0.75, 1].map((w) =>
      grid.reduce((best, t) => (Math.abs(t - w) < Math.abs(best - w) ? t : best), 0),
    );
    const panels = wanted.map((t) => {
      const snap = snapshots.find((s) => s.t === t)!;
      return { title: `t = ${t.toFixed(2)}`, points: snap.points.subarray(0, 1200) };
    });
    panels.push({ title: "data", points: data.subarray(0, 1200) });
    await mkdir(dirname(opts.picture), { recursive: true });
    await writeFile(
      opts.picture,
      scatterPanelsSvg(panels, {
        range: 2.2,
        title: `two moons: ${opts.sampleSteps} Euler steps from noise (t=0) to data (t=1); energy distance ${e.toFixed(5)} vs noise floor ${noiseFloor.toFixed(5)}`,
      }),
    );
  }
  return {
    energyDistance: e,
    noiseFloor,
    ratio: e / noiseFloor,
    energyDistanceBeforeReflow: before,
    sampleSteps: opts.sampleSteps,
    trainSteps: opts.steps,
    reflowSteps: opts.reflowSteps,
    samples: n,
    seconds: (performance.now() - start) / 1000,
    picture: opts.picture,
  };
}

/** How one head does on the bimodal problem. */
export interface ModeReport {
  /** Share of samples nearest mode -1 and mode +1. */
  modeShare: [number, number];
  /** Mean Euclidean distance from a sample chunk to its nearest mode. */
  meanDistToMode: number;
}

/** Result of `runBimodal`. */
export interface BimodalResult {
  flow: ModeReport;
  regression: ModeReport;
  /** Distance between the two modes. */
  modeSeparation: number;
  horizon: number;
  samples: number;
  seconds: number;
}

/**
 * Bimodal actions: trains a flow head and a regression head of the same size on chunks that go one
 * of two ways, then samples 1000 observations and reports, per head, the share of samples nearest
 * each mode and the mean distance to the nearest mode.
 */
export async function runBimodal(opts: ToyOptions & { horizon: number }): Promise<BimodalResult> {
  const start = performance.now();
  const H = opts.horizon;
  const source = bimodalSource(H);
  const n = 1000;
  const obsRng = new Rng(opts.seed + 201);
  const state = new Float32Array(n);
  for (let i = 0; i < n; i++) state[i] = 2 * obsRng.uniform() - 1;

  const report = (chunks: Float32Array): ModeReport => {
    const counts: [number, number] = [0, 0];
    let dist = 0;
    for (let i = 0; i < n; i++) {
      const [m0, m1] = bimodalModes(state[i]!, H);
      const d0 = distance(m0, chunks, i * H * 2);
      const d1 = distance(m1, chunks, i * H * 2);
      counts[d0 <= d1 ? 0 : 1]++;
      dist += Math.min(d0, d1);
    }
    return { modeShare: [counts[0] / n, counts[1] / n], meanDistToMode: dist / n };
  };

  const results: Partial<Record<"flow" | "regression", ModeReport>> = {};
  for (const objective of ["flow", "regression"] as const) {
    const trainer = await train(toyHead(opts.arch, H, objective), source, {
      ...opts,
      phase: objective,
      optim: { lr: 2e-3, warmupSteps: 50 },
    });
    results[objective] = report(sample(trainer, state, new Rng(opts.seed + 202), opts.sampleSteps));
    trainer.dispose();
  }
  return {
    flow: results.flow!,
    regression: results.regression!,
    modeSeparation: bimodalSeparation(H),
    horizon: H,
    samples: n,
    seconds: (performance.now() - start) / 1000,
  };
}
