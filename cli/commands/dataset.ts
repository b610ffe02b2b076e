/**
 * `actionflow dataset info|stats|convert`: inspect LeRobot datasets (v2.x, v3.0) and robomimic
 * HDF5 files, compute their statistics, convert them to LeRobot v3.0.
 */
import type { Command } from "commander";
import { list, nonNegativeInt, option, positiveFloat, positiveInt, text } from "../args.ts";
import type { FeatureStats } from "../../policy/normalize.ts";
import { convertToV3 } from "../../datasets/lerobot/convert.ts";
import { isNumeric } from "../../datasets/lerobot/layout.ts";
import type { FeatureInfo } from "../../datasets/lerobot/layout.ts";
import { openDataset } from "../../datasets/open.ts";
import type { OpenedDataset } from "../../datasets/open.ts";
import { datasetStats } from "../../datasets/stats/dataset.ts";
import { log, printResult, startProgress } from "../output.ts";

interface CommonFlags {
  json?: boolean;
  seed?: number;
}

/** The `dataset info` result. */
export interface DatasetInfo {
  format: "lerobot" | "robomimic";
  codebaseVersion: string | null;
  episodes: number;
  frames: number;
  fps: number | null;
  features: Record<string, { dtype: string; shape: number[] }>;
  tasks: string[];
  robotType: string | null;
  /** robomimic masks: name -> number of demos. */
  masks?: Record<string, number>;
}

function describe(o: OpenedDataset): DatasetInfo {
  const features: Record<string, { dtype: string; shape: number[] }> = {};
  for (const [n, f] of Object.entries(o.dataset.features)) features[n] = { dtype: f.dtype, shape: [...f.shape] };
  if (o.format === "lerobot") {
    const ds = o.dataset;
    return {
      format: "lerobot",
      codebaseVersion: ds.codebaseVersion,
      episodes: ds.episodes.length,
      frames: ds.totalFrames,
      fps: ds.fps,
      features,
      tasks: ds.tasks.filter((t) => t !== undefined),
      robotType: ds.robotType,
    };
  }
  const ds = o.dataset;
  const masks: Record<string, number> = {};
  for (const [k, v] of Object.entries(ds.masks)) masks[k] = v.length;
  return {
    format: "robomimic",
    codebaseVersion: null,
    episodes: ds.episodes.length,
    frames: ds.totalFrames,
    fps: ds.fps,
    features,
    tasks: ds.envName ? [ds.envName] : [],
    robotType: ds.robotType,
    masks,
  };
}

function humanInfo(r: DatasetInfo): string {
  const lines = [
    `${r.format}${r.codebaseVersion ? ` ${r.codebaseVersion}` : ""}: ${r.episodes} episodes, ${r.frames} frames${r.fps ? ` at ${r.fps} fps (${(r.frames / r.fps / 60).toFixed(1)} min)` : ""}`,
    `robot: ${r.robotType ?? "-"}`,
    `tasks: ${r.tasks.length ? r.tasks.map((t) => JSON.stringify(t)).join(", ") : "-"}`,
    "features:",
    ...Object.entries(r.features).map(([n, f]) => `  ${n.padEnd(32)} ${f.dtype.padEnd(8)} [${f.shape.join(", ")}]`),
  ];
  if (r.masks)
    lines.push(
      `masks: ${
        Object.entries(r.masks)
          .map(([k, v]) => `${k} (${v})`)
          .join(", ") || "-"
      }`,
    );
  return lines.join("\n");
}

/** The `dataset stats` result. */
export interface DatasetStats {
  /** "data": computed from the frames; "meta": as stored in the dataset's metadata. */
  source: "data" | "meta";
  episodes: number;
  frames: number;
  features: Record<string, FeatureStats>;
}

function floatFeatures(features: Record<string, FeatureInfo>, only?: string[]): string[] {
  const names = Object.entries(features)
    .filter(([, f]) => isNumeric(f) && f.dtype.startsWith("float"))
    .map(([n]) => n);
  if (!only) return names;
  for (const n of only)
    if (!names.includes(n)) throw new Error(`--features: '${n}' is not a float feature (have: ${names.join(", ")})`);
  return only;
}

async function computeDatasetStats(
  o: OpenedDataset,
  opts: { only?: string[]; json: boolean; bins?: number },
): Promise<DatasetStats> {
  const names = floatFeatures(o.dataset.features, opts.only);
  const eps = o.dataset.episodes;
  const bar = startProgress(eps.length, { json: opts.json, label: "stats" });
  const features = await datasetStats(o.dataset, names, {
    ...(opts.bins ? { bins: opts.bins } : {}),
    onEpisode: (done) => bar.update(done),
  });
  bar.stop();
  return { source: "data", episodes: eps.length, frames: eps.reduce((s, e) => s + e.length, 0), features };
}

function fmt(v: readonly number[] | undefined): string {
  if (!v) return "-";
  const shown = v
    .slice(0, 8)
    .map((x) => (Math.abs(x) >= 1e4 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(2) : x.toFixed(4)));
  return `[${shown.join(", ")}${v.length > 8 ? `, ... (${v.length})` : ""}]`;
}

