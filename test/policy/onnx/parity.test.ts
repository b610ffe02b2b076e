import { beforeAll, describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { buildSampleModel, buildVelocityModel, obsInputName } from "../../../policy/onnx/graphs.ts";
import { TfjsOps } from "../../../policy/net/tfjs-ops.ts";
import { sampleChunkTfjs, tfjsSpace } from "../../../policy/sampling/tfjs.ts";
import { solverByName, uniformGrid, type SolverName } from "../../../policy/flow/solvers.ts";
import { denormalize, normalize } from "../../../policy/normalize.ts";
import { Rng } from "../../../policy/random.ts";
import { maxAbsDiff, runModel } from "./helpers.ts";
import { RAW, randomObs, tinyModel, type TinyModel } from "./fixture.ts";

const BATCH = 2;
const SOLVERS: SolverName[] = ["euler", "midpoint", "heun", "rk4"];

beforeAll(async () => {
  await tf.setBackend("cpu");
  await tf.ready();
});

/** Raw observations -> normalised, padded model inputs (as tfjs tensors). */
function normalisedObs(m: TinyModel, raw: Record<string, Float32Array>): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  for (const f of m.features) {
    const rawD = f.rawShape[f.rawShape.length - 1]!;
    const d = f.shape[f.shape.length - 1]!;
    const norm = m.norms.obs[f.name]!;
    const x = normalize(raw[f.name]!, { scale: norm.scale.slice(0, rawD), offset: norm.offset.slice(0, rawD) });
    const rows = x.length / rawD;
    const padded = new Float32Array(rows * d);
    for (let r = 0; r < rows; r++) padded.set(x.subarray(r * rawD, (r + 1) * rawD), r * d);
    out[f.name] = tf.tensor(padded, [BATCH, ...f.shape]);
  }
  return out;
}

/** Normalised chunk [batch, H, A] -> raw [batch, H, rawA]. */
function rawChunk(m: TinyModel, x: Float32Array): Float32Array {
  const { horizon: H, actionDim: A } = m.config;
  const y = denormalize(x, m.norms.action);
  const out = new Float32Array(BATCH * H * RAW.action);
  for (let r = 0; r < BATCH * H; r++) out.set(y.subarray(r * A, r * A + RAW.action), r * RAW.action);
  return out;
}

/** Observation feeds plus an empty prefix (zeros, length 0). */
function feedsOf(
  m: TinyModel,
  raw: Record<string, Float32Array>,
): Record<string, [Float32Array | BigInt64Array, number[]]> {
  const H = m.config.horizon;
  const feeds: Record<string, [Float32Array | BigInt64Array, number[]]> = {
    prefix: [new Float32Array(BATCH * H * RAW.action), [BATCH, H, RAW.action]],
    prefix_len: [new BigInt64Array(BATCH), [BATCH]],
  };
  for (const f of m.features) feeds[obsInputName(f.name)] = [raw[f.name]!, [BATCH, ...f.rawShape]];
  return feeds;
}

