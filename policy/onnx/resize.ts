/**
 * In-graph resize of an image policy's cameras: `export --camera-input front=640x480` makes
 * `obs.front` take uint8 RGB `[batch, 480, 640, 3]` (the camera's native size) and resizes it inside
 * the graph to the size the head was trained at, with the filter training used: ffmpeg's `area`
 * scaling (`datasets/video/ffmpeg.ts` decodes every training frame through `scale=W:H:flags=area`).
 *
 * Area scaling is separable: each output pixel is the coverage-weighted mean of the input pixels
 * its footprint covers, so it is two constant matrices, `[hOut, hIn]` down the rows and
 * `[wOut, wIn]` along them ({@link areaMatrix}, exact for any ratio), applied by two MatMuls on the
 * NCHW float image, then rounded to the nearest integer (half to even), clipped to 0..255 and cast
 * back to uint8, the values a decoded training frame holds. The rest of the graph is unchanged.
 * Only downscaling (or an unchanged axis) is accepted: ffmpeg's area filter upscales bilinearly.
 *
 * The metadata lists the camera at its native size (`shape` = `rawShape` = `[hIn, wIn, 3]`), so a
 * runtime feeds and checks that size; `actionflow.camera_inputs` records both sizes and the filter.
 */
import { parseJson } from "../io/json.ts";
import { DataType, floatTensor, metadataOf, type ModelProto, type NodeProto, type TensorProto } from "./proto.ts";
import { FeaturesMetadataSchema, type FeatureIO } from "./schema.ts";
import { obsInputName } from "./graphs.ts";

/** The metadata key recording the resized camera inputs. */
export const CAMERA_INPUTS_METADATA = "actionflow.camera_inputs";

/** An image size in pixels. */
export interface PixelSize {
  width: number;
  height: number;
}

/** What `actionflow.camera_inputs` records per camera (model name). */
export interface CameraInputRecord {
  /** The graph input's size. */
  input: PixelSize;
  /** The size the head takes (its training size). */
  model: PixelSize;
  filter: "area";
}

/**
 * ffmpeg's area filter along one axis: the `[nOut, nIn]` row-major matrix whose row i holds the
 * share of output pixel i's footprint `[i * nIn / nOut, (i + 1) * nIn / nOut)` each input pixel
 * covers (rows sum to 1). Computed in integers scaled by nOut, so it is exact for any ratio.
 */
export function areaMatrix(nIn: number, nOut: number): Float64Array {
  if (!Number.isInteger(nIn) || !Number.isInteger(nOut) || nIn < 1 || nOut < 1)
    throw new RangeError(`areaMatrix: sizes must be positive integers, got ${nIn} -> ${nOut}`);
  const m = new Float64Array(nOut * nIn);
  for (let i = 0; i < nOut; i++) {
    // output i covers [i * nIn, (i + 1) * nIn) and input y covers [y * nOut, (y + 1) * nOut), in 1 / nOut units
    const lo = i * nIn;
    const hi = lo + nIn;
    for (let y = Math.floor(lo / nOut); y * nOut < hi && y < nIn; y++) {
      const overlap = Math.min(hi, (y + 1) * nOut) - Math.max(lo, y * nOut);
      if (overlap > 0) m[i * nIn + y] = overlap / nIn;
    }
  }
  return m;
}

/**
 * The nodes resizing uint8 `[batch, from.height, from.width, 3]` value `input` to uint8
 * `[batch, to.height, to.width, 3]` value `output` (see the module comment); every other value and
 * initializer is named under `prefix`.
 */
