/**
 * The frozen encoder behind a run's embedding feature, for `export --encoder` (`policy/onnx/compose.ts`):
 * the run's dataset (from `<run>/run.json`) records in `meta/embedding.json` which encoder file made
 * which feature from which camera, with the file's SHA-256 and the preprocessing.
 *
 * ```ts
 * const found = await frozenEncodersFor(checkpointDir, ckpt.config.obs, {});            // the recorded file
 * const given = await frozenEncodersFor(checkpointDir, ckpt.config.obs, { encoder: "enc.onnx" });
 * ```
 *
 * Without `encoder`, the recorded file is used when it is still there with the same SHA-256; else
 * the call throws naming the feature, the file and the hashes, asking for `--encoder`. A given file
 * whose SHA-256 differs from the recorded one is refused naming both, unless `force`. A run whose
 * dataset has no `meta/embedding.json`, or whose head reads none of its features, gets `{}` (the
 * export stays the vector one) unless `encoder` is given, which is then an error saying why.
 */
import { dirname, join, resolve } from "node:path";
import { z } from "zod";
import { readJsonFile } from "../../policy/io/json.ts";
import { pathExists } from "../../policy/io/files.ts";
import { fileSha256, loadEncoderModel, type FrozenEncoder } from "../../policy/onnx/compose.ts";
import { EMBEDDING_META, type EmbeddingMeta } from "./embed.ts";

/** The part of `meta/embedding.json` an export needs; a missing or mistyped field is refused naming it. */
export const EmbeddingMetaSchema = z.object({
  format: z.literal("actionflow-embedding/1"),
  camera: z.string().min(1),
  feature: z.string().min(1),
  shape: z.array(z.number().int().positive()).min(1).max(2),
  encoder: z.object({
    file: z.string().min(1),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    input: z.string().min(1),
    output: z.string().min(1),
    size: z.object({ width: z.number().int().positive(), height: z.number().int().positive() }),
    mean: z.array(z.number()).length(3),
    std: z.array(z.number().positive()).length(3),
  }),
}) satisfies z.ZodType<Pick<EmbeddingMeta, "format" | "camera" | "feature" | "shape">>;
/** See {@link EmbeddingMetaSchema}. */
export type EmbeddingRecord = z.infer<typeof EmbeddingMetaSchema>;

/** The path of a dataset's embedding record. */
export function embeddingMetaPath(datasetDir: string): string {
  return join(datasetDir, "meta", EMBEDDING_META);
}

/** A dataset's `meta/embedding.json`, or undefined when it has none; throws naming the file and field when it is invalid. */
export async function readEmbeddingMeta(datasetDir: string): Promise<EmbeddingRecord | undefined> {
  const path = embeddingMetaPath(datasetDir);
  if (!(await pathExists(path))) return undefined;
  return readJsonFile(path, EmbeddingMetaSchema);
}

const RunDatasetSchema = z.object({ dataset: z.object({ path: z.string().min(1) }) });

/** The dataset folder a checkpoint's run trained on (`<run>/run.json`), or undefined when there is no run file. */
export async function runDatasetOf(checkpointDir: string): Promise<string | undefined> {
  const root = dirname(resolve(checkpointDir));
  for (const runDir of [dirname(root), root]) {
    const file = join(runDir, "run.json");
    if (await pathExists(file)) return resolve((await readJsonFile(file, RunDatasetSchema)).dataset.path);
  }
  return undefined;
}

/** Options of {@link frozenEncodersFor}. */
export interface FrozenEncoderOptions {
  /** The encoder file (`--encoder`); default the one `meta/embedding.json` records. */
  encoder?: string;
  /** Compose a given encoder whose SHA-256 differs from the recorded one. */
  force?: boolean;
  /** The dataset holding `meta/embedding.json` (default the run's, from run.json). */
  dataset?: string;
}

/**
 * The frozen encoders to compose per head feature name (see the module comment): `{}` or one entry,
 * the feature `meta/embedding.json` names.
 */
export async function frozenEncodersFor(
  checkpointDir: string,
  features: readonly { name: string; key: string }[],
  opts: FrozenEncoderOptions = {},
): Promise<Record<string, FrozenEncoder>> {
  const given = opts.encoder;
  const dataset = opts.dataset ?? (await runDatasetOf(checkpointDir));
  if (dataset === undefined) {
    if (given === undefined) return {};
    throw new Error(
      `--encoder ${given}: ${checkpointDir} has no run.json beside it, so the dataset (and the meta/${EMBEDDING_META} saying which feature the encoder made) is unknown`,
    );
  }
  const meta = await readEmbeddingMeta(dataset);
  if (!meta) {
    if (given === undefined) return {};
    throw new Error(
      `--encoder ${given}: the run's dataset ${dataset} has no meta/${EMBEDDING_META}: none of its features came from 'dataset embed'`,
    );
  }
  const where = embeddingMetaPath(dataset);
  const f = features.find((x) => x.key === meta.feature);
  if (!f) {
    if (given === undefined) return {};
    throw new Error(
      `--encoder ${given}: the head reads none of the embedding '${meta.feature}' (${where}); its features: ${features.map((x) => x.key).join(", ")}`,
    );
  }
  const recorded = meta.encoder.file;
  const want = meta.encoder.sha256;
  const what = `feature '${f.name}' (${meta.feature}, from camera ${meta.camera})`;
  let file: string;
  if (given !== undefined) {
    file = given;
  } else {
    if (!(await pathExists(recorded)))
      throw new Error(
        `${what} was embedded by ${recorded} (SHA-256 ${want}, ${where}), which is missing; pass --encoder <file> with that encoder, or --no-encoder to export the embedding input`,
      );
    const got = await fileSha256(recorded);
    if (got !== want)
      throw new Error(
        `${what} was embedded by ${recorded} with SHA-256 ${want} (${where}), but the file now has SHA-256 ${got}; pass --encoder <file> with the original encoder, or --no-encoder to export the embedding input`,
      );
    file = recorded;
  }
  const loaded = await loadEncoderModel(file);
  if (loaded.sha256 !== want && opts.force !== true)
    throw new Error(
      `--encoder ${file}: SHA-256 ${loaded.sha256} differs from the encoder that embedded ${what}: ${recorded} with SHA-256 ${want} (${where}); pass --force to compose it anyway`,
    );
  return {
    [f.name]: {
      file: resolve(file),
      model: loaded.model,
      sha256: loaded.sha256,
      input: meta.encoder.input,
      output: meta.encoder.output,
      size: { ...meta.encoder.size },
      mean: [...meta.encoder.mean],
      std: [...meta.encoder.std],
      camera: meta.camera,
      feature: meta.feature,
      shape: [...meta.shape],
    },
  };
}
