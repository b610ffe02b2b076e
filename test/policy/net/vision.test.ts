import { beforeAll, describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs";
import * as ort from "onnxruntime-node";
import { parseHeadConfig, visionShapeIssue, type HeadConfigInput } from "../../../policy/net/config.ts";
import { buildHead } from "../../../policy/net/network.ts";
import { featureSize } from "../../../policy/net/head.ts";
import { encodeImage, visionMapSize } from "../../../policy/net/vision.ts";
import { TfjsOps } from "../../../policy/net/tfjs-ops.ts";
import { OnnxOps } from "../../../policy/onnx/ops.ts";
import { buildSampleModel, obsInputName } from "../../../policy/onnx/graphs.ts";
import { encodeModel, DataType } from "../../../policy/onnx/proto.ts";
import { Tape, type Traced } from "../../../policy/autodiff/tape.ts";
import { maskedSquaredError } from "../../../policy/autodiff/loss.ts";
import { sampleChunkTfjs } from "../../../policy/sampling/tfjs.ts";
import { affineFor, denormalize, imageNorm, normalize, padAffine } from "../../../policy/normalize.ts";
import { Rng } from "../../../policy/random.ts";
import { F64Ops, finiteDifferenceCheck, type F64 } from "../autodiff/f64.ts";
import { randomStats, randomWeights } from "../onnx/fixture.ts";
import { maxAbsDiff, modelOf } from "../onnx/helpers.ts";

const BATCH = 2;
const IMG = { height: 24, width: 24 };

/** A tiny camera head: state [4] and a 24x24 camera, one vision stage. */
function cameraConfig(arch: "transformer" | "mlp") {
  const input: HeadConfigInput = {
    arch,
    horizon: 4,
    actionDim: 3,
    obs: [
      { name: "state", key: "observation.state", shape: [4] },
      { name: "front", key: "observation.images.front", shape: [IMG.height, IMG.width, 3], kind: "image" },
    ],
    transformer: { width: 16, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 8 },
    mlp: { width: 16, depth: 1, timeEmbedDim: 4 },
    vision: { stem: 2, width: 8, stages: 1, channels: 8, groups: 2, tokens: 2 },
  };
  return parseHeadConfig(input);
}

beforeAll(async () => {
  await tf.setBackend("cpu");
  await tf.ready();
});

describe("image encoder", () => {
  it("checks the image size against the encoder", () => {
    const v = cameraConfig("mlp").vision;
    expect(visionShapeIssue(v, 24, 24)).toBeUndefined();
    expect(visionShapeIssue(v, 25, 24)).toMatch(/not a multiple of the stem patch 2/);
    expect(visionShapeIssue(v, 8, 8)).toMatch(/leaves a 1x1 map/);
    expect(visionShapeIssue(v, 16, 16)).toMatch(/leaves a 3x3 map, too small for the last 3x3 convolution/);
    expect(visionMapSize(v, 24, 24)).toEqual({ h: 3, w: 3 });
    expect(() => parseHeadConfig({ ...cameraConfig("mlp"), vision: { ...v, tokens: 3 } })).toThrow(
      /vision.tokens 3 must divide vision.channels 8/,
    );
    expect(() =>
      parseHeadConfig({ obs: [{ name: "cam", key: "observation.images.cam", shape: [8, 8, 1], kind: "image" }] }),
    ).toThrow(/a camera feature has shape \[height, width, 3\]/);
  });

  it("a patch convolution and a 3x3 convolution equal onnxruntime's own Conv", async () => {
    // The stem of a stageless encoder followed by its last 3x3 convolution, read before the spatial
    // softmax, against Conv nodes with the same weights rearranged to [out, in, kh, kw].
    const rng = new Rng(3);
    const p = 2;
    const c1 = 4;
    const c2 = 5;
    const [h, w] = [6, 8];
    const wStem = Float32Array.from({ length: p * p * 3 * c1 }, () => rng.normal());
    const w3 = Float32Array.from({ length: 9 * c1 * c2 }, () => rng.normal());
    const image = Float32Array.from({ length: h * w * 3 }, () => rng.normal());
    // Our form: patches -> dense, then im2col -> dense (biases zero), through OnnxOps.
    const weights = new Map([
      ["stem.weight", { shape: [p * p * 3, c1], data: wStem }],
      ["stem.bias", { shape: [c1], data: new Float32Array(c1) }],
      ["conv.weight", { shape: [9 * c1, c2], data: w3 }],
      ["conv.bias", { shape: [c2], data: new Float32Array(c2) }],
    ]);
    const ops = new OnnxOps({ weights });
    const x = ops.input("x", [-1, h, w, 3]);
    const patches = ops.reshape(ops.transpose(ops.reshape(x, [-1, h / p, p, w / p, p, 3]), [0, 1, 3, 2, 4, 5]), [
      -1,
      (h / p) * (w / p),
      p * p * 3,
    ]);
    const stem = ops.add(
      ops.matMul(patches, ops.param({ name: "stem.weight", shape: [12, c1], init: { kind: "zeros" } })),
      ops.param({ name: "stem.bias", shape: [c1], init: { kind: "zeros" } }),
    );
    const grid = ops.reshape(stem, [-1, h / p, w / p, c1]);
    const views = [];
    for (let dy = 0; dy < 3; dy++)
      for (let dx = 0; dx < 3; dx++)
        views.push(ops.slice(ops.slice(grid, 1, dy, dy + h / p - 2), 2, dx, dx + w / p - 2));
    const cols = ops.reshape(ops.concat(views, 3), [-1, (h / p - 2) * (w / p - 2), 9 * c1]);
    const out = ops.matMul(cols, ops.param({ name: "conv.weight", shape: [9 * c1, c2], init: { kind: "zeros" } }));
    ops.output(out, "y");
    const ours = await ort.InferenceSession.create(encodeModel(modelOf(ops)));
    const y1 = (await ours.run({ x: new ort.Tensor("float32", image, [1, h, w, 3]) }))["y"]!.data as Float32Array;

    // Reference: NCHW Conv nodes.
    const ref = new OnnxOps({});
    const xin = ref.input("x", [-1, h, w, 3]);
    const nchw = ref.transpose(xin, [0, 3, 1, 2]);
    const kStem = new Float32Array(c1 * 3 * p * p);
    for (let py = 0; py < p; py++)
      for (let px = 0; px < p; px++)
        for (let ci = 0; ci < 3; ci++)
          for (let co = 0; co < c1; co++)
            kStem[((co * 3 + ci) * p + py) * p + px] = wStem[((py * p + px) * 3 + ci) * c1 + co]!;
    const k3 = new Float32Array(c2 * c1 * 9);
    for (let dy = 0; dy < 3; dy++)
      for (let dx = 0; dx < 3; dx++)
        for (let ci = 0; ci < c1; ci++)
          for (let co = 0; co < c2; co++)
            k3[((co * c1 + ci) * 3 + dy) * 3 + dx] = w3[((dy * 3 + dx) * c1 + ci) * c2 + co]!;
    const s1 = ref.node("Conv", [nchw, ref.constant(kStem, [c1, 3, p, p])], [-1, c1, h / p, w / p], {
      strides: { ints: [p, p] },
    });
    const s2 = ref.node("Conv", [s1, ref.constant(k3, [c2, c1, 3, 3])], [-1, c2, h / p - 2, w / p - 2], {});
    ref.output(ref.transpose(s2, [0, 2, 3, 1]), "y");
    const theirs = await ort.InferenceSession.create(encodeModel(modelOf(ref)));
    const y2 = (await theirs.run({ x: new ort.Tensor("float32", image, [1, h, w, 3]) }))["y"]!.data as Float32Array;
    expect(y1.length).toBe((h / p - 2) * (w / p - 2) * c2);
    expect(maxAbsDiff(y1, y2)).toBeLessThan(1e-4);
    await ours.release();
    await theirs.release();
  });

  for (const arch of ["transformer", "mlp"] as const) {
    it(`${arch}: the uint8 pixels-in sample graph equals the tfjs reference`, async () => {
      const config = cameraConfig(arch);
      const head = buildHead(config);
      const weights = randomWeights(head, 11);
      const rng = new Rng(12);
      const stateStats = randomStats(4, rng);
      const camStats = { mean: [0.4, 0.5, 0.6], std: [0.2, 0.25, 0.3], min: [0, 0, 0], max: [1, 1, 1], count: 10 };
      const actStats = randomStats(3, rng);
      const norms = {
        obs: {
          state: padAffine(affineFor(stateStats, "mean_std", "state"), 4),
          front: affineFor(camStats, "mean_std", "front"),
        },
        action: padAffine(affineFor(actStats, "min_max", "action"), 3),
        rawActionDim: 3,
      };
      const features = [
        { name: "state", key: "observation.state", shape: [4], rawShape: [4] },
        {
          name: "front",
          key: "observation.images.front",
          shape: [IMG.height, IMG.width, 3],
          rawShape: [IMG.height, IMG.width, 3],
          kind: "image" as const,
        },
      ];
      const { model } = buildSampleModel(head, weights, features, norms, { steps: 3, solver: "euler" });
      const state = Float32Array.from({ length: BATCH * 4 }, () => rng.normal());
      const pixels = Uint8Array.from({ length: BATCH * IMG.height * IMG.width * 3 }, () => rng.int(256));
      const noise = rng.normalArray(BATCH * 4 * 3);
      const session = await ort.InferenceSession.create(encodeModel(model));
      const out = await session.run({
        [obsInputName("state")]: new ort.Tensor("float32", state, [BATCH, 4]),
        [obsInputName("front")]: new ort.Tensor("uint8", pixels, [BATCH, IMG.height, IMG.width, 3]),
        noise: new ort.Tensor("float32", noise, [BATCH, 4, 3]),
        prefix: new ort.Tensor("float32", new Float32Array(BATCH * 4 * 3), [BATCH, 4, 3]),
        prefix_len: new ort.Tensor("int64", new BigInt64Array(BATCH), [BATCH]),
      });
      await session.release();
      expect(model.graph.input.find((i) => i.name === obsInputName("front"))?.type?.tensorType?.elemType).toBe(
        DataType.UINT8,
      );

      // The reference: normalise in JS, run the same description eagerly on tfjs.
      const ops = new TfjsOps({ seed: 0, mode: "frozen", weights });
      const px = imageNorm(norms.obs.front);
      const camN = Float32Array.from(pixels, (v, i) => v * px.scale[i % 3]! + px.offset[i % 3]!);
      const ref = tf.tidy(() => {
        const obs = {
          state: tf.tensor(normalize(state, norms.obs.state), [BATCH, 4]),
          front: tf.tensor(camN, [BATCH, IMG.height, IMG.width, 3]),
        };
        return sampleChunkTfjs(head, ops, obs, tf.tensor(noise, [BATCH, 4, 3]), { steps: 3, solver: "euler" });
      });
      const expected = denormalize(ref.dataSync() as Float32Array, norms.action);
      ref.dispose();
      ops.dispose();
      expect(maxAbsDiff(out["actions"]!.data as Float32Array, expected)).toBeLessThan(1e-4);
    });
  }

  it("tape gradients through the encoder match central finite differences in float64", () => {
    const config = cameraConfig("transformer");
    const head = buildHead(config);
    const { horizon: H, actionDim: A } = config;
    const rng = new Rng(21);
    const arr = (shape: number[], f: () => number): F64 => ({
      shape,
      data: Float64Array.from({ length: featureSize(shape) }, f),
    });
    const batch: Record<string, F64> = {
      state: arr([BATCH, 4], () => rng.normal()),
      front: arr([BATCH, IMG.height, IMG.width, 3], () => rng.normal()),
      xt: arr([BATCH, H, A], () => rng.normal()),
      t: arr([BATCH, H], () => rng.uniform()),
      target: arr([BATCH, H, A], () => rng.normal()),
      isPad: { shape: [BATCH, H], data: new Float64Array(BATCH * H) },
      den: { shape: [], data: Float64Array.from([BATCH * H * A]) },
    };
    const weights = new Map(
      [...randomWeights(head, 5)].map(([k, w]) => [k, { shape: w.shape, data: Float64Array.from(w.data) }] as const),
    );
    const lossOf = <T>(ops: Parameters<typeof maskedSquaredError<T>>[0], wrap: (x: F64) => T): T => {
      const ctx = head.encode(ops, { state: wrap(batch["state"]!), front: wrap(batch["front"]!) });
      const v = head.velocity(ops, ctx, wrap(batch["xt"]!), wrap(batch["t"]!), { timeTokens: H });
      return maskedSquaredError(ops, v, wrap(batch["target"]!), wrap(batch["isPad"]!), wrap(batch["den"]!), {
        horizon: H,
      });
    };
    const tape = new Tape(new F64Ops(weights));
    const grads = tape.gradients(lossOf(tape, (x) => tape.input(x, x.shape)) as Traced<F64>);
    const evalLoss = (): number => lossOf(new F64Ops(weights), (x) => x).data[0]!;
    const { worst, checked } = finiteDifferenceCheck(weights, grads, evalLoss, rng, (n) => n.includes(".vision."));
    // stem (weight, bias, gn weight, gn bias), stage conv and down (4 each), out (2): 14 parameters.
    expect(checked).toBe(14 * 3);
    // relative error of central differences at h = 1e-6 in float64 (the heads' own check uses 1e-6;
    // the deeper encoder's second differences sit just above it)
    expect(worst).toBeLessThan(1e-5);
  });

  it("encodes to [batch, tokens, 2 * channels / tokens] keypoints in [-1, 1]", () => {
    const config = cameraConfig("mlp");
    const ops = new TfjsOps({ seed: 1, mode: "frozen" });
    const y = tf.tidy(() =>
      encodeImage(
        ops,
        "cam",
        tf.randomNormal([BATCH, IMG.height, IMG.width, 3], 0, 1, "float32", 4),
        IMG,
        config.vision,
      ),
    );
    expect(y.shape).toEqual([BATCH, 2, 8]);
    const v = y.dataSync();
    expect(Math.max(...v)).toBeLessThanOrEqual(1);
    expect(Math.min(...v)).toBeGreaterThanOrEqual(-1);
    y.dispose();
    ops.dispose();
  });
});
