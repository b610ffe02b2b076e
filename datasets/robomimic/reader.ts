/**
 * Reader of robomimic HDF5 demonstration files (h5wasm), exposing the same episode interface as the
 * LeRobot reader so chunk windows, stats and the converter work on both.
 *
 * File layout (robomimic): `data/demo_N/actions [T, A]`, `data/demo_N/obs/<key> [T, ...]`,
 * optional `rewards [T]`, `dones [T]`; attributes `data.total`, `data.env_args` (JSON);
 * `mask/<name>` lists demo names (e.g. `mask/train`, `mask/valid`).
 *
 * Columns: `action` (from `actions`), `observation.<key>` per obs key, `next.reward` / `next.done`
 * when present, and `observation.state`: the concatenation of the low-dimensional (one vector per
 * frame, float) obs keys, in `stateKeys` order (default: sorted) - robomimic's low_dim input.
 * Episodes are the demos in natural order (demo_2 before demo_10); their index is that position.
 */
import { access } from "node:fs/promises";
import { resolve } from "node:path";
import { z } from "zod";
import { parseJson } from "../../policy/io/json.ts";
import h5wasm from "h5wasm/node";
import type { Dataset as H5Dataset, File as H5File, Group as H5Group } from "h5wasm/node";
import type { ColumnArray, EpisodeInfo, FeatureInfo, ShapedColumn } from "../lerobot/layout.ts";
import { frameSize } from "../lerobot/layout.ts";
import { arrayKindFor } from "../lerobot/parquet.ts";

/** Options of {@link openRobomimic}. */
export interface RobomimicOptions {
  /** Obs keys concatenated into `observation.state`, in this order (default: every low-dim key, sorted). */
  stateKeys?: readonly string[];
}

interface Source {
  /** Path inside a demo group, e.g. "actions" or "obs/robot0_eef_pos"; several for the state. */
  parts: { path: string; dim: number }[];
}

/** A robomimic file opened by {@link openRobomimic}; call `close()` when done. */
export class RobomimicDataset {
  /** The file path. */
  readonly path: string;
  /** Columns by name (see the module comment). */
  readonly features: Record<string, FeatureInfo>;
  /** Episodes (demos) in natural order; `tasks` holds the environment name when known. */
  readonly episodes: EpisodeInfo[];
  /** Demo group names by episode index (`demos[i]` is episode i). */
  readonly demos: string[];
  /** Masks (`mask/<name>`) as episode indices, e.g. `masks.train`, `masks.valid`. */
  readonly masks: Record<string, number[]>;
  /** `data.env_args` parsed, or null. */
  readonly envArgs: Record<string, unknown> | null;
  /** `env_args.env_name`, or null. */
  readonly envName: string | null;
  /** `env_args.env_kwargs.control_freq` in Hz, or null. */
  readonly fps: number | null;
  /** `env_args.env_kwargs.robots` joined with ",", or null. */
  readonly robotType: string | null;
  /** Obs keys concatenated into `observation.state`. */
  readonly stateKeys: string[];
  /** Frames over all demos. */
  readonly totalFrames: number;
  private readonly file: H5File;
  private readonly sources: Record<string, Source>;
  private closed = false;

