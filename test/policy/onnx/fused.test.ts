import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { attend, dense, headsKeys, headsValues, modulate } from "../../../policy/net/layers.ts";
import { buildSampleModel, obsInputName } from "../../../policy/onnx/graphs.ts";
import { CONTRIB_DOMAIN, OnnxOps, type Kernels, type NamedArray } from "../../../policy/onnx/ops.ts";
import { metadataOf, type ModelProto } from "../../../policy/onnx/proto.ts";
import { Rng } from "../../../policy/random.ts";
import { maxAbsDiff, modelOf, optimizedModel, runModel } from "./helpers.ts";
import { RAW, randomObs, tinyModel } from "./fixture.ts";

const dir = mkdtempSync(join(tmpdir(), "actionflow-fused-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The kernels onnxruntime runs for a model, after its own optimisations. */
async function kernelsOf(model: ModelProto, name: string): Promise<string[]> {
  return (await optimizedModel(model, dir, name)).graph.node.map((n) => n.opType);
}

describe("fused kernels (OnnxOps kernels: fused)", () => {
  const D = 8;
  const heads = 2;
  const rng = new Rng(3);
  const w = (shape: number[]): NamedArray => ({ shape, data: rng.normalArray(shape.reduce((a, b) => a * b, 1)) });
  const weights = new Map<string, NamedArray>();
  for (const n of ["q", "k", "v", "ck", "cv"]) {
    weights.set(`${n}.weight`, w([D, D]));
    weights.set(`${n}.bias`, w([D]));
  }
  const shiftValues = rng.normalArray(D);
  const scaleValues = rng.normalArray(D);
  /** One adaLN-modulated attention block with self- and cross-attention, as the transformer head writes it. */
  const block = (kernels: Kernels): ModelProto => {
    const ops = new OnnxOps({ weights, kernels });
    const x = ops.input("x", [-1, 5, D]);
    const ctx = ops.input("ctx", [-1, 3, D]);
    const s = { width: D, heads };
    const shift = ops.constant(shiftValues, [1, 1, D]);
    const scale = ops.constant(scaleValues, [1, 1, D]);
    const h = modulate(ops, ops.layerNorm(x, 1e-6), shift, scale);
    const self = attend(
      ops,
      dense(ops, "q", h, D, D),
      headsKeys(ops, dense(ops, "k", h, D, D), 5, s),
      headsValues(ops, dense(ops, "v", h, D, D), 5, s),
      5,
      s,
    );
    const cross = attend(
      ops,
      self,
      headsKeys(ops, dense(ops, "ck", ctx, D, D), 3, s),
      headsValues(ops, dense(ops, "cv", ctx, D, D), 3, s),
      5,
      s,
    );
    ops.output(cross, "y");
    return modelOf(ops);
  };

  it("emits a modulated layer norm, one Attention and one MultiHeadAttention that compute what the plain graph does", async () => {
    const plain = block("plain");
    const fused = block("fused");
    expect(plain.graph.node.some((n) => n.domain === CONTRIB_DOMAIN)).toBe(false);
    const contrib = fused.graph.node.filter((n) => n.domain === CONTRIB_DOMAIN).map((n) => n.opType);
    expect(contrib.sort()).toEqual(["Attention", "MultiHeadAttention"]);
    expect(fused.graph.node.filter((n) => ["Softmax", "Transpose"].includes(n.opType))).toEqual([]);
    const feeds = {
      x: [rng.normalArray(2 * 5 * D), [2, 5, D]] as [Float32Array, number[]],
      ctx: [rng.normalArray(2 * 3 * D), [2, 3, D]] as [Float32Array, number[]],
    };
    const a = (await runModel(plain, feeds))["y"]!;
    const b = (await runModel(fused, feeds))["y"]!;
    expect(b.dims).toEqual(a.dims);
    expect(maxAbsDiff(a.data, b.data)).toBeLessThan(1e-5);
    expect((await kernelsOf(fused, "block-fused")).length).toBeLessThan((await kernelsOf(plain, "block-plain")).length);
  });

  for (const rtcMaxDelay of [0, 2]) {
    it(`the ${rtcMaxDelay > 0 ? "prefix-trained " : ""}transformer's fused sample graph samples the plain one's chunk in fewer kernels`, async () => {
      const m = tinyModel("transformer");
      const head = { ...m.head, config: { ...m.config, rtcMaxDelay } };
      const build = (kernels: Kernels): ModelProto =>
        buildSampleModel(head, m.weights, m.features, m.norms, { steps: 3, solver: "euler", kernels }).model;
      const plain = build("plain");
      const fused = build("fused");
      expect(metadataOf(plain)["actionflow.kernels"]).toBe("plain");
      expect(metadataOf(fused)["actionflow.kernels"]).toBe("fused");
      expect(plain.opsetImport).toEqual([{ domain: "", version: 17 }]);
      expect(fused.opsetImport).toContainEqual({ domain: CONTRIB_DOMAIN, version: 1 });
      const B = 2;
      const { horizon: H, actionDim: A } = m.config;
      const raw = randomObs(B, 4);
      const feeds: Record<string, [Float32Array | BigInt64Array, number[]]> = {
        noise: [new Rng(5).normalArray(B * H * A), [B, H, A]],
        prefix: [new Rng(6).normalArray(B * H * RAW.action), [B, H, RAW.action]],
        prefix_len: [BigInt64Array.of(0n, 2n), [B]],
      };
      for (const f of m.features) feeds[obsInputName(f.name)] = [raw[f.name]!, [B, ...f.rawShape]];
      const a = (await runModel(plain, feeds))["actions"]!.data;
      const b = (await runModel(fused, feeds))["actions"]!.data;
      expect(maxAbsDiff(a, b)).toBeLessThan(1e-5);
      expect(Math.max(...a.map(Math.abs))).toBeGreaterThan(1e-2);
      const kp = await kernelsOf(plain, `tiny-plain-${rtcMaxDelay}`);
      const kf = await kernelsOf(fused, `tiny-fused-${rtcMaxDelay}`);
      expect(kf.length).toBeLessThan(0.8 * kp.length);
      // No per-step modulation left outside the layer norms, no head split around attention.
      expect(kf.filter((op) => op === "Softmax" || op === "Transpose")).toEqual([]);
    });
  }
});
