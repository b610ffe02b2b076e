import { describe, expect, it } from "vitest";
import { OnnxOps, broadcast } from "../../../policy/onnx/ops.ts";
import { decodeModel, encodeModel, floatValues, metadataOf } from "../../../policy/onnx/proto.ts";
import { maxAbsDiff, modelOf, runModel } from "./helpers.ts";

const f32 = (xs: number[]): Float32Array => Float32Array.from(xs);

describe("onnx proto", () => {
  it("round-trips a model through protobuf with the official field numbers", () => {
    const ops = new OnnxOps({ weights: new Map([["w", { shape: [2], data: f32([1.5, -2]) }]]) });
    const x = ops.input("x", [-1, 2]);
    ops.output(ops.add(x, ops.param({ name: "w", shape: [2], init: { kind: "zeros" } })), "y");
    const model = { ...modelOf(ops), metadataProps: [{ key: "k", value: "v" }] };
    const bytes = encodeModel(model);
    // ModelProto.ir_version is field 1 (varint): tag byte 0x08 then 8.
    expect([bytes[0], bytes[1]]).toEqual([0x08, 8]);
    const back = decodeModel(bytes);
    expect(back.irVersion).toBe(8);
    expect(back.opsetImport[0]!.version).toBe(17);
    expect(metadataOf(back)).toEqual({ k: "v" });
    expect(back.graph.node.map((n) => n.opType)).toEqual(["Add", "Identity"]);
    expect(back.graph.input[0]!.type.tensorType.shape!.dim).toEqual([{ dimParam: "batch" }, { dimValue: 2 }]);
    expect(Array.from(floatValues(back.graph.initializer[0]!))).toEqual([1.5, -2]);
  });

  it("says which file is not ONNX", () => {
    expect(() => decodeModel(new Uint8Array([0xff, 0xff, 0xff]), "bad.onnx")).toThrow(/bad\.onnx/);
  });
});