  private constructor(path: string, file: H5File, opts: RobomimicOptions) {
    this.path = path;
    this.file = file;
    const data = file.get("data");
    if (!isGroup(data)) throw new Error(`${path}: no 'data' group (not a robomimic file?)`);
    const demos = data.keys().filter((k) => isGroup(data.get(k)));
    demos.sort((a, b) => naturalKey(a) - naturalKey(b) || a.localeCompare(b));
    if (demos.length === 0) throw new Error(`${path}: 'data' has no demo groups`);
    this.demos = demos;

    const envRaw = attr(data, "env_args");
    const envArgs: Record<string, unknown> | null =
      typeof envRaw === "string"
        ? parseJson(envRaw, z.record(z.string(), z.unknown()), `${path}: data.env_args`)
        : null;
    this.envArgs = envArgs;
    this.envName = typeof envArgs?.env_name === "string" ? envArgs.env_name : null;
    const kwargs = (envArgs?.env_kwargs ?? {}) as Record<string, unknown>;
    this.fps = typeof kwargs.control_freq === "number" && kwargs.control_freq > 0 ? kwargs.control_freq : null;
    const robots = kwargs.robots;
    this.robotType = typeof robots === "string" ? robots : Array.isArray(robots) ? robots.map(String).join(",") : null;

    // episodes: lengths from the actions datasets
    const episodes: EpisodeInfo[] = [];
    let from = 0;
    for (const [index, demo] of demos.entries()) {
      const actions = this.dataset(demo, "actions");
      const shape = actions.shape ?? [];
      if (shape.length !== 2)
        throw new Error(`${path}: data/${demo}/actions has shape [${shape.join(", ")}], need [T, A]`);
      const length = shape[0]!;
      episodes.push({ index, length, tasks: this.envName ? [this.envName] : [], from, to: from + length });
      from += length;
    }
    this.episodes = episodes;
    this.totalFrames = from;

    // features from the first demo
    const first = demos[0]!;
    const features: Record<string, FeatureInfo> = {};
    const sources: Record<string, Source> = {};
    const add = (name: string, rel: string, ds: H5Dataset): void => {
      const shape = (ds.shape ?? []).slice(1);
      const perFrame = shape.length === 0 ? [1] : shape;
      features[name] = { dtype: dtypeOf(ds, `${path}: data/${first}/${rel}`), shape: perFrame, names: null };
      sources[name] = { parts: [{ path: rel, dim: frameSize(perFrame) }] };
    };
    add("action", "actions", this.dataset(first, "actions"));
    const obs = this.file.get(`data/${first}/obs`);
    const obsKeys = isGroup(obs)
      ? obs
          .keys()
          .filter((k) => isDataset(obs.get(k)))
          .sort()
      : [];
    const lowDim: string[] = [];
    for (const key of obsKeys) {
      const ds = this.dataset(first, `obs/${key}`);
      add(`observation.${key}`, `obs/${key}`, ds);
      const f = features[`observation.${key}`]!;
      if ((ds.shape ?? []).length <= 2 && f.dtype.startsWith("float")) lowDim.push(key);
    }
    for (const [name, rel] of [
      ["next.reward", "rewards"],
      ["next.done", "dones"],
    ] as const) {
      const ds = this.file.get(`data/${first}/${rel}`);
      if (isDataset(ds)) add(name, rel, ds);
    }
    const stateKeys = opts.stateKeys ? [...opts.stateKeys] : lowDim;
    for (const key of stateKeys) {
      if (!lowDim.includes(key)) {
        throw new Error(
          `${path}: state key '${key}' is not a low-dim float obs key of data/${first}/obs (have: ${lowDim.join(", ") || "none"})`,
        );
      }
    }
    this.stateKeys = stateKeys;
    if (stateKeys.length > 0 && !("observation.state" in features)) {
      const parts = stateKeys.map((k) => ({ path: `obs/${k}`, dim: frameSize(features[`observation.${k}`]!.shape) }));
      const dim = parts.reduce((s, p) => s + p.dim, 0);
      const names = parts.flatMap((p, i) => Array.from({ length: p.dim }, (_, d) => `${stateKeys[i]}_${d}`));
      const allF64 = stateKeys.some((k) => features[`observation.${k}`]!.dtype === "float64");
      features["observation.state"] = { dtype: allF64 ? "float64" : "float32", shape: [dim], names };
      sources["observation.state"] = { parts };
    }
    this.features = features;
    this.sources = sources;

    const masks: Record<string, number[]> = {};
    const maskGroup = this.file.get("mask");
    if (isGroup(maskGroup)) {
      const position = new Map(demos.map((d, i) => [d, i]));
      for (const name of maskGroup.keys()) {
        const ds = maskGroup.get(name);
        if (!isDataset(ds)) continue;
        const raw = ds.value;
        const list = Array.isArray(raw) ? raw : raw instanceof Uint8Array ? [new TextDecoder().decode(raw)] : [raw];
        masks[name] = list.map((v) => {
          const demo = typeof v === "string" ? v : v instanceof Uint8Array ? new TextDecoder().decode(v) : String(v);
          const i = position.get(demo.replace(/\0+$/, ""));
          if (i === undefined) throw new Error(`${path}: mask/${name} lists '${demo}', which is not a demo in data/`);
          return i;
        });
      }
    }
    this.masks = masks;
  }