function humanStats(r: DatasetStats): string {
  const lines = [
    `statistics from ${r.source === "data" ? "the frames" : "the metadata"}: ${r.episodes} episodes, ${r.frames} frames`,
  ];
  for (const [n, s] of Object.entries(r.features)) {
    lines.push(`${n} (count ${s.count})`);
    for (const k of ["mean", "std", "min", "max", "q01", "q99"] as const) lines.push(`  ${k.padEnd(4)} ${fmt(s[k])}`);
  }
  return lines.join("\n");
}

/** Registers `dataset info`, `dataset stats` and `dataset convert`. */
export function registerDataset(program: Command): void {
  const dataset = program
    .command("dataset")
    .description("inspect, summarise and convert demonstration datasets (LeRobot v2.x/v3.0 folders, robomimic .hdf5)");

  dataset
    .command("info")
    .description("format, episodes, frames, fps, features, tasks and robot of a dataset")
    .argument("<path>", "LeRobot dataset folder or robomimic .hdf5 file")
    .option("--json", "print one JSON object as the last stdout line")
    .addOption(option("--seed <n>", "accepted for uniformity; the command is deterministic", nonNegativeInt, 0))
    .action(async (path: string, o: CommonFlags) => {
      const opened = await openDataset(path);
      try {
        printResult(describe(opened), { json: o.json ?? false }, humanInfo);
      } finally {
        opened.dataset.close();
      }
    });

  dataset
    .command("stats")
    .description(
      "per-dimension statistics (mean, std, min, max, count, q01..q99) of every float feature, computed from the frames",
    )
    .argument("<path>", "LeRobot dataset folder or robomimic .hdf5 file")
    .option("--from-meta", "print the statistics stored in the dataset's metadata instead (LeRobot only)")
    .addOption(option("--features <names>", "comma-separated features (default: every float feature)", list(text)))
    .addOption(
      option("--bins <n>", "histogram bins per dimension for the quantiles, a power of two", positiveInt, 8192),
    )
    .option("--json", "print one JSON object as the last stdout line")
    .addOption(option("--seed <n>", "accepted for uniformity; the command is deterministic", nonNegativeInt, 0))
    .action(async (path: string, o: CommonFlags & { fromMeta?: boolean; features?: string[]; bins: number }) => {
      const opened = await openDataset(path);
      try {
        const only = o.features;
        let result: DatasetStats;
        if (o.fromMeta) {
          if (opened.format !== "lerobot")
            throw new Error(`${path}: --from-meta needs a LeRobot dataset (robomimic files store no statistics)`);
          const stored = opened.dataset.stats();
          const names = floatFeatures(opened.dataset.features, only).filter((n) => stored[n]);
          const features: Record<string, FeatureStats> = {};
          for (const n of names) features[n] = stored[n]!;
          result = {
            source: "meta",
            episodes: opened.dataset.episodes.length,
            frames: opened.dataset.totalFrames,
            features,
          };
        } else {
          const bins = o.bins;
          result = await computeDatasetStats(opened, { ...(only ? { only } : {}), json: o.json ?? false, bins });
        }
        printResult(result, { json: o.json ?? false }, humanStats);
      } finally {
        opened.dataset.close();
      }
    });

  dataset
    .command("convert")
    .description("convert a LeRobot v2.x/v3.0 folder or a robomimic .hdf5 file to a new LeRobot v3.0 dataset")
    .argument("<in>", "LeRobot dataset folder or robomimic .hdf5 file")
    .argument("<out>", "new dataset folder (must not exist or be empty)")
    .addOption(
      option("--fps <hz>", "frames per second, for robomimic files without env_kwargs.control_freq", positiveFloat),
    )
    .option("--task <text>", "task string for robomimic episodes (default: the environment name)")
    .addOption(
      option(
        "--state-keys <keys>",
        "robomimic obs keys concatenated into observation.state (default: all low-dim keys, sorted)",
        list(text),
      ),
    )
    .addOption(option("--data-file-mb <mb>", "data file size limit in MB", positiveFloat, 100))
    .option("--json", "print one JSON object as the last stdout line")
    .addOption(option("--seed <n>", "accepted for uniformity; the command is deterministic", nonNegativeInt, 0))
    .action(
      async (
        input: string,
        out: string,
        o: CommonFlags & { fps?: number; task?: string; stateKeys?: string[]; dataFileMb: number },
      ) => {
        const { fps, dataFileMb: mb } = o;
        let bar: ReturnType<typeof startProgress> | undefined;
        const r = await convertToV3(input, out, {
          ...(fps !== undefined ? { fps } : {}),
          ...(o.task !== undefined ? { task: o.task } : {}),
          ...(o.stateKeys ? { stateKeys: o.stateKeys } : {}),
          dataFilesSizeInMb: mb,
          onEpisode: (done, total) => {
            bar ??= startProgress(total, { json: o.json ?? false, label: "convert" });
            bar.update(done);
          },
        });
        bar?.stop();
        if (!o.json && r.skipped.length > 0) log(`not copied: ${r.skipped.join(", ")}`);
        printResult(
          r,
          { json: o.json ?? false },
          (x: typeof r) =>
            `converted ${x.source} ${x.sourceVersion} -> LeRobot v3.0 at ${x.out}: ${x.episodes} episodes, ${x.frames} frames, ${x.dataFiles} data file(s); features ${x.features.join(", ")}`,
        );
      },
    );
}
