import { beforeAll, describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { Tape } from "../../../policy/autodiff/tape.ts";
import type { DiffOps } from "../../../policy/autodiff/ops.ts";
import { TfjsOps } from "../../../policy/net/tfjs-ops.ts";
import { Rng } from "../../../policy/random.ts";
import { F64Ops, type F64 } from "./f64.ts";
import { CASES, paramsOf, size, type Case } from "./cases.ts";

beforeAll(async () => {
  await tf.setBackend("cpu");
  await tf.ready();
});

function run<T>(c: Case, ops: DiffOps<T>, xs: T[]): T {
  return c.base ? c.base(ops, xs) : c.diff!(ops, xs);
}

/** L = sum(w * f(params)) with fixed random w, in float64. */
function lossF64(c: Case, params: Map<string, F64>, w: Float64Array): number {
  const ops = new F64Ops(params);
  const xs = c.shapes.map((s, i) => ops.param({ name: `p${i}`, shape: s, init: { kind: "zeros" } }));
  const y = run(c, ops, xs);
  let s = 0;
  for (let i = 0; i < y.data.length; i++) s += y.data[i]! * w[i]!;
  return s;
}

/** The tape's gradients of L, in float64. */
function tapeGrads(c: Case, params: Map<string, F64>, w: Float64Array): Map<string, F64 | undefined> {
  const tape = new Tape(new F64Ops(params));
  const xs = c.shapes.map((s, i) => tape.param({ name: `p${i}`, shape: s, init: { kind: "zeros" } }));
  const y = run(c, tape, xs);
  const wt = tape.input({ shape: [...y.shape], data: w }, y.shape);
  const L = tape.sumAxes(tape.mul(y, wt), [...y.shape.keys()]);
  return tape.gradients(L);
}

describe("Tape: each op's vector-Jacobian product", () => {
  for (const c of CASES) {
    it(`${c.name}: matches central finite differences in float64 to 1e-7`, () => {
      const rng = new Rng(3);
      const params = paramsOf(c, rng);
      const outSize = size(run(c, new F64Ops(params), [...params.values()]).shape);
      const w = Float64Array.from({ length: outSize }, () => rng.normal());
      const grads = tapeGrads(c, params, w);
      const h = 1e-5;
      let worst = 0;
      for (const [name, p] of params) {
        const g = grads.get(name);
        expect(g, name).toBeDefined();
        expect(g!.shape).toEqual(p.shape);
        for (let i = 0; i < p.data.length; i++) {
          const x0 = p.data[i]!;
          p.data[i] = x0 + h;
          const up = lossF64(c, params, w);
          p.data[i] = x0 - h;
          const down = lossF64(c, params, w);
          p.data[i] = x0;
          const fd = (up - down) / (2 * h);
          worst = Math.max(worst, Math.abs(fd - g!.data[i]!) / Math.max(1, Math.abs(fd)));
        }
      }
      expect(worst).toBeLessThan(1e-7);
    });
    if (c.base) {
      const base = c.base;
      it(`${c.name}: matches tfjs's gradient to 1e-5`, () => {
        const rng = new Rng(4);
        const params = paramsOf(c, rng);
        const outSize = size(run(c, new F64Ops(params), [...params.values()]).shape);
        const w = Float64Array.from({ length: outSize }, () => rng.normal());
        const grads = tapeGrads(c, params, w);
        const weights = new Map(
          [...params].map(([k, v]) => [k, { shape: v.shape, data: Float32Array.from(v.data) }] as const),
        );
        const ops = new TfjsOps({ seed: 0, weights });
        const xs = c.shapes.map((s, i) => ops.param({ name: `p${i}`, shape: s, init: { kind: "zeros" } }));
        const ref = tf.tidy(() => {
          const { grads: g } = tf.variableGrads(() => {
            const y = base(ops, xs);
            return tf.sum(tf.mul(y, tf.tensor(Float32Array.from(w), y.shape)));
          }, xs as tf.Variable[]);
          return xs.map((x) => g[(x as tf.Variable).name]!.dataSync() as Float32Array);
        });
        ops.dispose();
        c.shapes.forEach((_, i) => {
          const mine = grads.get(`p${i}`)!.data;
          let err = 0;
          let scale = 0;
          for (let j = 0; j < mine.length; j++) {
            err = Math.max(err, Math.abs(mine[j]! - ref[i]![j]!));
            scale = Math.max(scale, Math.abs(ref[i]![j]!));
          }
          expect(err / Math.max(scale, 1e-6)).toBeLessThan(1e-5);
        });
      });
    }
  }

  it("gives no gradient to a parameter the output does not depend on", () => {
    const params = new Map<string, F64>([
      ["a", { shape: [2], data: Float64Array.from([1, 2]) }],
      ["b", { shape: [2], data: Float64Array.from([3, 4]) }],
    ]);
    const tape = new Tape(new F64Ops(params));
    const a = tape.param({ name: "a", shape: [2], init: { kind: "zeros" } });
    tape.param({ name: "b", shape: [2], init: { kind: "zeros" } });
    const g = tape.gradients(tape.sumAxes(tape.mul(a, a), [0]));
    expect([...g.keys()]).toEqual(["a", "b"]);
    expect([...g.get("a")!.data]).toEqual([2, 4]);
    expect(g.get("b")).toBeUndefined();
  });
});
