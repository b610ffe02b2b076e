/**
 * Conversion of demonstration datasets to LeRobot v3.0: a LeRobot v2.x (or v3.0) folder, or a
 * robomimic `.hdf5` file. Frames are copied exactly (float32 stays bit-identical; robomimic's
 * float64 actions and states become float32, LeRobot's convention). Videos, images and string
 * features are not copied (listed in `skipped`).
 */
import { openDataset } from "../open.ts";
import type { RobomimicDataset, RobomimicOptions } from "../robomimic/reader.ts";
import { DEFAULT_FEATURES, isNumeric } from "./layout.ts";
import type { ColumnArray } from "./layout.ts";
import type { LeRobotDataset } from "./reader.ts";
import type { WriterDtype, WriterFeature } from "./writer.ts";
import { LeRobotWriter } from "./writer.ts";

/** Options of {@link convertToV3}. */
export interface ConvertOptions {
  /** Frames per second for robomimic files without `env_kwargs.control_freq`. */
  fps?: number;
  /** Task string for robomimic episodes (default: the environment name). */
  task?: string;
  /** robomimic obs keys concatenated into `observation.state` (default: all low-dim keys, sorted). */
  stateKeys?: RobomimicOptions["stateKeys"];
  /** Data file size limit in MB (default 100). */
  dataFilesSizeInMb?: number;
  /** Called after each episode is written. */
  onEpisode?: (done: number, total: number) => void;
}

/** What {@link convertToV3} did. */
export interface ConvertResult {
  source: "lerobot" | "robomimic";
  /** The source's format version ("v2.1", "robomimic"). */
  sourceVersion: string;
  episodes: number;
  frames: number;
  out: string;
  dataFiles: number;
  /** Features written. */
  features: string[];
  /** Source features not copied (videos, images, strings). */
  skipped: string[];
}

/** Converts `input` (LeRobot folder or robomimic .hdf5/.h5 file) into a new v3.0 dataset at `out`. */
export async function convertToV3(input: string, out: string, opts: ConvertOptions = {}): Promise<ConvertResult> {
  const opened = await openDataset(input, opts.stateKeys ? { robomimic: { stateKeys: opts.stateKeys } } : {});
  try {
    return opened.format === "lerobot"
      ? await convertLeRobot(opened.dataset, out, opts)
      : await convertRobomimic(opened.dataset, input, out, opts);
  } finally {
    opened.dataset.close();
  }
}

async function convertLeRobot(src: LeRobotDataset, out: string, opts: ConvertOptions): Promise<ConvertResult> {
  const features: Record<string, WriterFeature> = {};
  const skipped: string[] = [];
  for (const [name, f] of Object.entries(src.features)) {
    if (name in DEFAULT_FEATURES) continue;
    if (!isNumeric(f)) {
      skipped.push(name);
      continue;
    }
    const dtype: WriterDtype = f.dtype === "float64" ? "float64" : f.dtype.startsWith("float") ? "float32" : "int64";
    features[name] = { dtype, shape: [...f.shape], names: f.names };
  }
  const names = Object.keys(features);
  const w = await LeRobotWriter.create(out, {
    fps: src.fps,
    robotType: src.robotType,
    features,
    ...(opts.dataFilesSizeInMb ? { dataFilesSizeInMb: opts.dataFilesSizeInMb } : {}),
  });
  const hasTaskIndex = "task_index" in src.features;
  for (const [k, ep] of src.episodes.entries()) {
    const cols = await src.readEpisode(ep.index, [...names, "timestamp", ...(hasTaskIndex ? ["task_index"] : [])]);
    let frameTasks: string[] | undefined;
    if (hasTaskIndex) {
      const ti = cols.task_index as BigInt64Array;
      frameTasks = Array.from(ti, (t, i) => {
        const task = src.tasks[Number(t)];
        if (task === undefined)
          throw new Error(
            `${src.dataFile(ep.index)}: frame ${i} of episode ${ep.index} has task_index ${t}, not in the tasks`,
          );
        return task;
      });
    }
    const frames: Record<string, ColumnArray> = {};
    for (const n of names) frames[n] = cols[n]!;
    await w.addEpisode({
      task: frameTasks?.[0] ?? ep.tasks[0] ?? "",
      ...(frameTasks ? { frameTasks } : {}),
      frames,
      length: ep.length,
      timestamps: cols.timestamp as Float32Array,
    });
    opts.onEpisode?.(k + 1, src.episodes.length);
  }
  const done = await w.finish();
  return {
    source: "lerobot",
    sourceVersion: src.codebaseVersion,
    episodes: done.episodes,
    frames: done.frames,
    out,
    dataFiles: done.dataFiles.length,
    features: names,
    skipped,
  };
}

async function convertRobomimic(
  src: RobomimicDataset,
  input: string,
  out: string,
  opts: ConvertOptions,
): Promise<ConvertResult> {
  const fps = opts.fps ?? src.fps;
  if (!fps) throw new Error(`${input}: no env_args.env_kwargs.control_freq to take the fps from; pass an fps (--fps)`);
  const features: Record<string, WriterFeature> = {
    action: { dtype: "float32", shape: [...src.features.action!.shape] },
  };
  const state = src.features["observation.state"];
  if (state) features["observation.state"] = { dtype: "float32", shape: [...state.shape], names: state.names };
  if (src.features["next.reward"]) features["next.reward"] = { dtype: "float32", shape: [1] };
  if (src.features["next.done"]) features["next.done"] = { dtype: "int64", shape: [1] };
  const names = Object.keys(features);
  const skipped = Object.keys(src.features).filter((n) => !names.includes(n));
  const task = opts.task ?? src.envName ?? "robomimic";
  const w = await LeRobotWriter.create(out, {
    fps,
    robotType: src.robotType,
    features,
    ...(opts.dataFilesSizeInMb ? { dataFilesSizeInMb: opts.dataFilesSizeInMb } : {}),
  });
  for (const [k, ep] of src.episodes.entries()) {
    const cols = await src.readEpisode(ep.index, names);
    const frames: Record<string, ColumnArray> = {};
    for (const n of names) {
      const c = cols[n]!;
      frames[n] =
        features[n]!.dtype === "float32" && !(c instanceof Float32Array)
          ? Float32Array.from(c as ArrayLike<number>, Number)
          : c;
    }
    await w.addEpisode({ task, frames, length: ep.length });
    opts.onEpisode?.(k + 1, src.episodes.length);
  }
  const done = await w.finish();
  return {
    source: "robomimic",
    sourceVersion: "robomimic",
    episodes: done.episodes,
    frames: done.frames,
    out,
    dataFiles: done.dataFiles.length,
    features: names,
    skipped,
  };
}
