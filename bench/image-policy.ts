/**
 * The image policy's latency (`bench infer`'s `image` record): the default transformer head with a
 * 6-dim state and one 96x96 camera under the default image encoder (`policy/net/vision.ts`),
 * untrained (seeded weights and stats), exported with 10 Euler steps and run by onnxruntime at
 * batch 1 from a uint8 image; and the encoder alone (cast, normalisation and encoder, the part of
 * the sample graph that runs once per chunk), as its own ONNX graph with the same weights, so its
 * share of the chunk is measured, not estimated.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { parseHeadConfig } from "../policy/net/config.ts";
import { encodeImage } from "../policy/net/vision.ts";
import { headFlops } from "../policy/net/flops.ts";
import { buildHead } from "../policy/net/network.ts";
import { saveCheckpoint } from "../policy/checkpoint/checkpoint.ts";
import type { NormalizationSpec } from "../policy/checkpoint/checkpoint.ts";
import { affineFor } from "../policy/normalize.ts";
import { exportOnnx } from "../policy/onnx/export.ts";
import { cameraInput } from "../policy/onnx/graphs.ts";
import { OnnxOps } from "../policy/onnx/ops.ts";
import { OnnxPolicy } from "../policy/runtime/onnx-policy.ts";
import { Rng } from "../policy/random.ts";
import { percentiles } from "../policy/stats/quantiles.ts";
import { benchModel } from "./reference.ts";
import { benchWeights, stats } from "./weights.ts";

/** Target p50 of the image policy's 10-step chunk at batch 1, 96 px, one camera (ms). */
export const IMAGE_CHUNK_TARGET_MS = 15;
/** Target p50 of the image encoder alone (ms). */
export const IMAGE_ENCODER_TARGET_MS = 3;

const SIZE = 96;
const STATE = 6;

/** Runs the image-policy benchmark; returns its JSON record. */
export async function benchImagePolicy(o: { runs: number; threads: number }): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), "actionflow-bench-image-"));
  try {
    const config = parseHeadConfig({
      arch: "transformer",
      obs: [
        { name: "state", key: "observation.state", shape: [STATE] },
        { name: "front", key: "observation.images.front", shape: [SIZE, SIZE, 3], kind: "image" },
      ],
    });
    const rng = new Rng(42);
    const camStats = { mean: [0.45, 0.42, 0.4], std: [0.2, 0.2, 0.2], min: [0, 0, 0], max: [1, 1, 1], count: 1 };
    const normalization: NormalizationSpec = {
      obs: {
        state: { key: "observation.state", mode: "mean_std", stats: stats(STATE, rng) },
        front: { key: "observation.images.front", mode: "mean_std", stats: camStats },
      },
      action: { key: "action", mode: "mean_std", stats: stats(config.actionDim, rng) },
    };
    const weights = benchWeights(config, 3);
    await saveCheckpoint(dir, 0, { config, weights, normalization });
    const exported = await exportOnnx(dir, { steps: 10, solver: "euler" });

    const image = Uint8Array.from({ length: SIZE * SIZE * 3 }, () => rng.int(256));
    const state = rng.normalArray(STATE);
    const policy = await OnnxPolicy.load(exported.onnx, { threads: o.threads });
    const chunkMs: number[] = [];
    try {
      await policy.warmup({ runs: 5 });
      for (let i = 0; i < o.runs; i++) {
        const t0 = performance.now();
        await policy.sampleChunk({ "observation.state": state, "observation.images.front": image }, { seed: i });
        chunkMs.push(performance.now() - t0);
      }
    } finally {
      await policy.release();
    }

    // The encoder alone: uint8 -> float -> per-channel normalisation -> encoder tokens.
    const ops = new OnnxOps({ weights });
    const normed = cameraInput(ops, "pixels", [SIZE, SIZE, 3], affineFor(camStats, "mean_std", "front"));
    ops.output(encodeImage(ops, "obs.front.vision", normed, { height: SIZE, width: SIZE }, config.vision), "tokens");
    const encoderModel = benchModel(ops, "image_encoder");
    const session = await ort.InferenceSession.create(encoderModel, {
      graphOptimizationLevel: "all",
      intraOpNumThreads: o.threads,
      interOpNumThreads: 1,
    });
    const encoderMs: number[] = [];
    try {
      const feeds = { pixels: new ort.Tensor("uint8", image, [1, SIZE, SIZE, 3]) };
      for (let i = 0; i < 5; i++) await session.run(feeds);
      for (let i = 0; i < o.runs; i++) {
        const t0 = performance.now();
        await session.run(feeds);
        encoderMs.push(performance.now() - t0);
      }
    } finally {
      await session.release();
    }
    const chunk = percentiles(chunkMs);
    const encoder = percentiles(encoderMs);
    const flops = headFlops(buildHead(config), 1, { time: "constant" });
    return {
      camera: { width: SIZE, height: SIZE },
      vision: config.vision,
      steps: 10,
      batch: 1,
      ort: { ...chunk, targetMs: IMAGE_CHUNK_TARGET_MS, meetsTarget: chunk.p50Ms <= IMAGE_CHUNK_TARGET_MS },
      encoder: {
        ...encoder,
        targetMs: IMAGE_ENCODER_TARGET_MS,
        meetsTarget: encoder.p50Ms <= IMAGE_ENCODER_TARGET_MS,
        shareOfChunk: encoder.p50Ms / chunk.p50Ms,
      },
      // multiply-adds of the encoder pass (observation encoding) and of one velocity step
      flops,
      onnxBytes: exported.bytes,
      threads: o.threads,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
