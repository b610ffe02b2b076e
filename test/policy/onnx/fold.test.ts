import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TfjsOps } from "../../../policy/net/tfjs-ops.ts";
import { buildSampleModel, obsInputName } from "../../../policy/onnx/graphs.ts";
import type { ModelProto } from "../../../policy/onnx/proto.ts";
import { Rng } from "../../../policy/random.ts";
import { maxAbsDiff, optimizedModel, runModel } from "./helpers.ts";
import { RAW, randomObs, tinyModel } from "./fixture.ts";

const STEPS = 3;
const BATCH = 2;
const dir = mkdtempSync(join(tmpdir(), "actionflow-fold-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(async () => {
  await tf.setBackend("cpu");
  await tf.ready();
});

/** The graph onnxruntime runs after its optimisations (constant folding, fusions), as it saves it. */
const optimized = (model: ModelProto, name: string): Promise<ModelProto> => optimizedModel(model, dir, name);

const opCount = (m: ModelProto, op: string): number => m.graph.node.filter((n) => n.opType === op).length;
const readers = (m: ModelProto, param: RegExp): string[] =>
  m.graph.node.filter((n) => n.input.some((i) => param.test(i))).map((n) => `${n.opType}(${n.input.join(", ")})`);

for (const arch of ["transformer", "mlp"] as const) {
  describe(`the sample graph's time path is folded by onnxruntime (${arch})`, () => {
    const m = tinyModel(arch);
    const build = (rtcMaxDelay: number): ModelProto =>
      buildSampleModel({ ...m.head, config: { ...m.config, rtcMaxDelay } }, m.weights, m.features, m.norms, {
        steps: STEPS,
        solver: "euler",
      }).model;

    it("plain and prefix-trained exports: no time embedding and no time-path layer left in the per-chunk run", async () => {
      for (const rtcMaxDelay of [0, 2]) {
        const opt = await optimized(build(rtcMaxDelay), `${arch}-${rtcMaxDelay}`);
        expect(opCount(opt, "Sin") + opCount(opt, "Cos")).toBe(0);
        // The transformer's modulations and its whole time MLP are constants; the mlp's first time
        // layer too (with a prefix, its second layer reads the per-sample mask and stays).
        const timeParams = arch === "transformer" ? /^(time\.\d|blocks\.\d+\.ada|final\.ada)\./ : /^time\.0\./;
        expect(readers(opt, timeParams)).toEqual([]);
      }
    });

    it("the prefix-trained export runs at most one product with the prefix mask per conditioning and step more", async () => {
      const plain = await optimized(build(0), `${arch}-plain`);
      const prefix = await optimized(build(2), `${arch}-prefix`);
      // transformer: every block's modulation pieces (9) and the final layer's (2) picked per token;
      // mlp: the mask's product with the first time layer's rows and the second time layer.
      const perStep = arch === "transformer" ? 9 * m.config.transformer.depth + 2 : 2;
      const extra = prefix.graph.node.length - plain.graph.node.length;
      expect(extra).toBeGreaterThan(0);
      // A few nodes more once per chunk (the mask's one-hot).
      expect(extra).toBeLessThanOrEqual(STEPS * perStep + 4);
    });

    it("without a committed prefix, the prefix-trained export samples what the plain one does", async () => {
      const H = m.config.horizon;
      const raw = randomObs(BATCH, 3);
      const feeds: Record<string, [Float32Array | BigInt64Array, number[]]> = {
        noise: [new Rng(5).normalArray(BATCH * H * m.config.actionDim), [BATCH, H, m.config.actionDim]],
        prefix: [new Rng(6).normalArray(BATCH * H * RAW.action), [BATCH, H, RAW.action]],
        prefix_len: [new BigInt64Array(BATCH), [BATCH]],
      };
      for (const f of m.features) feeds[obsInputName(f.name)] = [raw[f.name]!, [BATCH, ...f.rawShape]];
      const a = (await runModel(build(0), feeds))["actions"]!.data;
      const b = (await runModel(build(2), feeds))["actions"]!.data;
      // The transformer picks the very conditioning the plain export computes (exact); the mlp sums
      // its first time layer in another order (float rounding).
      expect(maxAbsDiff(a, b)).toBeLessThan(arch === "transformer" ? 1e-6 : 1e-5);
    });
  });
}

for (const arch of ["transformer", "mlp"] as const) {
  describe(`a clean prefix by mask (${arch}, tfjs)`, () => {
    const m = tinyModel(arch);
    const { horizon: H, actionDim: A } = m.config;
    const maskRows = [1, 1, 0, 0, 1, 0, 0, 0].slice(0, 2 * H);

    it("the time path at t = 1 and t, picked per token, equals the per-token time mask + (1 - mask) t", () => {
      const ops = new TfjsOps({ seed: 0, weights: m.weights, mode: "frozen" });
      const [byMask, perToken] = tf.tidy(() => {
        const obs = {
          state: tf.tensor(new Rng(1).normalArray(2 * 6), [2, 6]),
          emb: tf.tensor(new Rng(2).normalArray(2 * 6), [2, 2, 3]),
        };
        const ctx = m.head.encode(ops, obs);
        const xt = tf.tensor(new Rng(4).normalArray(2 * H * A), [2, H, A]);
        const mask = tf.tensor(maskRows, [2, H]);
        const t = 0.3;
        const a = m.head.velocity(ops, ctx, xt, tf.tensor([[t]]), { timeTokens: 1, prefixMask: mask });
        const b = m.head.velocity(ops, ctx, xt, tf.add(mask, tf.mul(tf.sub(1, mask), t)));
        return [a.dataSync() as Float32Array, b.dataSync() as Float32Array];
      });
      ops.dispose();
      expect(maxAbsDiff(byMask!, perToken!)).toBeLessThan(1e-5);
      expect(Math.max(...perToken!.map(Math.abs))).toBeGreaterThan(1e-2);
    });

    it("refuses an interval or per-token time with a prefix mask", () => {
      const ops = new TfjsOps({ seed: 0, weights: m.weights, mode: "frozen" });
      tf.tidy(() => {
        const mask = tf.tensor(maskRows, [2, H]);
        expect(() =>
          m.head
            .timeConditioning(ops, tf.zeros([1, 1]), {
              timeTokens: 1,
              prefixMask: mask,
              interval: tf.zeros([1, 1]),
            })
            .get(arch === "transformer" ? "blocks.0.shift1" : "time"),
        ).toThrow(/takes no interval/);
        expect(() =>
          m.head
            .timeConditioning(ops, tf.zeros([1, H]), { prefixMask: mask })
            .get(arch === "transformer" ? "blocks.0.shift1" : "time"),
        ).toThrow(/1 time token/);
      });
      ops.dispose();
    });
  });
}