describe("OnnxOps on onnxruntime", () => {
  it("computes elementwise ops, scale, sin/cos/sigmoid/silu against hand values", async () => {
    const ops = new OnnxOps({ weights: new Map() });
    const a = ops.input("a", [-1, 3]);
    const b = ops.input("b", [-1, 3]);
    const c = ops.constant(f32([10, 20, 30]), [3]);
    ops.output(ops.add(a, c), "add");
    ops.output(ops.sub(a, b), "sub");
    ops.output(ops.mul(a, b), "mul");
    ops.output(ops.scale(a, 0.5), "scale");
    ops.output(ops.sin(a), "sin");
    ops.output(ops.cos(a), "cos");
    ops.output(ops.sigmoid(a), "sigmoid");
    ops.output(ops.silu(a), "silu");
    const av = [0, 1, -2, 3, 0.5, -0.25];
    const bv = [2, 2, 2, -1, -1, -1];
    const r = await runModel(modelOf(ops), { a: [f32(av), [2, 3]], b: [f32(bv), [2, 3]] });
    const sig = (x: number): number => 1 / (1 + Math.exp(-x));
    expect(
      maxAbsDiff(
        r.add!.data,
        av.map((x, i) => x + [10, 20, 30][i % 3]!),
      ),
    ).toBeLessThan(1e-6);
    expect(
      maxAbsDiff(
        r.sub!.data,
        av.map((x, i) => x - bv[i]!),
      ),
    ).toBeLessThan(1e-6);
    expect(
      maxAbsDiff(
        r.mul!.data,
        av.map((x, i) => x * bv[i]!),
      ),
    ).toBeLessThan(1e-6);
    expect(
      maxAbsDiff(
        r.scale!.data,
        av.map((x) => x / 2),
      ),
    ).toBeLessThan(1e-6);
    expect(maxAbsDiff(r.sin!.data, av.map(Math.sin))).toBeLessThan(1e-6);
    expect(maxAbsDiff(r.cos!.data, av.map(Math.cos))).toBeLessThan(1e-6);
    expect(maxAbsDiff(r.sigmoid!.data, av.map(sig))).toBeLessThan(1e-6);
    expect(
      maxAbsDiff(
        r.silu!.data,
        av.map((x) => x * sig(x)),
      ),
    ).toBeLessThan(1e-6);
  });

  it("computes matMul (shared and batched, transposeB), reshape, transpose, concat, slice", async () => {
    const W = f32([1, 2, 3, 4, 5, 6]); // [3, 2]
    const ops = new OnnxOps({ weights: new Map([["w", { shape: [3, 2], data: W }]]) });
    const x = ops.input("x", [-1, 2, 3]);
    const w = ops.param({ name: "w", shape: [3, 2], init: { kind: "glorot" } });
    expect(ops.param({ name: "w", shape: [3, 2], init: { kind: "glorot" } })).toBe(w);
    const y = ops.matMul(x, w); // [b, 2, 2]
    ops.output(y, "mm");
    ops.output(ops.matMul(x, x, { transposeB: true }), "gram"); // [b, 2, 2]
    ops.output(ops.reshape(x, [-1, 6]), "flat");
    ops.output(ops.transpose(x, [0, 2, 1]), "tr");
    ops.output(ops.concat([x, ops.scale(x, 2)], 2), "cat");
    ops.output(ops.slice(x, 2, 1, 3), "sl");
    const xv = [1, 0, -1, 2, 3, 4, 0.5, 0.5, 0.5, -1, 0, 1]; // [2, 2, 3]
    const r = await runModel(modelOf(ops), { x: [f32(xv), [2, 2, 3]] });
    const at = (b: number, i: number, k: number): number => xv[b * 6 + i * 3 + k]!;
    const mm: number[] = [];
    const gram: number[] = [];
    const tr: number[] = [];
    const cat: number[] = [];
    const sl: number[] = [];
    for (let b = 0; b < 2; b++) {
      for (let i = 0; i < 2; i++) {
        for (let j = 0; j < 2; j++) {
          let s = 0;
          let g = 0;
          for (let k = 0; k < 3; k++) {
            s += at(b, i, k) * W[k * 2 + j]!;
            g += at(b, i, k) * at(b, j, k);
          }
          mm.push(s);
          gram.push(g);
        }
      }
      for (let k = 0; k < 3; k++) for (let i = 0; i < 2; i++) tr.push(at(b, i, k));
      for (let i = 0; i < 2; i++) {
        for (let k = 0; k < 6; k++) cat.push(k < 3 ? at(b, i, k) : 2 * at(b, i, k - 3));
        for (let k = 1; k < 3; k++) sl.push(at(b, i, k));
      }
    }
    expect(r.mm!.dims).toEqual([2, 2, 2]);
    expect(maxAbsDiff(r.mm!.data, mm)).toBeLessThan(1e-5);
    expect(maxAbsDiff(r.gram!.data, gram)).toBeLessThan(1e-5);
    expect(r.flat!.dims).toEqual([2, 6]);
    expect(Array.from(r.flat!.data)).toEqual(xv);
    expect(Array.from(r.tr!.data)).toEqual(tr);
    expect(Array.from(r.cat!.data)).toEqual(cat);
    expect(Array.from(r.sl!.data)).toEqual(sl);
  });

  it("computes softmax over the last axis and layerNorm without affine", async () => {
    const ops = new OnnxOps({ weights: new Map() });
    const x = ops.input("x", [-1, 4]);
    ops.output(ops.softmax(x), "sm");
    ops.output(ops.softmax(ops.slice(x, 1, 2, 3)), "one");
    ops.output(ops.layerNorm(x, 1e-6), "ln");
    const xv = [1, 2, 3, 4, -1, 0, 0, 5];
    const r = await runModel(modelOf(ops), { x: [f32(xv), [2, 4]] });
    const sm: number[] = [];
    const ln: number[] = [];
    for (let b = 0; b < 2; b++) {
      const row = xv.slice(b * 4, b * 4 + 4);
      const mx = Math.max(...row);
      const e = row.map((v) => Math.exp(v - mx));
      const z = e.reduce((p, q) => p + q, 0);
      sm.push(...e.map((v) => v / z));
      const mean = row.reduce((p, q) => p + q, 0) / 4;
      const variance = row.reduce((p, q) => p + (q - mean) ** 2, 0) / 4;
      ln.push(...row.map((v) => (v - mean) / Math.sqrt(variance + 1e-6)));
    }
    expect(maxAbsDiff(r.sm!.data, sm)).toBeLessThan(1e-6);
    expect(Array.from(r.one!.data)).toEqual([1]); // a constant [1, 1]: broadcasts against the batch
    expect(maxAbsDiff(r.ln!.data, ln)).toBeLessThan(1e-5);
  });

  it("dedupes constants and shares each parameter once", () => {
    const ops = new OnnxOps({ weights: new Map([["w", { shape: [2], data: f32([1, 2]) }]]) });
    const a = ops.constant(f32([1, 2, 3]), [3]);
    const b = ops.constant(f32([1, 2, 3]), [3]);
    const c = ops.constant(f32([1, 2, 3]), [1, 3]);
    expect(b).toBe(a);
    expect(c).not.toBe(a);
    const w1 = ops.param({ name: "w", shape: [2], init: { kind: "zeros" } });
    expect(ops.param({ name: "w", shape: [2], init: { kind: "zeros" } })).toBe(w1);
    ops.output(ops.concat([ops.reshape(a, [1, 3]), c], 0), "y");
    ops.output(w1, "z");
    expect(ops.graph("g").initializer.map((t) => t.name)).toEqual([a.name, c.name, "w", "const_2"]);
  });

  it("fuses dense layers into Gemm and drops nodes no output needs", async () => {
    const W = f32([1, 2, 3, 4, 5, 6]); // [3, 2]
    const bias = f32([0.5, -1]);
    const ops = new OnnxOps({
      weights: new Map([
        ["d.weight", { shape: [3, 2], data: W }],
        ["d.bias", { shape: [2], data: bias }],
      ]),
    });
    const x = ops.input("x", [-1, 2, 3]);
    const w = ops.param({ name: "d.weight", shape: [3, 2], init: { kind: "glorot" } });
    const b = ops.param({ name: "d.bias", shape: [2], init: { kind: "zeros" } });
    ops.output(ops.add(ops.matMul(x, w), b), "y3");
    ops.output(
      ops.add(b, ops.matMul(ops.reshape(x, [-1, 6]), ops.constant(new Float32Array(12).fill(1), [6, 2]))),
      "y2",
    );
    const g = ops.graph("g");
    expect(g.node.map((n) => n.opType)).toEqual([
      "Reshape",
      "Gemm",
      "Reshape",
      "Identity",
      "Reshape",
      "MatMul",
      "Add",
      "Identity",
    ]);
    const xv = [1, 0, -1, 2, 3, 4];
    const r = await runModel(modelOf(ops), { x: [f32(xv), [1, 2, 3]] });
    expect(r.y3!.dims).toEqual([1, 2, 2]);
    expect(Array.from(r.y3!.data)).toEqual([1 - 5 + 0.5, 2 - 6 - 1, 2 + 9 + 20 + 0.5, 4 + 12 + 24 - 1]);
    expect(Array.from(r.y2!.data)).toEqual([9.5, 8]);
  });

  it("names a missing or mis-shaped parameter", () => {
    const ops = new OnnxOps({ weights: new Map([["w", { shape: [2, 3], data: new Float32Array(6) }]]) });
    expect(() => ops.param({ name: "blocks.0.q.weight", shape: [4, 4], init: { kind: "glorot" } })).toThrow(
      /'blocks\.0\.q\.weight' \[4,4\] is missing/,
    );
    expect(() => ops.param({ name: "w", shape: [3, 2], init: { kind: "glorot" } })).toThrow(
      /'w' has shape \[2,3\], the network needs \[3,2\]/,
    );
  });

  it("rejects shape errors at export time", () => {
    const ops = new OnnxOps({ weights: new Map() });
    const x = ops.input("x", [-1, 3]);
    const y = ops.input("y", [-1, 4]);
    expect(() => ops.add(x, y)).toThrow(/do not broadcast/);
    expect(() => ops.matMul(x, ops.constant(new Float32Array(8), [4, 2]))).toThrow(/inner dimensions/);
    expect(() => ops.reshape(x, [-1, 4])).toThrow(/3 values per batch item/);
    expect(() => ops.slice(x, 1, 2, 5)).toThrow(/does not fit/);
    expect(broadcast("t", [-1, 1, 4], [1, 5, 1])).toEqual([-1, 5, 4]);
  });
});
