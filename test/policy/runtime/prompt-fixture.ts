/** A tiny prompt-conditioned head (state [2] + a prompt of three), exported, for runtime and server tests. */
import { saveCheckpoint, promptNorm } from "../../../policy/checkpoint/checkpoint.ts";
import { parseHeadConfig, type HeadConfig } from "../../../policy/net/config.ts";
import { buildHead } from "../../../policy/net/network.ts";
import { exportOnnx } from "../../../policy/onnx/export.ts";
import { Rng } from "../../../policy/random.ts";
import { randomStats, randomWeights } from "../onnx/fixture.ts";

/** The fixture's prompts, in vocabulary order. */
export const PROMPTS = ["pass through the left gap", "pass through the right gap", "stay"];

/** The tiny head's config: H=4, A=3, `observation.state` [2] and the prompt feature [3]. */
export function promptConfig(arch: "transformer" | "mlp"): HeadConfig {
  return parseHeadConfig({
    arch,
    horizon: 4,
    actionDim: 3,
    obs: [
      { name: "state", key: "observation.state", shape: [2] },
      { name: "prompt", key: "task_index", shape: [PROMPTS.length], prompts: PROMPTS },
    ],
    transformer: { width: 16, depth: 2, heads: 2, mlpRatio: 2, timeEmbedDim: 8 },
    mlp: { width: 24, depth: 2, timeEmbedDim: 4 },
  });
}

/** Writes the head with random weights as a run in `run` and exports it (euler, 3 steps); returns `run`. */
export async function writePromptRun(run: string, arch: "transformer" | "mlp"): Promise<string> {
  const config = promptConfig(arch);
  const head = buildHead(config);
  const rng = new Rng(5);
  await saveCheckpoint(run, 1, {
    config,
    weights: randomWeights(head, 11),
    normalization: {
      obs: {
        state: { key: "observation.state", mode: "mean_std", stats: randomStats(2, rng) },
        prompt: promptNorm(PROMPTS.length),
      },
      action: { key: "action", mode: "mean_std", stats: randomStats(3, rng) },
    },
  });
  await exportOnnx(run, { steps: 3 });
  return run;
}
