/**
 * `<run>/run.json`: every setting of a run, the dataset it trains on, the episode split, the head
 * config and where the normalisation stats came from. Written once when a run starts (atomically),
 * read on resume.
 */
import { join } from "node:path";
import { z } from "zod";
import { writeJsonAtomic } from "../../policy/io/atomic.ts";
import { readJsonFile } from "../../policy/io/json.ts";
import { HeadConfigSchema } from "../../policy/net/config.ts";
import type { DatasetFormat } from "../../datasets/open.ts";
import { StatsSourceSchema } from "./normalization.ts";
import { RunInputSchema } from "./settings.ts";

/** The content of `<run>/run.json`; unknown keys are dropped, a missing or mistyped one refused. */
export const RunFileSchema = z.object({
  format: z.literal("actionflow.run"),
  version: z.literal(1),
  actionflowVersion: z.string(),
  createdAt: z.string(),
  dataset: z.object({
    path: z.string(),
    format: z.enum(["lerobot", "robomimic"]) satisfies z.ZodType<DatasetFormat>,
    codebaseVersion: z.string().nullable(),
    episodes: z.number().int().nonnegative(),
    frames: z.number().int().nonnegative(),
  }),
  split: z.object({ train: z.array(z.number().int()), val: z.array(z.number().int()) }),
  input: RunInputSchema,
  head: HeadConfigSchema,
  statsSource: StatsSourceSchema,
  /** Dims whose stats were guarded against a near-zero spread, per dataset column. */
  guardedDims: z.record(z.string(), z.array(z.number().int().nonnegative())),
});
/** The content of `<run>/run.json` (see {@link RunFileSchema}). */
export type RunFile = z.infer<typeof RunFileSchema>;

/** The path of a run folder's run file. */
export function runFilePath(runDir: string): string {
  return join(runDir, "run.json");
}

/** Reads `<run>/run.json`; throws naming the file when it is missing, not JSON, or a field is wrong (and which). */
export async function readRunFile(runDir: string): Promise<RunFile> {
  return readJsonFile(runFilePath(runDir), RunFileSchema, {
    missing: "nothing to resume? start without --resume",
    invalid: "a corrupt run file: start a new run in another folder",
  });
}

/** Writes `<run>/run.json` atomically. */
export async function writeRunFile(runDir: string, file: RunFile): Promise<void> {
  await writeJsonAtomic(runFilePath(runDir), file);
}
