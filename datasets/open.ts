/**
 * One entry point that detects a dataset's format from its path and opens it: a folder is a
 * LeRobot dataset (v2.1 or v3.0), a `.hdf5`/`.h5` file is a robomimic file. Every command that takes
 * a dataset goes through {@link openDataset}.
 */
import { stat } from "node:fs/promises";
import { openLeRobot } from "./lerobot/reader.ts";
import type { LeRobotDataset } from "./lerobot/reader.ts";
import { openRobomimic } from "./robomimic/reader.ts";
import type { RobomimicDataset, RobomimicOptions } from "./robomimic/reader.ts";

/** The formats {@link openDataset} detects. */
export type DatasetFormat = "lerobot" | "robomimic";

/** A dataset opened by {@link openDataset}, tagged by its format; `dataset.close()` when done. */
export type OpenedDataset =
  { format: "lerobot"; dataset: LeRobotDataset } | { format: "robomimic"; dataset: RobomimicDataset };

/** Options of {@link openDataset}. */
export interface OpenDatasetOptions {
  /** Passed to the robomimic reader (which observation keys make the state). */
  robomimic?: RobomimicOptions;
}

/**
 * Opens `path`: a LeRobot folder, or a robomimic `.hdf5`/`.h5` file. Throws naming the path when it
 * does not exist or is a file of another kind.
 */
export async function openDataset(path: string, opts: OpenDatasetOptions = {}): Promise<OpenedDataset> {
  let isFile: boolean;
  try {
    isFile = (await stat(path)).isFile();
  } catch (err) {
    throw new Error(`${path}: dataset not found`, { cause: err });
  }
  if (!isFile) return { format: "lerobot", dataset: await openLeRobot(path) };
  if (!/\.(hdf5|h5)$/i.test(path)) {
    throw new Error(`${path}: a dataset file must be a robomimic .hdf5 or .h5 file (a LeRobot dataset is a folder)`);
  }
  return { format: "robomimic", dataset: await openRobomimic(path, opts.robomimic ?? {}) };
}
