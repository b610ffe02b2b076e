import { describe, expect, it } from "vitest";
import { Tape, type Traced } from "../../../policy/autodiff/tape.ts";
import { featureSize } from "../../../policy/net/head.ts";
import { Rng } from "../../../policy/random.ts";
import { tinyModel } from "../onnx/fixture.ts";
import { F64Ops, type F64 } from "./f64.ts";
import { CASES, paramsOf } from "./cases.ts";

const H_FD = 1e-5;

/** Central difference of `f` along `dir` (a tangent per perturbed array), in float64. */
function directional(arrays: Float64Array[], dirs: Float64Array[], f: () => Float64Array, h = H_FD): Float64Array {
  const shift = (s: number): void =>
    arrays.forEach((a, i) => {
      for (let j = 0; j < a.length; j++) a[j] = a[j]! + s * dirs[i]![j]!;
    });
  shift(h);
  const up = f().slice();
  shift(-2 * h);
  const down = f().slice();
  shift(h);
  return up.map((u, i) => (u - down[i]!) / (2 * h));
}

function worstRel(a: Float64Array, b: Float64Array): number {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return err / Math.max(scale, 1e-12);
}

describe("Tape.tangents: each op's Jacobian-vector product", () => {
  for (const c of CASES) {
    it(`${c.name}: matches a central directional difference in float64 to 1e-7`, () => {
      const rng = new Rng(8);
      const params = paramsOf(c, rng);
      const dirs = [...params.values()].map((p) => Float64Array.from(p.data, () => rng.normal()));
      const run = <T>(o: Parameters<NonNullable<Case["diff"]>>[0] & object, xs: T[]): T =>
        c.base ? c.base(o as never, xs) : c.diff!(o as never, xs);
      const tape = new Tape(new F64Ops(params));
      const xs = c.shapes.map((s, i) => tape.param({ name: `p${i}`, shape: s, init: { kind: "zeros" } }));
      const y = run(tape, xs) as Traced<F64>;
      const seeds = new Map<Traced<F64>, F64>(xs.map((x, i) => [x, { shape: [...x.shape], data: dirs[i]! }]));
      const [dy] = tape.tangents(seeds, [y]);
      const fd = directional(
        [...params.values()].map((p) => p.data),
        dirs,
        () => {
          const ops = new F64Ops(params);
          return (
            run(
              ops,
              c.shapes.map((s, i) => ops.param({ name: `p${i}`, shape: s, init: { kind: "zeros" } })),
            ) as F64
          ).data;
        },
      );
      expect(dy!.shape).toEqual(y.shape);
      expect(worstRel(dy!.data, fd)).toBeLessThan(1e-7);
    });
  }
});

type Case = (typeof CASES)[number];

for (const arch of ["transformer", "mlp"] as const) {
  it(`${arch} head: d velocity along (dxt, dt) (MeanFlow's JVP) matches a central difference in float64`, () => {
    const m = tinyModel(arch);
    const { horizon: H, actionDim: A } = m.config;
    const rng = new Rng(12);
    const weights = new Map(
      [...m.weights].map(([k, w]) => [k, { shape: w.shape, data: Float64Array.from(w.data) }] as const),
    );
    const arr = (shape: number[], f: () => number): F64 => ({
      shape,
      data: Float64Array.from({ length: featureSize(shape) }, f),
    });
    const obs: Record<string, F64> = {};
    for (const f of m.config.obs) obs[f.name] = arr([2, ...f.shape], () => rng.normal());
    const xt = arr([2, H, A], () => rng.normal());
    const t = arr([2, 1], () => rng.uniform());
    const dxt = Float64Array.from(xt.data, () => rng.normal());
    const dt = Float64Array.from([1, 1]);

    const tape = new Tape(new F64Ops(weights));
    const tObs: Record<string, Traced<F64>> = {};
    for (const f of m.config.obs) tObs[f.name] = tape.input(obs[f.name]!, obs[f.name]!.shape);
    const xv = tape.variable(xt, xt.shape);
    const tv = tape.variable(t, t.shape);
    const v = m.head.velocity(tape, m.head.encode(tape, tObs), xv, tv, { timeTokens: 1 });
    const [dv] = tape.tangents(
      new Map([
        [xv, { shape: xt.shape, data: dxt }],
        [tv, { shape: t.shape, data: dt }],
      ]),
      [v],
    );
    // A small step: the time embedding's fastest frequency is 2 pi / 4e-3 rad per unit t.
    const fd = directional(
      [xt.data, t.data],
      [dxt, dt],
      () => {
        const ops = new F64Ops(weights);
        return m.head.velocity(ops, m.head.encode(ops, obs), xt, t, { timeTokens: 1 }).data;
      },
      1e-7,
    );
    expect(dv!.shape).toEqual([2, H, A]);
    expect(worstRel(dv!.data, fd)).toBeLessThan(1e-6);
  });
}
