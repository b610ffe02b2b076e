import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import * as tf from "@tensorflow/tfjs";
import os from "node:os";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parseHeadConfig } from "../../policy/net/config.ts";
import type { HeadConfig } from "../../policy/net/config.ts";
import { buildHead } from "../../policy/net/network.ts";
import type { ActionHead } from "../../policy/net/head.ts";
import { TfjsOps } from "../../policy/net/tfjs-ops.ts";
import { Rng } from "../../policy/random.ts";
import { useBackend } from "../../training/backend/registry.ts";
import type { Batch, BatchSource } from "../../training/batch.ts";
import { fit } from "../../training/fit.ts";
import { GradPool } from "../../training/parallel/pool.ts";
import { shardSizes, splitInputs } from "../../training/parallel/shard.ts";
import { Trainer, defaultWorkers, flopsPerParam } from "../../training/trainer.ts";
import { createParams, lossDenominator, maskedLoss } from "../../training/loss.ts";
import { headFlops } from "../../policy/net/flops.ts";
import type { LossInputs } from "../../training/loss.ts";
import type { OptimConfig } from "../../training/optim.ts";

const H = 8;
const A = 4;
const S = 3;
const OPTIM: Partial<OptimConfig> = { lr: 3e-3, warmupSteps: 5, decaySteps: 60 };

function tinyConfig(arch: "transformer" | "mlp" = "transformer"): HeadConfig {
  return parseHeadConfig({
    arch,
    horizon: H,
    actionDim: A,
    obs: [
      { name: "state", key: "observation.state", shape: [S] },
      { name: "tokens", key: "observation.tokens", shape: [2, 5] },
    ],
    transformer: { width: 32, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 16 },
    mlp: { width: 64, depth: 2, timeEmbedDim: 16 },
  });
}

/** Random batches with ragged padding (episode ends inside the chunk). */
function source(): BatchSource {
  return {
    next(size: number, rng: Rng): Batch {
      const isPad = new Uint8Array(size * H);
      for (let b = 0; b < size; b++) {
        const live = rng.uniform() < 0.3 ? 1 + rng.int(H) : H;
        isPad.fill(1, b * H + live, (b + 1) * H);
      }
      return {
        size,
        obs: { state: rng.normalArray(size * S), tokens: rng.normalArray(size * 10) },
        actions: rng.normalArray(size * H * A),
        isPad,
      };
    },
  };
}

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(a[i]!), Math.abs(b[i]!));
  }
  return diff / Math.max(scale, 1e-12);
}

/** Loss and gradients (by parameter name) of `x` on this thread. */
function gradients(
  head: ActionHead,
  ops: TfjsOps,
  x: LossInputs,
  denominator: number,
): { loss: number; grads: Map<string, Float32Array> } {
  const { value, grads } = tf.variableGrads(() => maskedLoss(head, ops, x, denominator), [...ops.variables().values()]);
  const out = {
    loss: value.dataSync()[0]!,
    grads: new Map([...ops.variables()].map(([n, v]) => [n, grads[v.name]!.dataSync() as Float32Array])),
  };
  tf.dispose([value, ...Object.values(grads)]);
  return out;
}

async function run(workers: number, seed: number, steps: number): Promise<{ loss: number; gradNorm: number }[]> {
  const trainer = new Trainer({ head: buildHead(tinyConfig()), seed, optim: OPTIM, workers });
  try {
    const src = source();
    const out: { loss: number; gradNorm: number }[] = [];
    for (let s = 0; s < steps; s++) {
      const r = await trainer.trainStepAsync(src.next(11, new Rng(500 + s)));
      out.push({ loss: r.loss, gradNorm: r.gradNorm });
    }
    return out;
  } finally {
    trainer.dispose();
  }
}

beforeAll(async () => {
  await useBackend("wasm");
});

describe("shards", () => {
  it("split the samples in order, earlier shards taking the remainder", () => {
    expect(shardSizes(11, 2)).toEqual([6, 5]);
    expect(shardSizes(9, 3)).toEqual([3, 3, 3]);
    expect(shardSizes(1, 3)).toEqual([1, 0, 0]);
    expect(() => shardSizes(4, 0)).toThrow(/parts must be an integer >= 1/);
    const config = tinyConfig();
    const b = source().next(5, new Rng(1));
    const x: LossInputs = {
      size: 5,
      obs: b.obs,
      xt: b.actions,
      t: Float32Array.from([0, 1, 2, 3, 4]),
      target: b.actions,
      isPad: b.isPad,
    };
    const [first, second] = splitInputs(x, 2, config);
    expect(first!.size).toBe(3);
    expect(second!.size).toBe(2);
    expect([...first!.t, ...second!.t]).toEqual([0, 1, 2, 3, 4]);
    expect(Float32Array.from([...first!.obs["tokens"]!, ...second!.obs["tokens"]!])).toEqual(b.obs["tokens"]);
    expect(Uint8Array.from([...first!.isPad, ...second!.isPad])).toEqual(b.isPad);
    expect(second!.xt.length).toBe(2 * H * A);
    expect(() => splitInputs({ ...x, xt: x.xt.subarray(1) }, 2, config)).toThrow(/xt has 159 values, expected 5 x 32/);
  });
});

