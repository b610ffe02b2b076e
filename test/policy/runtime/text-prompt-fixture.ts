/**
 * Tiny heads whose prompt is an embedding (state [2] + a prompt vector [8]): one from a table, one
 * from the bag-of-words text encoder of `test/policy/text/fixture.ts`, each written as a run with
 * random weights and exported, for runtime and server tests.
 */
import { join } from "node:path";
import { promptNorm, saveCheckpoint } from "../../../policy/checkpoint/checkpoint.ts";
import { parseHeadConfig, type HeadConfig } from "../../../policy/net/config.ts";
import { buildHead } from "../../../policy/net/network.ts";
import { exportOnnx } from "../../../policy/onnx/export.ts";
import { Rng } from "../../../policy/random.ts";
import { PromptEncoder, copyTextEncoder } from "../../../policy/text/encoder.ts";
import { randomStats, randomWeights } from "../onnx/fixture.ts";
import { writeTextEncoder } from "../text/fixture.ts";

/** The prompts the heads were "trained" on. */
export const TRAINED = ["pass through the left gap", "pass through the right gap"];
/** The embedding size. */
export const DIM = 8;

/** The head config: H=4, A=3, state [2], the prompt an embedding [DIM] with one vector per prompt. */
export function embeddingConfig(
  source: "table" | "encoder",
  vectors: number[][],
  arch: "transformer" | "mlp" = "transformer",
): HeadConfig {
  return parseHeadConfig({
    arch,
    horizon: 4,
    actionDim: 3,
    obs: [
      { name: "state", key: "observation.state", shape: [2] },
      {
        name: "prompt",
        key: "task_index",
        shape: [DIM],
        prompts: TRAINED,
        promptEmbedding: { source, vectors, ...(source === "encoder" ? { normalize: true } : {}) },
      },
    ],
    transformer: { width: 16, depth: 2, heads: 2, mlpRatio: 2, timeEmbedDim: 8 },
    mlp: { width: 24, depth: 2, timeEmbedDim: 4 },
  });
}

/** Random table vectors, one per trained prompt. */
export function tableVectorsFixture(): number[][] {
  const rng = new Rng(17);
  return TRAINED.map(() => Array.from(rng.normalArray(DIM)));
}

/**
 * Writes a run in `run` (checkpoint, for `encoder` the run's `text-encoder/` folder with the
 * fixture's encoder, its vectors those of the trained prompts) and exports it (euler, 3 steps).
 */
export async function writeEmbeddingRun(
  run: string,
  source: "table" | "encoder",
  arch: "transformer" | "mlp" = "transformer",
): Promise<string> {
  let vectors = tableVectorsFixture();
  if (source === "encoder") {
    const files = writeTextEncoder(join(run, "..", `${source}-encoder-src`), { dim: DIM, seed: 4 });
    const enc = await PromptEncoder.load(files);
    try {
      vectors = (await enc.embed(TRAINED)).map((v) => Array.from(v));
    } finally {
      await enc.release();
    }
    await copyTextEncoder(files, run);
  }
  const config = embeddingConfig(source, vectors, arch);
  const head = buildHead(config);
  const rng = new Rng(5);
  await saveCheckpoint(run, 1, {
    config,
    weights: randomWeights(head, 11),
    normalization: {
      obs: {
        state: { key: "observation.state", mode: "mean_std", stats: randomStats(2, rng) },
        prompt: promptNorm(TRAINED.length, "task_index", vectors),
      },
      action: { key: "action", mode: "mean_std", stats: randomStats(3, rng) },
    },
  });
  await exportOnnx(run, { steps: 3 });
  return run;
}
