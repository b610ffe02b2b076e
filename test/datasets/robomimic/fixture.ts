/**
 * Writes small robomimic-layout HDF5 files with h5wasm for tests: `data/demo_N/{actions, obs/*,
 * rewards, dones}`, `data` attributes `total` and `env_args`, and `mask/train`, `mask/valid`.
 * Values are a known function of (demo, frame, dim) so tests can check them.
 */
import { mkdir } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import h5wasm from "h5wasm/node";

/** action[demo k][t][d] = k * 1000 + t + d / 10 */
export function actionValue(k: number, t: number, d: number): number {
  return k * 1000 + t + d / 10;
}

/** eef_pos[k][t][d] = -(k * 100 + t) - d / 4 (float64); gripper[k][t][d] = t / 8 + d (float32). */
export function eefValue(k: number, t: number, d: number): number {
  return -(k * 100 + t) - d / 4;
}

export interface FixtureOptions {
  /** Demo names and lengths (default demo_0: 6, demo_1: 4, demo_10: 5). */
  demos?: { name: string; length: number }[];
  /** Put a NaN into demo `demo` actions at (frame, dim). */
  nan?: { demo: number; frame: number; dim: number };
  /** Give demo `demo` an eef_pos with one frame too few. */
  shortObs?: number;
}

/** Writes the fixture to `path`; returns the demo list (in natural order, as episodes). */
export async function writeRobomimic(
  path: string,
  opts: FixtureOptions = {},
): Promise<{ name: string; length: number }[]> {
  const demos = opts.demos ?? [
    { name: "demo_0", length: 6 },
    { name: "demo_10", length: 5 },
    { name: "demo_1", length: 4 },
  ];
  await mkdir(dirname(resolve(path)), { recursive: true });
  await h5wasm.ready;
  const f = new h5wasm.File(resolve(path), "w");
  const data = f.create_group("data");
  data.create_attribute(
    "total",
    demos.reduce((s, d) => s + d.length, 0),
  );
  data.create_attribute(
    "env_args",
    JSON.stringify({ env_name: "Lift", type: 1, env_kwargs: { control_freq: 20, robots: ["Panda"] } }),
  );
  const ordered = [...demos].sort((a, b) => Number(a.name.split("_")[1]) - Number(b.name.split("_")[1]));
  for (const demo of demos) {
    const k = ordered.indexOf(demo);
    const T = demo.length;
    const g = data.create_group(demo.name);
    g.create_attribute("num_samples", T);
    const actions = Float64Array.from({ length: T * 7 }, (_, i) => actionValue(k, Math.floor(i / 7), i % 7));
    if (opts.nan && opts.nan.demo === k) actions[opts.nan.frame * 7 + opts.nan.dim] = NaN;
    g.create_dataset({ name: "actions", data: actions, shape: [T, 7] });
    g.create_dataset({
      name: "rewards",
      data: Float64Array.from({ length: T }, (_, t) => (t === T - 1 ? 1 : 0)),
      shape: [T],
    });
    g.create_dataset({
      name: "dones",
      data: BigInt64Array.from({ length: T }, (_, t) => (t === T - 1 ? 1n : 0n)),
      shape: [T],
    });
    const obs = g.create_group("obs");
    const Te = opts.shortObs === k ? T - 1 : T;
    obs.create_dataset({
      name: "robot0_eef_pos",
      data: Float64Array.from({ length: Te * 3 }, (_, i) => eefValue(k, Math.floor(i / 3), i % 3)),
      shape: [Te, 3],
    });
    obs.create_dataset({
      name: "robot0_gripper_qpos",
      data: Float32Array.from({ length: T * 2 }, (_, i) => Math.floor(i / 2) / 8 + (i % 2)),
      shape: [T, 2],
    });
    obs.create_dataset({ name: "agentview_image", data: new Uint8Array(T * 4 * 4 * 3).fill(7), shape: [T, 4, 4, 3] });
  }
  const mask = f.create_group("mask");
  const names = ordered.map((d) => d.name);
  mask.create_dataset({ name: "train", data: names.slice(0, -1), dtype: "S8" });
  mask.create_dataset({ name: "valid", data: names.slice(-1), dtype: "S8" });
  f.close();
  return ordered;
}
