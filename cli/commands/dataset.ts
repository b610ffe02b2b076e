/**
 * `actionflow dataset info|stats|convert|embed`: inspect LeRobot datasets (v2.x, v3.0) and robomimic
 * HDF5 files, compute their statistics, convert them to LeRobot v3.0, embed a camera with a frozen
 * ONNX image encoder (the pipeline is `datasets/embed/embed.ts`).
 */
import { existsSync } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Command } from "commander";
import {
  choice,
  choiceOption,
  defined,
  list,
  nonNegativeInt,
  option,
  positiveFloat,
  positiveInt,
  text,
} from "../args.ts";
import { convertToV3 } from "../../datasets/lerobot/convert.ts";
import { embedDataset, type EmbedResult } from "../../datasets/embed/embed.ts";
import { parseImageSize, parseTriple } from "../../datasets/embed/encoder.ts";
import { convertBags, type ConvertBagsResult, type SplitMode } from "../../bridge/record/convert.ts";
import { loadRobotProfile, withInterventionTopic } from "../../bridge/profile.ts";
import { openDataset } from "../../datasets/open.ts";
import { describeDataset, summarizeStats } from "../../datasets/summary.ts";
import type { DatasetInfo, DatasetStatsSummary } from "../../datasets/summary.ts";
import { log, printResult, startProgress } from "../output.ts";

interface CommonFlags {
  json?: boolean;
  seed?: number;
}

