/** The per-op cases of the tape tests: parameter shapes and a function of them. */
import type { DiffOps } from "../../../policy/autodiff/ops.ts";
import type { Ops } from "../../../policy/net/ops.ts";
import type { Rng } from "../../../policy/random.ts";
import type { F64 } from "./f64.ts";

/** One op under test: parameter shapes and a function of them (base `Ops` ones also run on tfjs). */
export interface Case {
  name: string;
  shapes: number[][];
  /** Makes inputs of rsqrt / div positive. */
  positive?: boolean;
  base?: <T>(ops: Ops<T>, xs: T[]) => T;
  diff?: <T>(ops: DiffOps<T>, xs: T[]) => T;
}

export const CASES: Case[] = [
  { name: "add (broadcast [4])", shapes: [[2, 3, 4], [4]], base: (o, [a, b]) => o.add(a!, b!) },
  {
    name: "sub (broadcast [3, 1])",
    shapes: [
      [2, 3, 4],
      [3, 1],
    ],
    base: (o, [a, b]) => o.sub(a!, b!),
  },
  {
    name: "mul (broadcast [2, 1, 4])",
    shapes: [
      [2, 3, 4],
      [2, 1, 4],
    ],
    base: (o, [a, b]) => o.mul(a!, b!),
  },
  { name: "mul (one value twice)", shapes: [[3, 4]], base: (o, [a]) => o.mul(a!, a!) },
  { name: "scale", shapes: [[2, 3]], base: (o, [a]) => o.scale(a!, -1.7) },
  {
    name: "matMul 2-D",
    shapes: [
      [3, 4],
      [4, 5],
    ],
    base: (o, [a, b]) => o.matMul(a!, b!),
  },
  {
    name: "matMul [2,3,4] x shared [4,5]",
    shapes: [
      [2, 3, 4],
      [4, 5],
    ],
    base: (o, [a, b]) => o.matMul(a!, b!),
  },
  {
    name: "matMul [2,3,4] x shared [5,4]^T",
    shapes: [
      [2, 3, 4],
      [5, 4],
    ],
    base: (o, [a, b]) => o.matMul(a!, b!, { transposeB: true }),
  },
  {
    name: "matMul batched [2,2,3,4] x [2,2,4,5]",
    shapes: [
      [2, 2, 3, 4],
      [2, 2, 4, 5],
    ],
    base: (o, [a, b]) => o.matMul(a!, b!),
  },
  {
    name: "matMul batched [2,3,4] x [2,5,4]^T",
    shapes: [
      [2, 3, 4],
      [2, 5, 4],
    ],
    base: (o, [a, b]) => o.matMul(a!, b!, { transposeB: true }),
  },
  { name: "reshape", shapes: [[2, 3, 4]], base: (o, [a]) => o.mul(o.reshape(a!, [-1, 12]), o.reshape(a!, [2, 12])) },
  { name: "transpose", shapes: [[2, 3, 4]], base: (o, [a]) => o.transpose(a!, [1, 2, 0]) },
  {
    name: "concat",
    shapes: [
      [2, 3, 4],
      [2, 2, 4],
    ],
    base: (o, [a, b]) => o.concat([a!, b!, a!], 1),
  },
  { name: "slice", shapes: [[2, 3, 6]], base: (o, [a]) => o.mul(o.slice(a!, 2, 2, 5), o.slice(a!, 2, 0, 3)) },
  { name: "sin", shapes: [[2, 5]], base: (o, [a]) => o.sin(a!) },
  { name: "cos", shapes: [[2, 5]], base: (o, [a]) => o.cos(a!) },
  { name: "sigmoid", shapes: [[2, 5]], base: (o, [a]) => o.sigmoid(a!) },
  { name: "silu", shapes: [[2, 5]], base: (o, [a]) => o.silu(a!) },
  { name: "softmax", shapes: [[2, 3, 5]], base: (o, [a]) => o.softmax(a!) },
  { name: "layerNorm", shapes: [[2, 3, 6]], base: (o, [a]) => o.layerNorm(a!, 1e-6) },
  { name: "sumAxes", shapes: [[2, 3, 4]], diff: (o, [a]) => o.sumAxes(a!, [0, 2]) },
  {
    name: "expandLike",
    shapes: [[3, 1]],
    diff: (o, [a]) => o.expandLike(a!, o.constant(new Float32Array(24), [2, 3, 4])),
  },
  { name: "pad", shapes: [[2, 3]], diff: (o, [a]) => o.pad(a!, 1, 2, 1) },
  { name: "div (broadcast)", shapes: [[2, 3], [3]], positive: true, diff: (o, [a, b]) => o.div(a!, b!) },
  {
    name: "contractRows",
    shapes: [
      [2, 3, 4],
      [2, 3, 5],
    ],
    diff: (o, [a, b]) => o.contractRows(a!, b!),
  },
  { name: "rsqrt", shapes: [[2, 3]], positive: true, diff: (o, [a]) => o.rsqrt(a!) },
];

export const size = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/** Random float64 parameters p0, p1, ... of the case's shapes. */
export function paramsOf(c: Case, rng: Rng): Map<string, F64> {
  return new Map(
    c.shapes.map((s, i) => {
      const data = Float64Array.from({ length: size(s) }, () =>
        c.positive ? 0.5 + rng.uniform() : rng.normal() * (c.name.startsWith("layerNorm") ? 2 : 1),
      );
      return [`p${i}`, { shape: s, data }];
    }),
  );
}