describe("GradPool", () => {
  it("shard gradients from worker threads sum to the full batch's gradient; no tensor leaks in either thread", async () => {
    const config = tinyConfig();
    const head = buildHead(config);
    const ops = new TfjsOps({ seed: 3 });
    createParams(head, ops);
    const layout = [...ops.variables()].map(([name, v]) => ({ name, shape: v.shape.slice() }));
    const pool = new GradPool({ config, backend: tf.getBackend(), layout, threads: 2 });
    try {
      await pool.ready();
      const vars = [...ops.variables().values()];
      const workerTensors: number[] = [];
      const mainTensors: number[] = [];
      for (let step = 0; step < 4; step++) {
        const b = source().next(10, new Rng(40 + step));
        const rng = new Rng(step);
        const x: LossInputs = {
          size: 10,
          obs: b.obs,
          xt: rng.normalArray(10 * H * A),
          t: rng.normalArray(10),
          target: b.actions,
          isPad: b.isPad,
        };
        const denominator = lossDenominator(b.isPad, A);
        const [own, ...rest] = splitInputs(x, 3, config);
        pool.writeParams(ops.variables());
        const pending = pool.gradients(rest, denominator);
        const full = gradients(head, ops, x, denominator);
        const local = gradients(head, ops, own!, denominator);
        const answers = await pending;
        expect(answers).toHaveLength(2);
        expect(local.loss + answers[0]!.loss + answers[1]!.loss).toBeCloseTo(full.loss, 5);
        // Relative to the largest gradient entry: some entries (attention key biases) are 0 up to rounding.
        const summed = [...full.grads.keys()].flatMap((name) =>
          Array.from(local.grads.get(name)!, (v, i) => v + answers[0]!.grad(name)[i]! + answers[1]!.grad(name)[i]!),
        );
        expect(
          maxRelDiff(
            summed,
            [...full.grads.values()].flatMap((g) => [...g]),
          ),
        ).toBeLessThan(1e-5);
        workerTensors.push(answers[0]!.workerTensors, answers[1]!.workerTensors);
        mainTensors.push(tf.memory().numTensors);
        // Parameters move between steps, as the optimizer would move them.
        tf.tidy(() => {
          for (const v of vars)
            v.assign(tf.add(v, tf.mul(tf.randomNormal(v.shape, 0, 1, "float32", step), tf.scalar(0.01))));
        });
      }
      expect(new Set(workerTensors).size).toBe(1);
      expect(new Set(mainTensors).size).toBe(1);
    } finally {
      await pool.close();
      ops.dispose();
    }
  });

  it("reports a worker's error with the worker's index, and closes", async () => {
    const config = tinyConfig();
    const head = buildHead(config);
    const ops = new TfjsOps({ seed: 3 });
    createParams(head, ops);
    const layout = [...ops.variables()].map(([name, v]) => ({ name, shape: v.shape.slice() }));
    const pool = new GradPool({ config, backend: tf.getBackend(), layout, threads: 1 });
    const b = source().next(2, new Rng(1));
    const bad: LossInputs = {
      size: 2,
      obs: { state: b.obs["state"]! },
      xt: b.actions,
      t: new Float32Array(2),
      target: b.actions,
      isPad: b.isPad,
    };
    pool.writeParams(ops.variables());
    await expect(pool.gradients([bad], 64)).rejects.toThrow(
      /gradient worker 0: batch has no observation feature 'tokens'/,
    );
    await pool.close();
    await expect(pool.gradients([bad], 64)).rejects.toThrow(/after close/);
    ops.dispose();
  });

  it("a head config the main thread does not share is refused at start", async () => {
    const ops = new TfjsOps({ seed: 3 });
    createParams(buildHead(tinyConfig("mlp")), ops);
    const layout = [...ops.variables()].map(([name, v]) => ({ name, shape: v.shape.slice() }));
    const pool = new GradPool({ config: tinyConfig("transformer"), backend: tf.getBackend(), layout, threads: 1 });
    await expect(pool.ready()).rejects.toThrow(/gradient worker 0: .*parameter 'obs\.state\.proj\.weight'/);
    await pool.close();
    ops.dispose();
  });
});

