import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as ort from "onnxruntime-node";
import { buildSampleModel, buildVelocityModel, obsInputName } from "../../../policy/onnx/graphs.ts";
import { DataType, decodeModel, encodeModel, metadataOf, type ModelProto } from "../../../policy/onnx/proto.ts";
import { quantizeColumns, quantizeModel } from "../../../policy/onnx/quantize.ts";
import { Rng } from "../../../policy/random.ts";
import { checkOnnxFile, maxAbsDiff, onnxCheckerUnavailable, runModel } from "./helpers.ts";
import { RAW, randomObs, tinyModel, type TinyModel } from "./fixture.ts";

const BATCH = 3;
const dir = mkdtempSync(join(tmpdir(), "actionflow-quantize-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const why = onnxCheckerUnavailable();
if (why) console.warn(`skipping the official ONNX checker on int8 graphs: ${why}`);

function sampleModel(m: TinyModel): ModelProto {
  return buildSampleModel(m.head, m.weights, m.features, m.norms, { steps: 4, solver: "euler" }).model;
}

/** Seeded feeds of the tiny sample graph: observations, noise and an empty prefix. */
function feedsOf(m: TinyModel, seed: number): Record<string, [Float32Array | BigInt64Array, number[]]> {
  const { horizon: H, actionDim: A } = m.config;
  const raw = randomObs(BATCH, seed);
  const feeds: Record<string, [Float32Array | BigInt64Array, number[]]> = {
    noise: [new Rng(seed + 1).normalArray(BATCH * H * A), [BATCH, H, A]],
    prefix: [new Float32Array(BATCH * H * RAW.action), [BATCH, H, RAW.action]],
    prefix_len: [new BigInt64Array(BATCH), [BATCH]],
  };
  for (const f of m.features) feeds[obsInputName(f.name)] = [raw[f.name]!, [BATCH, ...f.rawShape]];
  return feeds;
}

describe("quantizeColumns", () => {
  it("keeps every weight within half a step of its column's scale, and the column maximum exact", () => {
    const rng = new Rng(3);
    const [k, n] = [17, 5];
    const w = rng.normalArray(k * n);
    for (let i = 0; i < k; i++) w[i * n + 4] = 0; // an all-zero column
    const { q, scale } = quantizeColumns(w, k, n);
    expect(scale[4]).toBe(1);
    for (let j = 0; j < n; j++) {
      let amax = 0;
      for (let i = 0; i < k; i++) amax = Math.max(amax, Math.abs(w[i * n + j]!));
      if (amax > 0) expect(scale[j]).toBeCloseTo(amax / 127, 7);
      for (let i = 0; i < k; i++) {
        expect(Math.abs(q[i * n + j]!)).toBeLessThanOrEqual(127);
        expect(Math.abs(q[i * n + j]! * scale[j]! - w[i * n + j]!)).toBeLessThanOrEqual(scale[j]! / 2 + 1e-7);
      }
    }
  });
});

for (const arch of ["transformer", "mlp"] as const) {
  describe(`int8 quantisation of the ${arch} sample graph`, () => {
    const m = tinyModel(arch);
    const fp32 = sampleModel(m);
    const { model: int8, report } = quantizeModel(fp32, { source: "tiny" });

    it("rewrites every weight product and nothing else, and says so in the metadata", () => {
      const weightProducts = fp32.graph.node.filter(
        (n) =>
          (n.opType === "Gemm" || n.opType === "MatMul") && fp32.graph.initializer.some((t) => t.name === n.input[1]),
      );
      // The fused export's self-attention holds its q | k | v weight: it becomes one QAttention.
      const attention = fp32.graph.node.filter((n) => n.opType === "Attention").length;
      expect(attention).toBe(arch === "transformer" ? 4 * m.config.transformer.depth : 0);
      expect(report.matmuls).toBe(weightProducts.length + attention);
      expect(report.matmuls).toBeGreaterThan(0);
      expect(report.skipped).toEqual([]);
      expect(int8.graph.node.filter((n) => n.opType === "MatMulInteger")).toHaveLength(weightProducts.length);
      expect(int8.graph.node.filter((n) => n.opType === "QAttention")).toHaveLength(attention);
      expect(int8.graph.node.filter((n) => n.opType === "DynamicQuantizeLinear")).toHaveLength(report.matmuls);
      expect(int8.graph.node.some((n) => n.opType === "Gemm" || n.opType === "Attention")).toBe(false);
      const meta = metadataOf(int8);
      expect(meta["actionflow.quantization"]).toBe("int8");
      expect(meta["actionflow.quantized_matmuls"]).toBe(String(report.matmuls));
      expect(meta["actionflow.config"]).toBe(metadataOf(fp32)["actionflow.config"]);
      // int8 tensors only feed MatMulInteger (and QAttention); the other weights stay float32 and unchanged.
      const int8Names = new Set(int8.graph.initializer.filter((t) => t.dataType === 3).map((t) => t.name ?? ""));
      expect(int8Names.size).toBe(report.weights);
      for (const n of int8.graph.node)
        for (const x of n.input) if (int8Names.has(x)) expect(["MatMulInteger", "QAttention"]).toContain(n.opType);
      const quantizedWeights = new Set(
        fp32.graph.node
          .filter((n) => n.opType === "Attention")
          .map((n) => n.input[1])
          .concat(weightProducts.map((n) => n.input[1])),
      );
      for (const t of fp32.graph.initializer) {
        if (quantizedWeights.has(t.name)) continue;
        const kept = int8.graph.initializer.find((u) => u.name === t.name);
        if (kept) expect(kept).toEqual(t);
      }
      expect(int8.graph.initializer.filter((t) => t.dataType === DataType.FLOAT).length).toBeGreaterThan(0);
      expect(report.int8WeightBytes).toBeLessThan(report.fp32WeightBytes / 3);
    });

    it.skipIf(why !== undefined)("passes the official ONNX checker (full_check)", () => {
      const path = join(dir, `${arch}.int8.onnx`);
      writeFileSync(path, encodeModel(int8));
      expect(checkOnnxFile(path)).toBe("");
    });

    it("runs in onnxruntime and stays close to the fp32 graph on the same noise", async () => {
      const feeds = feedsOf(m, 11);
      const a = (await runModel(fp32, feeds))["actions"]!.data;
      const b = (await runModel(int8, feeds))["actions"]!.data;
      expect(b.length).toBe(a.length);
      expect(b.every((x) => Number.isFinite(x))).toBe(true);
      let scale = 0;
      for (let i = 0; i < a.length; i++) {
        scale = Math.max(scale, Math.abs(a[i]!));
      }
      const diff = maxAbsDiff(a, b);
      // 8-bit weights and activations: errors of about 1/256 of each operand's range per product.
      expect(diff).toBeLessThan(0.05 * scale);
      expect(diff).toBeGreaterThan(0); // it really runs the integer kernels
    });

    it("refuses to quantise an int8 model again, naming it", () => {
      expect(() => quantizeModel(int8, { source: "policy.int8.onnx" })).toThrow(
        /policy\.int8\.onnx is already quantised \(actionflow\.quantization = int8\)/,
      );
      const noMeta = { ...int8, metadataProps: [] };
      expect(() => quantizeModel(noMeta, { source: "other.onnx" })).toThrow(
        /other\.onnx is already quantised \(it has a DynamicQuantizeLinear node/,
      );
    });
  });
}

describe("int8 quantisation, other graphs", () => {
  it("quantises the velocity graph and survives an encode/decode round trip", async () => {
    const m = tinyModel("mlp");
    const v = buildVelocityModel(m.head, m.weights, m.features).model;
    const back = decodeModel(encodeModel(v), "velocity");
    const { model, report } = quantizeModel(back, { source: "velocity" });
    expect(report.matmuls).toBeGreaterThan(0);
    const session = await ort.InferenceSession.create(encodeModel(model));
    expect(session.outputNames.length).toBeGreaterThan(0);
    await session.release();
  });

  it("refuses a graph without a weight product", () => {
    const m = tinyModel("mlp");
    const v = buildVelocityModel(m.head, m.weights, m.features).model;
    const bare: ModelProto = { ...v, graph: { ...v.graph, node: [], initializer: [] } };
    expect(() => quantizeModel(bare, { source: "bare.onnx" })).toThrow(
      /bare\.onnx: no MatMul or Gemm with a constant 2-D float weight/,
    );
  });
});
