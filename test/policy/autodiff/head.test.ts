import { expect, it } from "vitest";
import { Tape, type Traced } from "../../../policy/autodiff/tape.ts";
import { maskedSquaredError } from "../../../policy/autodiff/loss.ts";
import { featureSize } from "../../../policy/net/head.ts";
import type { DiffOps } from "../../../policy/autodiff/ops.ts";
import { Rng } from "../../../policy/random.ts";
import { tinyModel } from "../onnx/fixture.ts";
import { F64Ops, finiteDifferenceCheck, type F64 } from "./f64.ts";

const BATCH = 2;

/** The masked loss of a tiny head in float64, run on `ops` (a Tape over F64Ops, or F64Ops itself). */
function lossOf<T>(
  m: ReturnType<typeof tinyModel>,
  ops: DiffOps<T>,
  wrap: (x: F64) => T,
  batch: Record<string, F64>,
): T {
  const obs: Record<string, T> = {};
  for (const f of m.config.obs) obs[f.name] = wrap(batch[f.name]!);
  const v = m.head.velocity(ops, m.head.encode(ops, obs), wrap(batch["xt"]!), wrap(batch["t"]!), {
    timeTokens: batch["t"]!.shape[1]!,
  });
  return maskedSquaredError(ops, v, wrap(batch["target"]!), wrap(batch["isPad"]!), wrap(batch["den"]!), {
    horizon: m.config.horizon,
  });
}

for (const arch of ["transformer", "mlp"] as const) {
  it(`${arch} head: tape gradients match central finite differences in float64 (3 coordinates per parameter)`, () => {
    const m = tinyModel(arch);
    const { horizon: H, actionDim: A } = m.config;
    const rng = new Rng(9);
    const arr = (shape: number[], f: () => number): F64 => ({
      shape,
      data: Float64Array.from({ length: featureSize(shape) }, f),
    });
    const batch: Record<string, F64> = {
      xt: arr([BATCH, H, A], () => rng.normal()),
      t: arr([BATCH, H], () => rng.uniform()),
      target: arr([BATCH, H, A], () => rng.normal()),
      isPad: { shape: [BATCH, H], data: Float64Array.from([0, 0, 0, 1, 1, 0, 0, 0]) },
      den: { shape: [], data: Float64Array.from([6 * A]) },
    };
    for (const f of m.config.obs) batch[f.name] = arr([BATCH, ...f.shape], () => rng.normal());
    const weights = new Map(
      [...m.weights].map(([k, w]) => [k, { shape: w.shape, data: Float64Array.from(w.data) }] as const),
    );

    const tape = new Tape(new F64Ops(weights));
    const grads = tape.gradients(lossOf(m, tape, (x) => tape.input(x, x.shape), batch) as Traced<F64>);
    const evalLoss = (): number => lossOf(m, new F64Ops(weights), (x) => x, batch).data[0]!;

    const { worst, checked } = finiteDifferenceCheck(weights, grads, evalLoss, rng);
    expect(checked).toBeGreaterThan(60);
    expect(worst).toBeLessThan(1e-6);
  });
}
