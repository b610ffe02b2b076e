import { describe, expect, it } from "vitest";
import { Tape } from "../../../policy/autodiff/tape.ts";
import { OnnxOps } from "../../../policy/onnx/ops.ts";
import { Rng } from "../../../policy/random.ts";
import { modelOf, runModel } from "../onnx/helpers.ts";
import { F64Ops } from "./f64.ts";
import { CASES, paramsOf, size, type Case } from "./cases.ts";

/** Float64 tape gradients of sum(w * f(params)). */
function f64Grads(c: Case, params: ReturnType<typeof paramsOf>, w: Float64Array): Float64Array[] {
  const tape = new Tape(new F64Ops(params));
  const xs = c.shapes.map((s, i) => tape.param({ name: `p${i}`, shape: s, init: { kind: "zeros" } }));
  const y = c.base ? c.base(tape, xs) : c.diff!(tape, xs);
  const L = tape.sumAxes(tape.mul(y, tape.input({ shape: [...y.shape], data: w }, y.shape)), [...y.shape.keys()]);
  const g = tape.gradients(L);
  return c.shapes.map((_, i) => g.get(`p${i}`)!.data);
}

describe("each op's vector-Jacobian product emitted as ONNX runs in onnxruntime", () => {
  for (const c of CASES) {
    it(`${c.name}: agrees with the float64 tape to 1e-5 relative`, async () => {
      const rng = new Rng(6);
      const params = paramsOf(c, rng);
      const ops = new OnnxOps({ params: "inputs" });
      const tape = new Tape(ops);
      const xs = c.shapes.map((s, i) => tape.param({ name: `p${i}`, shape: s, init: { kind: "zeros" } }));
      const y = c.base ? c.base(tape, xs) : c.diff!(tape, xs);
      const wIn = tape.input(ops.input("w", y.shape), y.shape);
      const L = tape.sumAxes(tape.mul(y, wIn), [...y.shape.keys()]);
      const grads = tape.gradients(L);
      c.shapes.forEach((_, i) => ops.output(grads.get(`p${i}`)!, `g${i}`));
      const w = Float64Array.from({ length: size(y.shape) }, () => rng.normal());
      const feeds: Record<string, [Float32Array, number[]]> = { w: [Float32Array.from(w), [...y.shape]] };
      for (const [name, p] of params) feeds[name] = [Float32Array.from(p.data), p.shape];
      const out = await runModel(modelOf(ops), feeds);
      const ref = f64Grads(c, params, w);
      c.shapes.forEach((s, i) => {
        const got = out[`g${i}`]!;
        expect(got.dims).toEqual(s);
        let err = 0;
        let scale = 0;
        for (let j = 0; j < got.data.length; j++) {
          err = Math.max(err, Math.abs(got.data[j]! - ref[i]![j]!));
          scale = Math.max(scale, Math.abs(ref[i]![j]!));
        }
        expect(err / scale).toBeLessThan(1e-5);
      });
    });
  }
});