for (const arch of ["transformer", "mlp"] as const) {
  describe(`ONNX sample graph == tfjs reference (${arch})`, () => {
    const m = tinyModel(arch);
    const raw = randomObs(BATCH, 11);
    const { horizon: H, actionDim: A } = m.config;
    const noise = new Rng(5).normalArray(BATCH * H * A);

    /** Runs `model` with `prefix` kept for `lens[b]` steps; also the prefix normalised and padded, and its mask. */
    const runWithPrefix = async (model: Parameters<typeof runModel>[0], prefix: Float32Array, lens: number[]) => {
      const out = await runModel(model, {
        ...feedsOf(m, raw),
        noise: [noise, [BATCH, H, A]],
        prefix: [prefix, [BATCH, H, RAW.action]],
        prefix_len: [BigInt64Array.from(lens.map(BigInt)), [BATCH]],
      });
      const prefN = new Float32Array(BATCH * H * A);
      const pn = normalize(prefix, {
        scale: m.norms.action.scale.slice(0, RAW.action),
        offset: m.norms.action.offset.slice(0, RAW.action),
      });
      for (let r = 0; r < BATCH * H; r++) prefN.set(pn.subarray(r * RAW.action, (r + 1) * RAW.action), r * A);
      const mask = new Float32Array(BATCH * H);
      for (let b = 0; b < BATCH; b++) for (let h = 0; h < lens[b]!; h++) mask[b * H + h] = 1;
      return { out, prefN, mask };
    };

    for (const solver of SOLVERS) {
      it(`${solver}, 3 steps, batch ${BATCH}`, async () => {
        const steps = 3;
        const { model } = buildSampleModel(m.head, m.weights, m.features, m.norms, { steps, solver });
        const out = await runModel(model, { ...feedsOf(m, raw), noise: [noise, [BATCH, H, A]] });
        const ops = new TfjsOps({ seed: 0, weights: m.weights, mode: "frozen" });
        const ref = tf.tidy(
          () =>
            sampleChunkTfjs(m.head, ops, normalisedObs(m, raw), tf.tensor(noise, [BATCH, H, A]), {
              steps,
              solver,
            }).dataSync() as Float32Array,
        );
        ops.dispose();
        expect(out.actions!.dims).toEqual([BATCH, H, RAW.action]);
        const diff = maxAbsDiff(out.actions!.data, rawChunk(m, ref));
        expect(diff).toBeLessThan(1e-4);
      });
    }

    it("one observation token (attention over one key is folded to a constant), rk4", async () => {
      const one = tinyModel(arch, { features: "state" });
      const { model } = buildSampleModel(one.head, one.weights, one.features, one.norms, { steps: 2, solver: "rk4" });
      const out = await runModel(model, { ...feedsOf(one, { state: raw.state! }), noise: [noise, [BATCH, H, A]] });
      const ops = new TfjsOps({ seed: 0, weights: one.weights, mode: "frozen" });
      const ref = tf.tidy(
        () =>
          sampleChunkTfjs(one.head, ops, normalisedObs(one, { state: raw.state! }), tf.tensor(noise, [BATCH, H, A]), {
            steps: 2,
            solver: "rk4",
          }).dataSync() as Float32Array,
      );
      ops.dispose();
      expect(maxAbsDiff(out.actions!.data, rawChunk(one, ref))).toBeLessThan(1e-4);
    });

    it("inpaints an action prefix by replacement (euler, 4 steps)", async () => {
      const steps = 4;
      const { model } = buildSampleModel(m.head, m.weights, m.features, m.norms, { steps, solver: "euler" });
      const prefix = new Rng(9).normalArray(BATCH * H * RAW.action);
      const lens = [2, 0];
      const { out, prefN, mask } = await runWithPrefix(model, prefix, lens);
      // Reference: the same replacement written on tfjs.
      const ops = new TfjsOps({ seed: 0, weights: m.weights, mode: "frozen" });
      const ref = tf.tidy(() => {
        const ctx = m.head.encode(ops, normalisedObs(m, raw));
        const x0 = tf.tensor(noise, [BATCH, H, A]);
        const p = tf.tensor(prefN, [BATCH, H, A]);
        const mk = tf.tensor(mask, [BATCH, H, 1]);
        const grid = uniformGrid(steps);
        let x = x0;
        for (let i = 0; i < steps; i++) {
          const t1 = grid[i + 1]!;
          x = solverByName("euler").step(
            tfjsSpace,
            (xt, t) => m.head.velocity(ops, ctx, xt, tf.fill([BATCH, H], t)),
            x,
            grid[i]!,
            t1,
          );
          const target = tf.add(tf.mul(p, t1), tf.mul(x0, 1 - t1));
          x = tf.add(x, tf.mul(mk, tf.sub(target, x)));
        }
        return x.dataSync() as Float32Array;
      });
      ops.dispose();
      const got = out.actions!.data;
      expect(maxAbsDiff(got, rawChunk(m, ref))).toBeLessThan(1e-4);
      // The prefix comes back exactly (up to float rounding) where it was given, and only there.
      for (let h = 0; h < 2; h++) {
        for (let a = 0; a < RAW.action; a++)
          expect(Math.abs(got[h * RAW.action + a]! - prefix[h * RAW.action + a]!)).toBeLessThan(1e-4);
      }
    });

    it("a prefix-trained head (rtcMaxDelay > 0) sees the prefix clean at per-token time 1 (midpoint, 3 steps)", async () => {
      const steps = 3;
      const config = { ...m.config, rtcMaxDelay: 2 };
      const head = { ...m.head, config };
      const { model } = buildSampleModel(head, m.weights, m.features, m.norms, { steps, solver: "midpoint" });
      const meta = Object.fromEntries((model.metadataProps ?? []).map((p) => [p.key, p.value]));
      expect(meta["actionflow.prefix"]).toBe("clean");
      expect(meta["actionflow.rtc_max_delay"]).toBe("2");
      const prefix = new Rng(9).normalArray(BATCH * H * RAW.action);
      const lens = [2, 1];
      const { out, prefN, mask } = await runWithPrefix(model, prefix, lens);
      // Reference written on tfjs: every evaluation gets the clean prefix and per-token time 1 there.
      const ops = new TfjsOps({ seed: 0, weights: m.weights, mode: "frozen" });
      const ref = tf.tidy(() => {
        const ctx = m.head.encode(ops, normalisedObs(m, raw));
        const p = tf.tensor(prefN, [BATCH, H, A]);
        const mk = tf.tensor(mask, [BATCH, H, 1]);
        const mk2 = tf.tensor(mask, [BATCH, H]);
        const clean = (x: tf.Tensor): tf.Tensor => tf.add(x, tf.mul(mk, tf.sub(p, x)));
        const f = (xt: tf.Tensor, t: number): tf.Tensor =>
          m.head.velocity(ops, ctx, clean(xt), tf.add(tf.mul(tf.sub(1, mk2), t), mk2));
        const grid = uniformGrid(steps);
        let x = clean(tf.tensor(noise, [BATCH, H, A]));
        for (let i = 0; i < steps; i++)
          x = clean(solverByName("midpoint").step(tfjsSpace, f, x, grid[i]!, grid[i + 1]!));
        return x.dataSync() as Float32Array;
      });
      ops.dispose();
      const got = out.actions!.data;
      expect(maxAbsDiff(got, rawChunk(m, ref))).toBeLessThan(1e-4);
      for (let a = 0; a < RAW.action; a++) {
        expect(Math.abs(got[a]! - prefix[a]!)).toBeLessThan(1e-4);
        expect(Math.abs(got[RAW.action + a]! - prefix[RAW.action + a]!)).toBeLessThan(1e-4);
      }
      // Sample 0 keeps 2 steps, sample 1 only 1: its step 1 is sampled, not the prefix.
      const s1 = H * RAW.action + RAW.action;
      expect(Math.abs(got[s1]! - prefix[s1]!)).toBeGreaterThan(1e-3);
    });

    it("regression head: one evaluation at xt = 0, t = 1, no noise input", async () => {
      const r = tinyModel(arch, { objective: "regression" });
      const { model } = buildSampleModel(r.head, r.weights, r.features, r.norms, { steps: 10, solver: "euler" });
      expect(model.graph.input.map((i) => i.name)).not.toContain("noise");
      const out = await runModel(model, feedsOf(r, raw));
      const ops = new TfjsOps({ seed: 0, weights: r.weights, mode: "frozen" });
      const ref = tf.tidy(
        () => sampleChunkTfjs(r.head, ops, normalisedObs(r, raw), tf.zeros([BATCH, H, A])).dataSync() as Float32Array,
      );
      ops.dispose();
      expect(maxAbsDiff(out.actions!.data, rawChunk(r, ref))).toBeLessThan(1e-4);
    });

    describe("meanflow head", () => {
      const mf = tinyModel(arch, { objective: "meanflow" });
      for (const steps of [1, 2]) {
        it(`${steps} step(s): the sample graph == the tfjs sampler == z_{t'} = z_t + (t' - t) u(z_t, t, t') written out`, async () => {
          const { model } = buildSampleModel(mf.head, mf.weights, mf.features, mf.norms, { steps, solver: "rk4" });
          const meta = Object.fromEntries((model.metadataProps ?? []).map((p) => [p.key, p.value]));
          expect(meta["actionflow.solver"]).toBe("meanflow");
          expect(meta["actionflow.nfe"]).toBe(String(steps));
          const out = await runModel(model, { ...feedsOf(mf, raw), noise: [noise, [BATCH, H, A]] });
          const ops = new TfjsOps({ seed: 0, weights: mf.weights, mode: "frozen" });
          const obsN = normalisedObs(mf, raw);
          const sampled = tf.tidy(
            () =>
              sampleChunkTfjs(mf.head, ops, obsN, tf.tensor(noise, [BATCH, H, A]), {
                steps,
              }).dataSync() as Float32Array,
          );
          const written = tf.tidy(() => {
            const ctx = mf.head.encode(ops, obsN);
            const grid = uniformGrid(steps);
            let x = tf.tensor(noise, [BATCH, H, A]);
            for (let i = 0; i < steps; i++) {
              const [t0, t1] = [grid[i]!, grid[i + 1]!];
              const u = mf.head.velocity(ops, ctx, x, tf.fill([BATCH, 1], t0), {
                timeTokens: 1,
                interval: tf.fill([BATCH, 1], t1 - t0),
              });
              x = tf.add(x, tf.mul(u, t1 - t0));
            }
            return x.dataSync() as Float32Array;
          });
          ops.dispose();
          tf.dispose(Object.values(obsN));
          expect(maxAbsDiff(sampled, written)).toBeLessThan(1e-5);
          expect(maxAbsDiff(out.actions!.data, rawChunk(mf, sampled))).toBeLessThan(1e-4);
        });
      }

      it("the interval input matters: u(z, 0, 1) differs from the velocity u(z, 0, 0)", () => {
        const ops = new TfjsOps({ seed: 0, weights: mf.weights, mode: "frozen" });
        const obsN = normalisedObs(mf, raw);
        const [avg, inst] = [1, 0].map((h) =>
          tf.tidy(() => {
            const ctx = mf.head.encode(ops, obsN);
            return mf.head
              .velocity(ops, ctx, tf.tensor(noise, [BATCH, H, A]), tf.zeros([BATCH, 1]), {
                timeTokens: 1,
                interval: tf.fill([BATCH, 1], h),
              })
              .dataSync() as Float32Array;
          }),
        );
        ops.dispose();
        tf.dispose(Object.values(obsN));
        expect(maxAbsDiff(avg!, inst!)).toBeGreaterThan(1e-3);
      });

      it("2 steps with a prefix inpainted by replacement keeps the prefix", async () => {
        const { model } = buildSampleModel(mf.head, mf.weights, mf.features, mf.norms, { steps: 2, solver: "euler" });
        const prefix = new Rng(9).normalArray(BATCH * H * RAW.action);
        const out = await runModel(model, {
          ...feedsOf(mf, raw),
          noise: [noise, [BATCH, H, A]],
          prefix: [prefix, [BATCH, H, RAW.action]],
          prefix_len: [BigInt64Array.from([2n, 0n]), [BATCH]],
        });
        const got = out.actions!.data;
        for (let i = 0; i < 2 * RAW.action; i++) expect(Math.abs(got[i]! - prefix[i]!)).toBeLessThan(1e-4);
        expect(Math.abs(got[2 * RAW.action]! - prefix[2 * RAW.action]!)).toBeGreaterThan(1e-3);
      });
    });

    it("velocity graph == one tfjs velocity evaluation", async () => {
      const { model } = buildVelocityModel(m.head, m.weights, m.features);
      const rng = new Rng(3);
      const xt = rng.normalArray(BATCH * H * A);
      const t = Float32Array.from({ length: BATCH * H }, () => rng.uniform());
      const obsN = normalisedObs(m, raw);
      const feeds: Record<string, [Float32Array, number[]]> = { xt: [xt, [BATCH, H, A]], t: [t, [BATCH, H]] };
      for (const f of m.features)
        feeds[obsInputName(f.name)] = [obsN[f.name]!.dataSync() as Float32Array, [BATCH, ...f.shape]];
      const out = await runModel(model, feeds);
      const ops = new TfjsOps({ seed: 0, weights: m.weights, mode: "frozen" });
      const ref = tf.tidy(
        () =>
          m.head
            .velocity(ops, m.head.encode(ops, obsN), tf.tensor(xt, [BATCH, H, A]), tf.tensor(t, [BATCH, H]))
            .dataSync() as Float32Array,
      );
      ops.dispose();
      tf.dispose(Object.values(obsN));
      expect(out.velocity!.dims).toEqual([BATCH, H, A]);
      expect(maxAbsDiff(out.velocity!.data, ref)).toBeLessThan(1e-4);
    });
  });
}