  /** @internal Opens the file; use {@link openRobomimic}. */
  static async load(path: string, opts: RobomimicOptions = {}): Promise<RobomimicDataset> {
    const abs = resolve(path);
    try {
      await access(abs);
    } catch (err) {
      throw new Error(`${path}: file missing`, { cause: err });
    }
    const module = await h5wasm.ready;
    return withThrowingErrors(module, path, () => {
      const file = new h5wasm.File(abs, "r");
      try {
        return new RobomimicDataset(path, file, opts);
      } catch (err) {
        file.close();
        throw err;
      }
    });
  }

  /** The episode with this index; throws naming the valid range. */
  episode(index: number): EpisodeInfo {
    const e = this.episodes[index];
    if (!e || !Number.isInteger(index))
      throw new RangeError(`${this.path}: no episode ${index} (the file has ${this.episodes.length} demos)`);
    return e;
  }

  /**
   * Reads `columns` of episode `index` (demo `demos[index]`), each flat `[length, ...shape]`: float32
   * as Float32Array, float64 as Float64Array, int64 as BigInt64Array, small ints as Float32Array.
   * Throws naming file, demo, key and frame on a missing key, a length or shape that disagrees with
   * the demo, or a NaN.
   */
  async readEpisode(index: number, columns: readonly string[]): Promise<Record<string, ColumnArray>> {
    const shaped = await this.readEpisodeShaped(index, columns);
    const out: Record<string, ColumnArray> = {};
    for (const [k, v] of Object.entries(shaped)) out[k] = v.data;
    return out;
  }

