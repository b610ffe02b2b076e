import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { buildTrainModel, gradOutputName, obsInputName } from "../../../policy/onnx/graphs.ts";
import { TfjsOps } from "../../../policy/net/tfjs-ops.ts";
import { featureSize } from "../../../policy/net/head.ts";
import { Rng } from "../../../policy/random.ts";
import { lossDenominator, maskedLoss, withLossTarget, type LossInputs } from "../../../training/loss.ts";
import { checkOnnxFile, onnxCheckerUnavailable, runModel } from "../../policy/onnx/helpers.ts";
import { encodeModel } from "../../../policy/onnx/proto.ts";
import { tinyModel } from "../../policy/onnx/fixture.ts";

beforeAll(async () => {
  await tf.setBackend("cpu");
  await tf.ready();
});

const BATCH = 3;

/** A seeded batch of loss inputs for a tiny head: some padded steps, t per sample or per token. */
function batchOf(m: ReturnType<typeof tinyModel>, timeTokens: number, seed: number): LossInputs {
  const rng = new Rng(seed);
  const { horizon: H, actionDim: A, objective } = m.config;
  const obs: Record<string, Float32Array> = {};
  for (const f of m.config.obs) obs[f.name] = rng.normalArray(BATCH * featureSize(f.shape));
  const isPad = new Uint8Array(BATCH * H);
  isPad.fill(1, H - 1, H); // sample 0: last step past the episode end
  isPad.fill(1, H, H + 2); // sample 1: a two-step prefix
  if (objective === "regression") {
    return {
      size: BATCH,
      obs,
      xt: new Float32Array(BATCH * H * A),
      t: new Float32Array(BATCH * timeTokens).fill(1),
      target: rng.normalArray(BATCH * H * A),
      isPad,
    };
  }
  const t = Float32Array.from({ length: BATCH * timeTokens }, () => rng.uniform());
  const x = { size: BATCH, obs, xt: rng.normalArray(BATCH * H * A), t, target: rng.normalArray(BATCH * H * A), isPad };
  // MeanFlow: a step length r - t in [0, 1 - t], one sample with r = t.
  if (objective === "meanflow") return { ...x, interval: t.map((ti, i) => (i === 0 ? 0 : rng.uniform() * (1 - ti))) };
  return x;
}

/** Relative Frobenius error |a - b| / max(|b|, floor). */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>, floor: number): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), floor);
}

for (const arch of ["transformer", "mlp"] as const) {
  for (const objective of ["flow", "regression", "meanflow"] as const) {
    describe(`train graph gradients == tfjs variableGrads (${arch}, ${objective})`, () => {
      const m = tinyModel(arch, { objective });
      const { horizon: H, actionDim: A } = m.config;
      for (const timeTokens of objective === "flow" ? [1, H] : [1]) {
        it(`t [batch, ${timeTokens}]: loss and every gradient agree to 1e-4 relative`, async () => {
          const x = batchOf(m, timeTokens, 21);
          const denominator = lossDenominator(x.isPad, A);
          const { model, params } = buildTrainModel(m.head, m.config.obs, { timeTokens });
          const feeds: Record<string, [Float32Array, number[]]> = {
            xt: [x.xt, [BATCH, H, A]],
            t: [x.t, [BATCH, timeTokens]],
            ...(x.interval ? { interval: [x.interval, [BATCH, timeTokens]] as [Float32Array, number[]] } : {}),
            target: [x.target, [BATCH, H, A]],
            is_pad: [Float32Array.from(x.isPad), [BATCH, H]],
            denominator: [Float32Array.from([denominator]), []],
          };
          for (const f of m.config.obs) feeds[obsInputName(f.name)] = [x.obs[f.name]!, [BATCH, ...f.shape]];
          for (const p of params) feeds[p.name] = [m.weights.get(p.name)!.data, p.shape];
          const out = await runModel(model, feeds);

          const ops = new TfjsOps({ seed: 0, weights: m.weights });
          maskedLoss(m.head, ops, x, denominator).dispose(); // creates the variables
          // MeanFlow: the target v - (t - r) du/dt by double backward and the adaptive weights,
          // against the training graph's forward-mode tangents; flow, regression: x itself.
          const xl = withLossTarget(m.head, ops, x);
          if (objective === "meanflow") {
            expect(xl.weight).toHaveLength(BATCH);
            // The JVP term is there: the target moved off v wherever r != t.
            expect(xl.target.some((v, i) => Math.abs(v - x.target[i]!) > 1e-3)).toBe(true);
          }
          const { value, grads } = tf.variableGrads(
            () => maskedLoss(m.head, ops, xl, denominator),
            [...ops.variables().values()],
          );
          const ref = {
            loss: value.dataSync()[0]!,
            g: new Map([...ops.variables()].map(([k, v]) => [k, grads[v.name]!.dataSync() as Float32Array])),
          };
          tf.dispose([value, ...Object.values(grads)]);
          ops.dispose();

          expect(params.map((p) => p.name).sort()).toEqual([...ref.g.keys()].sort());
          expect(Math.abs(out.loss!.data[0]! - ref.loss) / ref.loss).toBeLessThan(1e-5);
          // Relative to the parameter's own gradient, with a floor of 1e-3 of the mean gradient norm
          // per parameter: a key bias's gradient is exactly 0 (softmax ignores a per-query shift), so
          // both engines return rounding noise there.
          let total = 0;
          for (const g of ref.g.values()) total += g.reduce((s, v) => s + v * v, 0);
          const floor = 1e-3 * Math.sqrt(total / params.length);
          let worst = 0;
          let worstName = "";
          for (const p of params) {
            const mine = out[gradOutputName(p.name)]!;
            expect(mine.dims, p.name).toEqual(p.shape);
            const e = relErr(mine.data, ref.g.get(p.name)!, floor);
            if (e > worst) worstName = p.name;
            worst = Math.max(worst, e);
            expect(e, p.name).toBeLessThan(1e-4);
          }
          console.log(
            `${arch} ${objective} T=${timeTokens}: worst relative gradient error ${worst.toExponential(2)} (${worstName})`,
          );
          expect(worst).toBeGreaterThan(0); // two float32 engines: a zero would mean one side was skipped
        });
      }
    });
  }
}

const why = onnxCheckerUnavailable();
if (why) console.warn(`skipping the official ONNX checker on the training graph: ${why}`);

describe.skipIf(why !== undefined)("official ONNX checker (python3-onnx, full_check) on the training graph", () => {
  const dir = mkdtempSync(join(tmpdir(), "actionflow-train-check-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  for (const arch of ["transformer", "mlp"] as const) {
    it(`accepts the ${arch} training graph (t per sample and per token)`, () => {
      const m = tinyModel(arch);
      for (const timeTokens of [1, m.config.horizon]) {
        const file = join(dir, `${arch}-${timeTokens}.onnx`);
        writeFileSync(file, encodeModel(buildTrainModel(m.head, m.config.obs, { timeTokens }).model));
        expect(checkOnnxFile(file)).toBe("");
      }
    });
  }
});