describe("Trainer with workers", () => {
  it("workers = 2 and 3 give workers = 1's losses and gradient norms to ~1e-5, and repeat exactly", async () => {
    const one = await run(1, 7, 4);
    const two = await run(2, 7, 4);
    const twoAgain = await run(2, 7, 4);
    const three = await run(3, 7, 2);
    expect(twoAgain).toEqual(two);
    for (const [i, r] of two.entries()) {
      expect(Math.abs(r.loss - one[i]!.loss) / one[i]!.loss).toBeLessThan(1e-5);
      expect(Math.abs(r.gradNorm - one[i]!.gradNorm) / one[i]!.gradNorm).toBeLessThan(1e-5);
    }
    for (const [i, r] of three.entries()) expect(Math.abs(r.loss - one[i]!.loss) / one[i]!.loss).toBeLessThan(1e-5);
  });

  it("trains through fit with no tensor leaks; trainStep refuses; a bad workers count is refused", async () => {
    const trainer = new Trainer({ head: buildHead(tinyConfig("mlp")), seed: 1, optim: OPTIM, workers: 2 });
    expect(trainer.workers).toBe(2);
    expect(() => trainer.trainStep(source().next(4, new Rng(0)))).toThrow(/with workers = 2 call trainStepAsync/);
    await trainer.trainStepAsync(source().next(4, new Rng(0)));
    const before = tf.memory().numTensors;
    const summary = await fit({ trainer, source: source(), steps: 12, batchSize: 9, seed: 1 });
    expect(summary.step).toBe(12);
    expect(Number.isFinite(summary.trainLoss)).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
    trainer.dispose();
    expect(() => new Trainer({ head: buildHead(tinyConfig()), seed: 1, workers: 0 })).toThrow(
      /workers must be an integer >= 1, got 0/,
    );
  });
});

describe("defaultWorkers", () => {
  it("uses a second thread only with 2+ cores and >= 1000 training FLOPs per parameter", () => {
    const small = buildHead(tinyConfig());
    const trainer = new Trainer({ head: small, seed: 0 });
    const f = headFlops(small, 16);
    expect(flopsPerParam(small, 16)).toBeCloseTo((3 * (f.encode + f.velocity)) / trainer.parameterCount(), 6);
    trainer.dispose();
    const big = buildHead(parseHeadConfig({ obs: [{ name: "state", key: "observation.state", shape: [32] }] }));
    expect(flopsPerParam(big, 8)).toBeGreaterThan(1000);
    const cores = vi.spyOn(os, "availableParallelism");
    try {
      cores.mockReturnValue(2);
      expect(defaultWorkers(big, 8)).toBe(2);
      expect(defaultWorkers(big, 1)).toBe(1);
      expect(defaultWorkers(small, 16)).toBe(1);
      cores.mockReturnValue(1);
      expect(defaultWorkers(big, 32)).toBe(1);
    } finally {
      cores.mockRestore();
    }
  });
});

describe("process exit", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "actionflow-parallel-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("a process training with workers exits by itself, whether or not it disposed its trainer", async () => {
    const root = join(import.meta.dirname, "..", "..");
    const script = join(dir, "exit.mts");
    await writeFile(
      script,
      [
        `import { parseHeadConfig } from ${JSON.stringify(join(root, "policy/net/config.ts"))};`,
        `import { buildHead } from ${JSON.stringify(join(root, "policy/net/network.ts"))};`,
        `import { Rng } from ${JSON.stringify(join(root, "policy/random.ts"))};`,
        `import { useBackend } from ${JSON.stringify(join(root, "training/backend/registry.ts"))};`,
        `import { Trainer } from ${JSON.stringify(join(root, "training/trainer.ts"))};`,
        `await useBackend("wasm");`,
        `const config = parseHeadConfig({ arch: "mlp", horizon: 4, actionDim: 2, obs: [{ name: "s", key: "s", shape: [2] }], mlp: { width: 16, depth: 1, timeEmbedDim: 8 } });`,
        `const rng = new Rng(0);`,
        `const trainer = new Trainer({ head: buildHead(config), seed: 0, workers: 2 });`,
        `const r = await trainer.trainStepAsync({ size: 4, obs: { s: rng.normalArray(8) }, actions: rng.normalArray(32), isPad: new Uint8Array(16) });`,
        `if (process.argv[2] === "dispose") trainer.dispose();`,
        `console.log(JSON.stringify({ loss: r.loss }));`,
      ].join("\n"),
    );
    const tsx = join(root, "node_modules", ".bin", "tsx");
    for (const mode of ["dispose", "keep"]) {
      const { stdout } = await promisify(execFile)(tsx, [script, mode], { cwd: root, timeout: 60_000 });
      expect(JSON.parse(stdout.trim().split("\n").at(-1)!).loss).toBeGreaterThan(0);
    }
  });
});