function humanInfo(r: DatasetInfo): string {
  const lines = [
    `${r.format}${r.codebaseVersion ? ` ${r.codebaseVersion}` : ""}: ${r.episodes} episodes, ${r.frames} frames${r.fps ? ` at ${r.fps} fps (${(r.frames / r.fps / 60).toFixed(1)} min)` : ""}`,
    `robot: ${r.robotType ?? "-"}`,
    `tasks: ${r.tasks.length ? r.tasks.map((t) => JSON.stringify(t)).join(", ") : "-"}`,
    "features:",
    ...Object.entries(r.features).map(([n, f]) => `  ${n.padEnd(32)} ${f.dtype.padEnd(8)} [${f.shape.join(", ")}]`),
  ];
  for (const c of r.cameras)
    lines.push(
      `camera ${c.key}: ${c.dtype}${c.codec ? ` ${c.codec}` : ""} [${c.shape.join(", ")}], video for ${c.episodesWithVideo.length} of ${c.episodesWithVideo.length + c.missingEpisodes.length} episodes${c.missingEpisodes.length ? ` (missing: ${c.missingEpisodes.join(", ")})` : ""}`,
    );
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

function fmt(v: readonly number[] | undefined): string {
  if (!v) return "-";
  const shown = v
    .slice(0, 8)
    .map((x) => (Math.abs(x) >= 1e4 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(2) : x.toFixed(4)));
  return `[${shown.join(", ")}${v.length > 8 ? `, ... (${v.length})` : ""}]`;
}

function humanStats(r: DatasetStatsSummary): string {
  const lines = [
    `statistics from ${r.source === "data" ? "the frames" : "the metadata"}: ${r.episodes} episodes, ${r.frames} frames`,
  ];
  for (const [n, s] of Object.entries(r.features)) {
    lines.push(`${n} (count ${s.count})`);
    for (const k of ["mean", "std", "min", "max", "q01", "q99"] as const) lines.push(`  ${k.padEnd(4)} ${fmt(s[k])}`);
  }
  return lines.join("\n");
}

/** Registers `dataset info`, `dataset stats`, `dataset convert` and `dataset embed`. */
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
        printResult(await describeDataset(opened), { json: o.json ?? false }, humanInfo);
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
        const json = o.json ?? false;
        const bar = o.fromMeta ? undefined : startProgress(opened.dataset.episodes.length, { json, label: "stats" });
        const result = await summarizeStats(opened, path, {
          source: o.fromMeta ? "meta" : "data",
          bins: o.bins,
          ...(o.features ? { features: o.features } : {}),
          ...(bar ? { onEpisode: (done: number) => bar.update(done) } : {}),
        }).finally(() => bar?.stop());
        printResult(result, { json: o.json ?? false }, humanStats);
      } finally {
        opened.dataset.close();
      }
    });

  dataset
    .command("convert")
    .description(
      "convert a LeRobot v2.x/v3.0 folder, a robomimic .hdf5 file, or a ROS 2 bag / run log (.mcap) or ROS 1 bag (.bag) with --robot, to a new LeRobot v3.0 dataset",
    )
    .argument(
      "<in>",
      "LeRobot dataset folder, robomimic .hdf5 file, .mcap (ROS 2 bag or run log), .bag (ROS 1) or a folder of .mcap/.bag files",
    )
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
    .option("--robot <profile>", "bags: the robot profile mapping topics to features (and its recording section)")
    .addOption(
      option(
        "--split <how>",
        "bags: episodes at the control topic's start/stop/discard markers (marker), at gaps (gap), or at markers where a file has them (auto, the default)",
        choice(["auto", "marker", "gap"] as const),
      ),
    )
    .addOption(
      option("--split-gap <s>", "bags: a gap in the topics longer than this starts a new episode", positiveFloat, 0.5),
    )
    .option("--interventions-only", "bags: only the stretches where the intervention topic was true")
    .option("--intervention-topic <topic>", "bags: the std_msgs/Bool intervention topic (overrides the profile's)")
    .option("--json", "print one JSON object as the last stdout line")
    .addOption(option("--seed <n>", "accepted for uniformity; the command is deterministic", nonNegativeInt, 0))
    .action(
      async (
        input: string,
        out: string,
        o: CommonFlags & {
          fps?: number;
          task?: string;
          stateKeys?: string[];
          dataFileMb: number;
          robot?: string;
          split?: SplitMode;
          splitGap: number;
          interventionsOnly?: boolean;
          interventionTopic?: string;
        },
      ) => {
        const bags = await bagInputs(input);
        if (bags) return convertBag(bags, out, o);
        if (o.robot !== undefined || o.interventionsOnly || o.split !== undefined)
          throw new Error("--robot, --split and --interventions-only go with a .mcap or .bag input");
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

  dataset
    .command("embed")
    .description(
      "run a camera of a LeRobot dataset through a frozen ONNX image encoder ([N, 3, H, W] -> [N, D] or [N, T, D]) into a new LeRobot v3.0 dataset with the embeddings as a float32 feature",
    )
    .argument("<dataset>", "LeRobot dataset folder (v2.x or v3.0)")
    .requiredOption("--encoder <file>", "the ONNX image encoder (SigLIP, DINOv2, ... vision tower)")
    .requiredOption("--camera <key>", "the camera feature, e.g. observation.images.front")
    .requiredOption("--out <dir>", "new dataset folder (must not exist or be empty)")
    .option("--feature <key>", "the new feature's key (default observation.embeddings.<camera short name>)")
    .addOption(
      option(
        "--size <WxH>",
        "encoder input size (default: the graph's, metadata_props or preprocessor_config.json)",
        (t, f) => parseImageSize(t, f),
      ),
    )
    .addOption(
      option("--mean <r,g,b>", "per-channel mean of [0, 1] pixels (default: the model's, else ImageNet's)", (t, f) =>
        parseTriple(t, f),
      ),
    )
    .addOption(
      option("--std <r,g,b>", "per-channel std of [0, 1] pixels (default: the model's, else ImageNet's)", (t, f) =>
        parseTriple(t, f),
      ),
    )
    .option("--output <name>", "the encoder output to read (default: its first [N, D] output, else [N, T, D])")
    .addOption(option("--batch <n>", "frames per encoder call", positiveInt, 64))
    .addOption(
      choiceOption(
        "--missing-video <how>",
        "an episode without its video: error (default) or skip it",
        ["error", "skip"] as const,
        "error",
      ),
    )
    .option("--json", "print one JSON object as the last stdout line")
    .addOption(option("--seed <n>", "accepted for uniformity; the command is deterministic", nonNegativeInt, 0))
    .action(
      async (
        path: string,
        o: CommonFlags & {
          encoder: string;
          camera: string;
          out: string;
          feature?: string;
          size?: { width: number; height: number };
          mean?: number[];
          std?: number[];
          output?: string;
          batch: number;
          missingVideo: "error" | "skip";
        },
      ) => {
        const json = o.json ?? false;
        let bar: ReturnType<typeof startProgress> | undefined;
        const r = await embedDataset({
          dataset: path,
          encoder: o.encoder,
          camera: o.camera,
          out: o.out,
          ...defined({ feature: o.feature, size: o.size, mean: o.mean, std: o.std, output: o.output }),
          batch: o.batch,
          missingVideo: o.missingVideo,
          onProgress: (done, total) => {
            bar ??= startProgress(total, { json, label: "embed" });
            bar.update(done);
          },
        }).finally(() => bar?.stop());
        printResult(
          r,
          { json },
          (x: EmbedResult) =>
            `embedded ${x.frames} frames of ${x.episodes} episodes into ${x.feature} [${x.shape.join(", ")}] at ${x.out} in ${x.seconds.toFixed(1)} s (${x.framesPerSecond.toFixed(1)} frames/s)` +
            `${x.skipped.length > 0 ? `; skipped episodes ${x.skipped.map((s) => s.episode).join(", ")} (no video)` : ""}; cameras not copied: ${x.notCopied.join(", ")}`,
        );
      },
    );
}

const BAG = /\.(mcap|bag)$/i;

/**
 * The recordings `input` names: itself (.mcap or .bag), or every .mcap and .bag file in a folder that
 * is not a LeRobot dataset, in name order; else undefined.
 */
async function bagInputs(input: string): Promise<string[] | undefined> {
  if (BAG.test(input)) return [input];
  const st = await stat(input).catch(() => undefined);
  if (!st?.isDirectory() || existsSync(join(input, "meta", "info.json"))) return undefined;
  const files = (await readdir(input)).filter((f) => BAG.test(f)).sort();
  return files.length > 0 ? files.map((f) => join(input, f)) : undefined;
}

/** `dataset convert <file.mcap|file.bag|folder> <out> --robot <profile>`: bags or run logs to LeRobot v3.0. */
async function convertBag(
  input: string[],
  out: string,
  o: CommonFlags & {
    fps?: number;
    task?: string;
    robot?: string;
    split?: SplitMode;
    splitGap: number;
    interventionsOnly?: boolean;
    interventionTopic?: string;
  },
): Promise<void> {
  if (o.robot === undefined)
    throw new Error(`${input.join(", ")}: a .mcap or .bag input needs --robot <profile> to map its topics`);
  const profile = withInterventionTopic(await loadRobotProfile(o.robot), o.interventionTopic);
  const r = await convertBags(input, out, {
    profile,
    profileSource: o.robot,
    ...(o.split !== undefined ? { split: o.split } : {}),
    splitGapS: o.splitGap,
    ...(o.fps !== undefined ? { fps: o.fps } : {}),
    ...(o.task !== undefined ? { task: o.task } : {}),
    ...(o.interventionsOnly ? { interventionsOnly: true } : {}),
  });
  if (!o.json) {
    for (const g of r.gaps)
      log(`${g.file}: gap ${g.fromS.toFixed(2)}-${g.toS.toFixed(2)} s (${g.frames} frames): late ${g.late.join(", ")}`);
    for (const d of r.discarded)
      log(`${d.file}: discarded episode ${d.fromS.toFixed(2)}-${d.toS.toFixed(2)} s (${d.frames} frames)`);
    for (const s of r.splits) if (s.openAtEnd) log(`${s.file}: the last episode has no stop marker; kept to the end`);
    for (const [topic, x] of Object.entries(r.rejected))
      log(`${topic}: ${x.count} message(s) not used, first: ${x.first}`);
  }
  printResult(
    r,
    { json: o.json ?? false },
    (x: ConvertBagsResult) =>
      `converted ${x.files} file(s) -> LeRobot v3.0 at ${x.out}: ${x.episodes} episodes, ${x.frames} frames at ${x.fps} fps` +
      `${x.discarded.length > 0 ? ` (${x.discarded.length} discarded)` : ""}; features ${x.features.join(", ")}`,
  );
}
