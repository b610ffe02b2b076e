import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { profileChunk, summarizeChunkProfile } from "../../../bench/infer.ts";
import { buildSampleModel } from "../../../policy/onnx/graphs.ts";
import { encodeModel } from "../../../policy/onnx/proto.ts";
import { quantizeModel } from "../../../policy/onnx/quantize.ts";
import { tinyModel } from "./fixture.ts";

const dir = mkdtempSync(join(tmpdir(), "actionflow-quantize-profile-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("onnxruntime's profile of an int8 graph", () => {
  it("shows every weight product fused into one integer kernel, and the fp32 graph none", async () => {
    const m = tinyModel("transformer");
    const fp32 = buildSampleModel(m.head, m.weights, m.features, m.norms, { steps: 2, solver: "euler" }).model;
    const { model: int8 } = quantizeModel(fp32, { source: "tiny" });
    const files = { fp32: join(dir, "fp32.onnx"), int8: join(dir, "int8.onnx") };
    writeFileSync(files.fp32, encodeModel(fp32));
    writeFileSync(files.int8, encodeModel(int8));
    const opts = { batch: 2, runs: 2, threads: 1, dispatchUsPerNode: 0.5, top: 100 };
    const a = await profileChunk(files.fp32, opts);
    const b = await profileChunk(files.int8, opts);
    const kernels = (p: typeof a, ops: string[]): number =>
      p.topOps.filter((o) => ops.includes(o.op)).reduce((s, o) => s + o.kernels, 0);
    const fused = ["DynamicQuantizeMatMul", "MatMulIntegerToFloat"];
    // onnxruntime merges identical products of one step (CSE), so count kernels, not graph nodes.
    expect(kernels(b, fused)).toBe(kernels(a, ["Gemm"]));
    expect(kernels(b, ["MatMulInteger", "Gemm"])).toBe(0);
    expect(kernels(b, ["Cast"])).toBe(kernels(a, ["Cast"])); // the int32 -> float Casts are fused too
    expect(kernels(a, fused)).toBe(0);
    for (const p of [a, b]) {
      expect(p.runs).toBe(2);
      expect(p.topOps.reduce((s, o) => s + o.kernels, 0)).toBeCloseTo(p.kernelsPerRun, 9);
      expect(p.topOps.reduce((s, o) => s + o.share, 0)).toBeCloseTo(1, 9);
      expect(p.matmulShare).toBeGreaterThan(0);
      expect(p.dispatchMs).toBeCloseTo((p.kernelsPerRun * 0.5) / 1000, 12);
      expect(p.wallP50Ms).toBeGreaterThan(0);
    }
  });

  it("sums only the runs after the warmup, and names the file when there is no run", () => {
    const ev = (ts: number, dur: number, op: string) => ({
      cat: "Node",
      name: `${op}_node_kernel_time`,
      ts,
      dur,
      args: { op_name: op },
    });
    const trace = [
      { cat: "Session", name: "model_run", ts: 0, dur: 100 },
      ev(10, 50, "Gemm"),
      { cat: "Session", name: "model_run", ts: 200, dur: 100 },
      ev(210, 30, "Gemm"),
      ev(250, 10, "Add"),
    ];
    const s = summarizeChunkProfile(trace, { skipRuns: 1, top: 5, source: "p.json" });
    expect(s).toMatchObject({ runs: 1, kernelsPerRun: 2, kernelMs: 0.04, profiledRunMs: 0.1, matmulShare: 0.75 });
    expect(s.topOps.map((o) => o.op)).toEqual(["Gemm", "Add"]);
    expect(() => summarizeChunkProfile(trace, { skipRuns: 2, top: 5, source: "p.json" })).toThrow(
      /p\.json: no model_run event after the first 2/,
    );
    expect(() => summarizeChunkProfile({}, { skipRuns: 0, top: 5, source: "p.json" })).toThrow(TypeError);
  });
});