  /** {@link readEpisode} with each column's shape `[length, ...featureShape]`. */
  readEpisodeShaped(index: number, columns: readonly string[]): Promise<Record<string, ShapedColumn>> {
    if (this.closed) return Promise.reject(new Error(`${this.path}: file is closed`));
    let ep: EpisodeInfo;
    try {
      ep = this.episode(index);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const demo = this.demos[index]!;
    return h5wasm.ready.then((module) =>
      withThrowingErrors(module, this.path, () => {
        const out: Record<string, ShapedColumn> = {};
        for (const c of columns) {
          const f = this.features[c];
          const src = this.sources[c];
          if (!f || !src)
            throw new Error(`${this.path}: no column '${c}' (columns: ${Object.keys(this.features).join(", ")})`);
          const per = frameSize(f.shape);
          const kind = arrayKindFor(f.dtype);
          const data: ColumnArray =
            kind === "f32"
              ? new Float32Array(ep.length * per)
              : kind === "f64"
                ? new Float64Array(ep.length * per)
                : new BigInt64Array(ep.length * per);
          let offset = 0;
          for (const part of src.parts) {
            const where = `${this.path}: data/${demo}/${part.path}`;
            const ds = this.file.get(`data/${demo}/${part.path}`);
            if (!isDataset(ds)) throw new Error(`${where} missing (column '${c}', episode ${index})`);
            const shape = ds.shape ?? [];
            const got = shape.length <= 1 ? 1 : frameSize(shape.slice(1));
            if (shape[0] !== ep.length || got !== part.dim) {
              throw new Error(
                `${where}: shape [${shape.join(", ")}] disagrees with ${ep.length} frames of ${part.dim} values (column '${c}', episode ${index})`,
              );
            }
            const values = ds.value as ArrayLike<number | bigint | boolean>;
            const isFloat = f.dtype.startsWith("float");
            for (let t = 0; t < ep.length; t++) {
              for (let d = 0; d < part.dim; d++) {
                const v = values[t * part.dim + d]!;
                const i = t * per + offset + d;
                if (kind === "i64") (data as BigInt64Array)[i] = typeof v === "bigint" ? v : BigInt(Number(v));
                else {
                  const x = Number(v);
                  if (isFloat && !Number.isFinite(x))
                    throw new Error(`${where}: ${x} at frame ${t} dim ${d} (column '${c}', episode ${index})`);
                  (data as Float32Array | Float64Array)[i] = x;
                }
              }
            }
            offset += part.dim;
          }
          out[c] = { data, shape: f.shape.length === 1 && f.shape[0] === 1 ? [ep.length] : [ep.length, ...f.shape] };
        }
        return out;
      }),
    );
  }

  /** Releases the HDF5 file. */
  close(): void {
    if (!this.closed) this.file.close();
    this.closed = true;
  }

  private dataset(demo: string, rel: string): H5Dataset {
    const ds = this.file.get(`data/${demo}/${rel}`);
    if (!isDataset(ds)) throw new Error(`${this.path}: data/${demo}/${rel} missing`);
    return ds;
  }
}

/** Opens a robomimic HDF5 file; throws naming the file when it is missing, truncated or not robomimic. */
export async function openRobomimic(path: string, opts: RobomimicOptions = {}): Promise<RobomimicDataset> {
  return RobomimicDataset.load(path, opts);
}

interface ErrorSwitch {
  activate_throwing_error_handler(): void;
  deactivate_throwing_error_handler(): void;
}

/** Runs `fn` with HDF5 errors thrown (not printed), condensing HDF5's error stack into the message. */
function withThrowingErrors<T>(module: unknown, path: string, fn: () => T): T {
  const m = module as ErrorSwitch;
  m.activate_throwing_error_handler();
  try {
    return fn();
  } catch (err) {
    const msg = String((err as Error)?.message ?? err);
    if (!msg.includes("HDF5-DIAG")) throw err;
    const frames = [...msg.matchAll(/#\d+: .* in (\w+\(\): [^\n]*)/g)].map((x) => x[1]);
    throw new Error(`${path}: HDF5 error (truncated or corrupt?): ${frames[frames.length - 1] ?? msg.split("\n")[0]}`, {
      cause: err,
    });
  } finally {
    m.deactivate_throwing_error_handler();
  }
}

function isGroup(x: unknown): x is H5Group {
  return x instanceof h5wasm.Group;
}

function isDataset(x: unknown): x is H5Dataset {
  return x instanceof h5wasm.Dataset;
}

function attr(g: H5Group, name: string): unknown {
  return g.attrs[name]?.value ?? null;
}

function naturalKey(name: string): number {
  const m = /(\d+)$/.exec(name);
  return m ? Number(m[1]) : Number.MAX_SAFE_INTEGER;
}

/** LeRobot-style dtype name of an HDF5 dataset ("float32", "float64", "int64", "uint8", ...). */
function dtypeOf(ds: H5Dataset, where: string): string {
  const md = ds.metadata as { type: number; size: number; signed: boolean };
  // HDF5 type classes: 0 integer, 1 float
  if (md.type === 1) return md.size === 8 ? "float64" : md.size === 2 ? "float16" : "float32";
  if (md.type === 0) return `${md.signed ? "int" : "uint"}${md.size * 8}`;
  throw new Error(`${where}: HDF5 type class ${md.type} is not numeric`);
}
