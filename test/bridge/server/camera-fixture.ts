/**
 * A test-only {@link ServedPolicy} that declares camera features and records every observation it
 * is given: stands in for an image policy until one can be exported. Its chunk is a fingerprint of
 * the observation (per camera the sum of its bytes, then the state's first value), so a client can
 * tell which image reached it.
 */
import type { ChunkRequest, Observation } from "../../../policy/chunk-policy.ts";
import type { FeatureIO } from "../../../policy/onnx/schema.ts";
import type { ServedPolicy } from "../../../bridge/server/served-policy.ts";
import type { TimedChunk } from "../../../policy/runtime/threaded.ts";

/** A camera feature `observation.images.<name>` of `[height, width, 3]`. */
export function cameraFeature(name: string, height: number, width: number): FeatureIO {
  return {
    name,
    key: `observation.images.${name}`,
    shape: [height, width, 3],
    rawShape: [height, width, 3],
    kind: "image",
  };
}

/** The state feature of the recording policies: `observation.state` `[2]`. */
export const STATE_FEATURE: FeatureIO = { name: "state", key: "observation.state", shape: [2], rawShape: [2] };

/** A policy with `observation.state` [2] and the given cameras; horizon 2, one action of `cameras + 1` values. */
export class RecordingImagePolicy implements ServedPolicy {
  readonly horizon = 2;
  readonly actionDim: number;
  readonly modelActionDim: number;
  readonly fps = 10;
  readonly solver = "none";
  readonly steps = 0;
  readonly features: readonly FeatureIO[];
  /** Every observation given, in order. */
  readonly seen: Observation[] = [];

  constructor(cameras: readonly FeatureIO[]) {
    this.features = [STATE_FEATURE, ...cameras];
    this.actionDim = cameras.length + 1;
    this.modelActionDim = this.actionDim;
  }

  /** The chunk {@link sampleChunk} answers for `obs`. */
  fingerprint(obs: Observation): Float32Array {
    const row = new Float32Array(this.actionDim);
    this.features.slice(1).forEach((f, i) => {
      const img = obs[f.key]!;
      let s = 0;
      for (const v of img) s += v;
      row[i] = s;
    });
    row[this.actionDim - 1] = obs["observation.state"]![0]!;
    const out = new Float32Array(this.horizon * this.actionDim);
    for (let k = 0; k < this.horizon; k++) out.set(row, k * this.actionDim);
    return out;
  }

  sampleChunk(obs: Observation, req?: ChunkRequest): Promise<Float32Array> {
    void req;
    for (const f of this.features) {
      const v = obs[f.key];
      const ok = f.kind === "image" ? v instanceof Uint8Array : v instanceof Float32Array;
      if (!ok || v === undefined || v.length !== f.rawShape.reduce((a, b) => a * b, 1))
        return Promise.reject(new Error(`recording policy: '${f.key}' has the wrong type or size`));
    }
    this.seen.push(obs);
    return Promise.resolve(this.fingerprint(obs));
  }

  async sampleChunkTimed(obs: Observation, req?: ChunkRequest): Promise<TimedChunk> {
    const actions = await this.sampleChunk(obs, req);
    return { actions, inferMs: 0.01, totalMs: 0.01, batch: 1 };
  }

  reset(seed: number): void {
    void seed;
  }
}

/** A deterministic uint8 RGB image `[height, width, 3]` (a gradient with a seed). */
export function testImage(height: number, width: number, seed: number): Uint8Array {
  const out = new Uint8Array(height * width * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      for (let c = 0; c < 3; c++) out[(y * width + x) * 3 + c] = (x * 37 + y * 11 + c * 53 + seed * 17) % 256;
  return out;
}
