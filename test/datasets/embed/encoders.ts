/**
 * Small real ONNX image encoders for the embed tests, written with the project's own ONNX emitter:
 * a strided Conv with seeded weights, then a mean over the image (`[N, D]`) or the conv cells as
 * tokens (`[N, T, D]`), and a float64 reference of the same computation.
 */
import { writeFile } from "node:fs/promises";
import { OnnxOps } from "../../../policy/onnx/ops.ts";
import { IR_VERSION, OPSET, encodeModel } from "../../../policy/onnx/proto.ts";
import type { ModelProto } from "../../../policy/onnx/proto.ts";
import { Rng } from "../../../policy/random.ts";

/** What {@link convEncoder} builds. */
export interface ConvEncoderSpec {
  /** Input size (the graph's static H, W unless `dynamicSize`). */
  width: number;
  height: number;
  /** Output width D (conv filters). */
  dim: number;
  /** Square kernel and stride of the conv (no padding). */
  kernel: number;
  /** `pooled` -> `[N, D]` (ReduceMean over the image); `tokens` -> `[N, T, D]`, T the conv cells. */
  output: "pooled" | "tokens";
  seed: number;
  /** Symbolic H and W in the graph (the size must come from elsewhere). */
  dynamicSize?: boolean;
  /** Input channels (3 for a real encoder). */
  channels?: number;
  /** Input rank 3 `[N, H, W]` instead of `[N, C, H, W]` (a wrong encoder). */
  rank3?: boolean;
  metadata?: Record<string, string>;
  /** Static batch N instead of a symbolic one. */
  batch?: number;
}

/** The encoder's weights: conv `[D, C, k, k]` and bias `[D]`, drawn from the seed. */
export function convWeights(spec: ConvEncoderSpec): { w: Float32Array; b: Float32Array } {
  const c = spec.rank3 ? 1 : (spec.channels ?? 3);
  const rng = new Rng(spec.seed);
  const w = Float32Array.from({ length: spec.dim * c * spec.kernel * spec.kernel }, () => rng.normal() * 0.2);
  const b = Float32Array.from({ length: spec.dim }, () => rng.normal() * 0.1);
  return { w, b };
}

/** The ONNX model of `spec`. */
export function convEncoder(spec: ConvEncoderSpec): ModelProto {
  const c = spec.channels ?? 3;
  const { dim: d, kernel: k, width: W, height: H } = spec;
  const ops = new OnnxOps({});
  const n = spec.batch ?? -1;
  const x = spec.rank3 ? ops.input("pixel_values", [n, H, W]) : ops.input("pixel_values", [n, c, H, W]);
  const { w, b } = convWeights(spec);
  const img = spec.rank3 ? ops.reshape(x, [n, 1, H, W]) : x;
  const oh = Math.floor((H - k) / k) + 1;
  const ow = Math.floor((W - k) / k) + 1;
  const conv = ops.node(
    "Conv",
    [img, ops.constant(w, [d, spec.rank3 ? 1 : c, k, k]), ops.constant(b, [d])],
    [n, d, oh, ow],
    {
      kernel_shape: { ints: [k, k] },
      strides: { ints: [k, k] },
    },
  );
  if (spec.output === "pooled") {
    const y = ops.node("ReduceMean", [conv], [n, d], { axes: { ints: [2, 3] }, keepdims: { int: 0 } });
    ops.output(y, "pooler_output");
  } else {
    const tokens = ops.node("Reshape", [conv, ops.int64([0, d, -1])], [n, d, oh * ow]);
    ops.output(ops.transpose(tokens, [0, 2, 1]), "last_hidden_state");
  }
  const graph = ops.graph("conv-encoder");
  if (spec.dynamicSize) {
    const dims = graph.input[0]!.type.tensorType.shape!.dim;
    dims[dims.length - 2] = { dimParam: "height" };
    dims[dims.length - 1] = { dimParam: "width" };
  }
  return {
    irVersion: IR_VERSION,
    opsetImport: [{ domain: "", version: OPSET }],
    producerName: "actionflow-test",
    graph,
    ...(spec.metadata ? { metadataProps: Object.entries(spec.metadata).map(([key, value]) => ({ key, value })) } : {}),
  };
}

/** Writes the model of `spec` to `file`. */
export async function writeConvEncoder(file: string, spec: ConvEncoderSpec): Promise<void> {
  await writeFile(file, encodeModel(convEncoder(spec)));
}

/**
 * The float64 reference: uint8 RGB frames `[n, H, W, 3]` normalised `(x/255 - mean)/std` through the
 * conv, pooled or as tokens: `[n, D]` or `[n, T, D]` flat.
 */
export function convReference(
  spec: ConvEncoderSpec,
  rgb: Uint8Array,
  n: number,
  norm: { mean: readonly number[]; std: readonly number[] },
): Float64Array {
  const { dim: d, kernel: k, width: W, height: H } = spec;
  const { w, b } = convWeights(spec);
  const oh = Math.floor((H - k) / k) + 1;
  const ow = Math.floor((W - k) / k) + 1;
  const T = oh * ow;
  const out = new Float64Array(spec.output === "pooled" ? n * d : n * T * d);
  for (let f = 0; f < n; f++)
    for (let o = 0; o < d; o++)
      for (let i = 0; i < oh; i++)
        for (let j = 0; j < ow; j++) {
          let acc = b[o]!;
          for (let c = 0; c < 3; c++)
            for (let u = 0; u < k; u++)
              for (let v = 0; v < k; v++) {
                const px = rgb[((f * H + i * k + u) * W + j * k + v) * 3 + c]!;
                acc += w[((o * 3 + c) * k + u) * k + v]! * ((px / 255 - norm.mean[c]!) / norm.std[c]!);
              }
          if (spec.output === "pooled") out[f * d + o]! += acc / T;
          else out[(f * T + i * ow + j) * d + o] = acc;
        }
  return out;
}