export function resizeNodes(
  input: string,
  output: string,
  from: PixelSize,
  to: PixelSize,
  prefix: string,
): { nodes: NodeProto[]; initializers: TensorProto[] } {
  const nodes: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  const node = (opType: string, inputs: string[], out: string, attribute: NodeProto["attribute"] = []): string => {
    nodes.push({ opType, input: inputs, output: [out], name: out, attribute });
    return out;
  };
  const perm = (p: number[]): NodeProto["attribute"] => [{ name: "perm", type: 7, ints: p }];
  let x = node("Cast", [input], `${prefix}float`, [{ name: "to", type: 2, i: DataType.FLOAT }]);
  x = node("Transpose", [x], `${prefix}nchw`, perm([0, 3, 1, 2]));
  if (from.height !== to.height) {
    initializers.push(
      floatTensor(`${prefix}rows`, Float32Array.from(areaMatrix(from.height, to.height)), [to.height, from.height]),
    );
    x = node("MatMul", [`${prefix}rows`, x], `${prefix}resized_rows`);
  }
  if (from.width !== to.width) {
    // x [.., w_in] @ A^T [w_in, w_out]
    const a = areaMatrix(from.width, to.width);
    const t = new Float32Array(from.width * to.width);
    for (let j = 0; j < to.width; j++)
      for (let x0 = 0; x0 < from.width; x0++) t[x0 * to.width + j] = a[j * from.width + x0]!;
    initializers.push(floatTensor(`${prefix}columns`, t, [from.width, to.width]));
    x = node("MatMul", [x, `${prefix}columns`], `${prefix}resized`);
  }
  x = node("Transpose", [x], `${prefix}nhwc`, perm([0, 2, 3, 1]));
  x = node("Round", [x], `${prefix}rounded`);
  initializers.push(
    floatTensor(`${prefix}0`, Float32Array.of(0), []),
    floatTensor(`${prefix}255`, Float32Array.of(255), []),
  );
  x = node("Clip", [x, `${prefix}0`, `${prefix}255`], `${prefix}clipped`);
  node("Cast", [x], output, [{ name: "to", type: 2, i: DataType.UINT8 }]);
  return { nodes, initializers };
}

/**
 * A copy of the sample graph `model` whose cameras named in `sizes` (model names) take their native
 * size and are resized inside the graph (see the module comment). Throws naming the camera when it
 * is not one of the graph's, or the size is smaller than the head's.
 */
export function resizeCameraInputs(model: ModelProto, sizes: Readonly<Record<string, PixelSize>>): ModelProto {
  const meta = metadataOf(model);
  const features = parseJson(
    meta["actionflow.features"] ?? "",
    FeaturesMetadataSchema,
    "sample graph: metadata 'actionflow.features'",
  );
  const cameras = features.filter((f) => f.kind === "image");
  const records: Record<string, CameraInputRecord> = meta[CAMERA_INPUTS_METADATA]
    ? (JSON.parse(meta[CAMERA_INPUTS_METADATA]) as Record<string, CameraInputRecord>)
    : {};
  const out: FeatureIO[] = features.map((f) => ({ ...f }));
  let graph = { ...model.graph };
  for (const [name, size] of Object.entries(sizes)) {
    const at = out.findIndex((f) => f.name === name && f.kind === "image");
    const f = out[at];
    if (!f)
      throw new Error(
        `--camera-input ${name}: the policy has no camera '${name}' (cameras: ${cameras.map((c) => c.name).join(", ") || "none"})`,
      );
    const [h, w] = f.rawShape as [number, number, number];
    if (size.width < w || size.height < h)
      throw new Error(
        `--camera-input ${name}=${size.width}x${size.height}: smaller than the ${w}x${h} the policy takes; the area filter only downscales (send ${w}x${h} or larger)`,
      );
    if (size.width === w && size.height === h) continue;
    const inputName = obsInputName(name);
    const index = graph.input.findIndex((i) => i.name === inputName);
    if (index < 0) throw new Error(`sample graph: no input '${inputName}' for camera '${name}'`);
    let prefix = `resize.${name}/`;
    for (let k = 2; graph.node.some((n) => n.output.some((o) => o.startsWith(prefix))); k++)
      prefix = `resize${k}.${name}/`;
    const resized = `${prefix}out`;
    const built = resizeNodes(inputName, resized, size, { width: w, height: h }, prefix);
    const input = [...graph.input];
    input[index] = {
      name: inputName,
      type: {
        tensorType: {
          elemType: DataType.UINT8,
          shape: { dim: [{ dimParam: "batch" }, { dimValue: size.height }, { dimValue: size.width }, { dimValue: 3 }] },
        },
      },
    };
    graph = {
      ...graph,
      node: [
        ...built.nodes,
        ...graph.node.map((n) => ({ ...n, input: n.input.map((x) => (x === inputName ? resized : x)) })),
      ],
      initializer: [...built.initializers, ...graph.initializer],
      input,
    };
    out[at] = { ...f, shape: [size.height, size.width, 3], rawShape: [size.height, size.width, 3] };
    records[name] = { input: { ...size }, model: { width: w, height: h }, filter: "area" };
  }
  const metadataProps = (model.metadataProps ?? [])
    .map((e) => (e.key === "actionflow.features" ? { key: e.key, value: JSON.stringify(out) } : e))
    .filter((e) => e.key !== CAMERA_INPUTS_METADATA);
  if (Object.keys(records).length > 0)
    metadataProps.push({ key: CAMERA_INPUTS_METADATA, value: JSON.stringify(records) });
  return { ...model, graph, metadataProps };
}
