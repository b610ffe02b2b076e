/**
 * The ROS messages the bridge exchanges through rosbridge, for ROS 1 and ROS 2: builders for what
 * we publish and parsers (from `unknown`) for what we receive. Type names use the 2-part
 * `pkg/Type` form both ROS versions accept; time is `{secs, nsecs}` on ROS 1 and `{sec, nanosec}`
 * on ROS 2, and a ROS 1 Header carries `seq`.
 */
import jpeg from "jpeg-js";
import { PNG } from "pngjs";

/** ROS 1 or ROS 2. */
export type RosVersion = 1 | 2;

/** Message type names (2-part form). */
export const MSG = {
  jointState: "sensor_msgs/JointState",
  jointTrajectory: "trajectory_msgs/JointTrajectory",
  float64MultiArray: "std_msgs/Float64MultiArray",
  float32MultiArray: "std_msgs/Float32MultiArray",
  bool: "std_msgs/Bool",
  image: "sensor_msgs/Image",
  compressedImage: "sensor_msgs/CompressedImage",
  string: "std_msgs/String",
  diagnosticArray: "diagnostic_msgs/DiagnosticArray",
} as const;

/** A ROS time or duration in the version's layout. */
export type RosTime = { secs: number; nsecs: number } | { sec: number; nanosec: number };

/** The result of parsing a received message. */
export type Parsed<T> = { kind: "ok"; value: T } | { kind: "error"; error: string };

/** A duration of `seconds` (>= 0) in the version's layout, nanoseconds rounded. */
export function rosDuration(version: RosVersion, seconds: number): RosTime {
  if (!(seconds >= 0) || !Number.isFinite(seconds))
    throw new RangeError(`rosDuration: expected seconds >= 0, got ${seconds}`);
  let s = Math.floor(seconds);
  let ns = Math.round((seconds - s) * 1e9);
  if (ns >= 1e9) {
    s += 1;
    ns -= 1e9;
  }
  return version === 1 ? { secs: s, nsecs: ns } : { sec: s, nanosec: ns };
}

/** Seconds of a ROS time/duration object in the version's layout, or undefined when malformed. */
export function rosSeconds(version: RosVersion, t: unknown): number | undefined {
  if (typeof t !== "object" || t === null) return undefined;
  const o = t as Record<string, unknown>;
  const [sk, nk] = version === 1 ? ["secs", "nsecs"] : ["sec", "nanosec"];
  const keys = Object.keys(o);
  if (keys.some((k) => k !== sk && k !== nk)) return undefined;
  const s = o[sk];
  const n = o[nk];
  if (!Number.isInteger(s) || !Number.isInteger(n) || (n as number) < 0 || (n as number) >= 1e9) return undefined;
  return (s as number) + (n as number) / 1e9;
}

/** A Header with stamp 0 ("now" for a trajectory controller). */
export function zeroHeader(version: RosVersion): Record<string, unknown> {
  return version === 1
    ? { seq: 0, stamp: { secs: 0, nsecs: 0 }, frame_id: "" }
    : { stamp: { sec: 0, nanosec: 0 }, frame_id: "" };
}

/**
 * A `trajectory_msgs/JointTrajectory` over the full joint set: point k holds `points[k]` (positions
 * `[joints]`, radians/metres) at `time_from_start = (k + 1) * dtS`, stamp 0 (now), positions only
 * (the controller interpolates linearly).
 */
export function jointTrajectory(
  version: RosVersion,
  joints: readonly string[],
  points: readonly ArrayLike<number>[],
  dtS: number,
): Record<string, unknown> {
  if (points.length === 0) throw new RangeError("jointTrajectory: no points");
  return {
    header: zeroHeader(version),
    joint_names: [...joints],
    points: points.map((p, k) => {
      if (p.length !== joints.length)
        throw new RangeError(`jointTrajectory: point ${k} has ${p.length} values for ${joints.length} joints`);
      return {
        positions: Array.from(p),
        velocities: [],
        accelerations: [],
        effort: [],
        time_from_start: rosDuration(version, (k + 1) * dtS),
      };
    }),
  };
}

/** A `std_msgs/Float64MultiArray` with exactly one value per joint (a forward controller's command). */
export function float64MultiArray(values: ArrayLike<number>): Record<string, unknown> {
  return { layout: { dim: [], data_offset: 0 }, data: Array.from(values) };
}

/** A `std_msgs/Float32MultiArray` (a feature topic's message). */
export function float32MultiArray(values: ArrayLike<number>): Record<string, unknown> {
  return { layout: { dim: [], data_offset: 0 }, data: Array.from(values) };
}

/** A `diagnostic_msgs/DiagnosticArray` with one status. */
export function diagnosticArray(
  version: RosVersion,
  status: {
    level: 0 | 1 | 2 | 3;
    name: string;
    message: string;
    hardwareId: string;
    values: Record<string, string | number | boolean>;
  },
): Record<string, unknown> {
  return {
    header: zeroHeader(version),
    status: [
      {
        level: status.level,
        name: status.name,
        message: status.message,
        hardware_id: status.hardwareId,
        values: Object.entries(status.values).map(([key, value]) => ({ key, value: String(value) })),
      },
    ],
  };
}

/**
 * Parses a `sensor_msgs/JointState` and picks `joints` by name (any order, extra joints ignored).
 * Errors name the missing joint, a non-finite position, or the malformed field.
 */
export function parseJointState(msg: unknown, joints: readonly string[]): Parsed<Float64Array> {
  if (typeof msg !== "object" || msg === null) return { kind: "error", error: "JointState: not an object" };
  const m = msg as Record<string, unknown>;
  const names = m.name;
  const pos = m.position;
  if (!Array.isArray(names) || !names.every((n) => typeof n === "string"))
    return { kind: "error", error: "JointState.name: expected an array of strings" };
  if (!Array.isArray(pos)) return { kind: "error", error: "JointState.position: expected an array of numbers" };
  if (pos.length !== names.length)
    return { kind: "error", error: `JointState.position: ${pos.length} values for ${names.length} names` };
  const index = new Map<string, number>();
  names.forEach((n, i) => index.set(n as string, i));
  const out = new Float64Array(joints.length);
  const missing: string[] = [];
  for (let j = 0; j < joints.length; j++) {
    const name = joints[j] as string;
    const i = index.get(name);
    if (i === undefined) {
      missing.push(name);
      continue;
    }
    const v = pos[i] as unknown;
    if (typeof v !== "number" || !Number.isFinite(v))
      return {
        kind: "error",
        error: `JointState.position of joint '${name}': expected a finite number, got ${JSON.stringify(v)}`,
      };
    out[j] = v;
  }
  if (missing.length > 0)
    return {
      kind: "error",
      error: `JointState: missing joint${missing.length > 1 ? "s" : ""} ${missing.map((n) => `'${n}'`).join(", ")}`,
    };
  return { kind: "ok", value: out };
}

/** Parses a `std_msgs/Float32MultiArray` of exactly `size` finite values. */
export function parseFloat32MultiArray(msg: unknown, size: number, what: string): Parsed<Float32Array> {
  if (typeof msg !== "object" || msg === null) return { kind: "error", error: `${what}: not an object` };
  const data = (msg as Record<string, unknown>).data;
  if (!Array.isArray(data)) return { kind: "error", error: `${what}.data: expected an array of numbers` };
  if (data.length !== size)
    return { kind: "error", error: `${what}.data: expected ${size} values, got ${data.length}` };
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    const v = data[i] as unknown;
    if (typeof v !== "number" || !Number.isFinite(v))
      return { kind: "error", error: `${what}.data[${i}]: expected a finite number, got ${JSON.stringify(v)}` };
    out[i] = v;
  }
  return { kind: "ok", value: out };
}

/**
 * Parses a joint command as a controller receives it: a `trajectory_msgs/JointTrajectory` (joints
 * picked by name into `joints` order; every joint needed) or a `std_msgs/Float64MultiArray` of one
 * value per joint. Returns the points and the spacing of the trajectory's points (its first point's
 * `time_from_start`, or `defaultDtS`).
 */
export function parseJointCommand(
  msg: unknown,
  joints: readonly string[],
  iface: "trajectory" | "forward",
  defaultDtS: number,
): Parsed<{ points: Float64Array[]; dtS: number }> {
  if (typeof msg !== "object" || msg === null) return { kind: "error", error: "command: not an object" };
  const m = msg as Record<string, unknown>;
  const finiteArray = (v: unknown, n: number, what: string): Float64Array | string => {
    if (!Array.isArray(v) || v.length !== n)
      return `${what}: expected ${n} values, got ${Array.isArray(v) ? v.length : typeof v}`;
    const out = Float64Array.from(v as number[]);
    return out.every(Number.isFinite) && (v as unknown[]).every((x) => typeof x === "number")
      ? out
      : `${what}: expected finite numbers`;
  };
  if (iface === "forward") {
    const r = finiteArray(m.data, joints.length, "Float64MultiArray.data");
    return typeof r === "string"
      ? { kind: "error", error: r }
      : { kind: "ok", value: { points: [r], dtS: defaultDtS } };
  }
  const names = m.joint_names;
  const pts = m.points;
  if (!Array.isArray(names) || !names.every((n) => typeof n === "string"))
    return { kind: "error", error: "JointTrajectory.joint_names: expected an array of strings" };
  if (!Array.isArray(pts) || pts.length === 0)
    return { kind: "error", error: "JointTrajectory.points: expected at least one point" };
  const index = joints.map((j) => (names as string[]).indexOf(j));
  const missing = joints.filter((_, i) => index[i] === -1);
  if (missing.length > 0) return { kind: "error", error: `JointTrajectory: missing joint(s) ${missing.join(", ")}` };
  const points: Float64Array[] = [];
  for (const [k, p] of (pts as unknown[]).entries()) {
    const r = finiteArray(
      (p as Record<string, unknown> | null)?.positions,
      names.length,
      `JointTrajectory.points[${k}].positions`,
    );
    if (typeof r === "string") return { kind: "error", error: r };
    points.push(Float64Array.from(index, (i) => r[i] as number));
  }
  const first =
    rosSeconds(2, (pts[0] as Record<string, unknown>).time_from_start) ??
    rosSeconds(1, (pts[0] as Record<string, unknown>).time_from_start);
  return { kind: "ok", value: { points, dtS: first !== undefined && first > 0 ? first : defaultDtS } };
}

/** Parses a `std_msgs/Bool`. */
export function parseBool(msg: unknown, what: string): Parsed<boolean> {
  const d = typeof msg === "object" && msg !== null ? (msg as Record<string, unknown>).data : undefined;
  if (typeof d !== "boolean") return { kind: "error", error: `${what}.data: expected true or false` };
  return { kind: "ok", value: d };
}

/** An RGB image, uint8 `[height, width, 3]`. */
export interface RgbImage {
  width: number;
  height: number;
  rgb: Uint8Array;
}

/**
 * A `sensor_msgs/Image` (`rgb8`) of uint8 RGB `[height, width, 3]`, its `data` base64-encoded as
 * rosbridge's JSON encoding carries `uint8[]`.
 */
export function sensorImage(version: RosVersion, img: RgbImage): Record<string, unknown> {
  if (img.rgb.length !== img.width * img.height * 3)
    throw new RangeError(`sensorImage: ${img.rgb.length} bytes for ${img.width}x${img.height} RGB`);
  return {
    header: zeroHeader(version),
    height: img.height,
    width: img.width,
    encoding: "rgb8",
    is_bigendian: 0,
    step: img.width * 3,
    data: Buffer.from(img.rgb.buffer, img.rgb.byteOffset, img.rgb.byteLength).toString("base64"),
  };
}

const IMAGE_CHANNELS: Record<string, { n: number; order: [number, number, number] }> = {
  rgb8: { n: 3, order: [0, 1, 2] },
  bgr8: { n: 3, order: [2, 1, 0] },
  rgba8: { n: 4, order: [0, 1, 2] },
  bgra8: { n: 4, order: [2, 1, 0] },
  mono8: { n: 1, order: [0, 0, 0] },
};

/**
 * Parses a `sensor_msgs/Image` (`data` as rosbridge's base64 string or a list of bytes) into RGB.
 * Errors name the field: an encoding other than rgb8, bgr8, rgba8, bgra8 or mono8, a step shorter
 * than a row, or too few bytes.
 */
export function parseImage(msg: unknown, what: string): Parsed<RgbImage> {
  if (typeof msg !== "object" || msg === null) return { kind: "error", error: `${what}: Image: not an object` };
  const m = msg as Record<string, unknown>;
  const width = m.width;
  const height = m.height;
  const step = m.step;
  if (!Number.isInteger(width) || !Number.isInteger(height) || (width as number) <= 0 || (height as number) <= 0)
    return { kind: "error", error: `${what}: Image: width and height must be positive integers` };
  const enc = IMAGE_CHANNELS[String(m.encoding)];
  if (!enc)
    return {
      kind: "error",
      error: `${what}: Image: encoding '${String(m.encoding)}' is not one of ${Object.keys(IMAGE_CHANNELS).join(", ")}`,
    };
  const w = width as number;
  const h = height as number;
  if (!Number.isInteger(step) || (step as number) < w * enc.n)
    return { kind: "error", error: `${what}: Image: step ${String(step)} is shorter than a row (${w * enc.n} bytes)` };
  let data: Uint8Array;
  if (typeof m.data === "string") data = new Uint8Array(Buffer.from(m.data, "base64"));
  else if (Array.isArray(m.data)) data = Uint8Array.from(m.data as number[]);
  else return { kind: "error", error: `${what}: Image: 'data' is neither a base64 string nor a byte list` };
  const s = step as number;
  if (data.length < s * (h - 1) + w * enc.n)
    return {
      kind: "error",
      error: `${what}: Image: ${data.length} bytes of data, ${h} rows of step ${s} need ${s * h}`,
    };
  const rgb = new Uint8Array(w * h * 3);
  const [r, g, b] = enc.order;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = y * s + x * enc.n;
      const o = (y * w + x) * 3;
      rgb[o] = data[i + r]!;
      rgb[o + 1] = data[i + g]!;
      rgb[o + 2] = data[i + b]!;
    }
  return { kind: "ok", value: { width: w, height: h, rgb } };
}

/** The compressed formats of a `sensor_msgs/CompressedImage` read and written here. */
export type CompressedFormat = "jpeg" | "png";

/**
 * A `sensor_msgs/CompressedImage` of `img` (uint8 RGB) as `format`, its `data` base64-encoded as
 * rosbridge's JSON encoding carries `uint8[]` (JPEG at `quality` 1..100, default 90).
 */
export function compressedImage(
  version: RosVersion,
  img: RgbImage,
  format: CompressedFormat,
  quality = 90,
): Record<string, unknown> {
  if (img.rgb.length !== img.width * img.height * 3)
    throw new RangeError(`compressedImage: ${img.rgb.length} bytes for ${img.width}x${img.height} RGB`);
  const rgba = new Uint8Array(img.width * img.height * 4);
  for (let i = 0, j = 0; i < img.rgb.length; i += 3, j += 4) {
    rgba[j] = img.rgb[i]!;
    rgba[j + 1] = img.rgb[i + 1]!;
    rgba[j + 2] = img.rgb[i + 2]!;
    rgba[j + 3] = 255;
  }
  let bytes: Buffer;
  if (format === "jpeg") bytes = jpeg.encode({ width: img.width, height: img.height, data: rgba }, quality).data;
  else {
    const png = new PNG({ width: img.width, height: img.height, colorType: 2, inputColorType: 6 });
    png.data = Buffer.from(rgba.buffer, rgba.byteOffset, rgba.byteLength);
    bytes = PNG.sync.write(png, { colorType: 2, inputColorType: 6 });
  }
  return { header: zeroHeader(version), format, data: bytes.toString("base64") };
}

/** Largest compressed image decoded, megapixels (a 4K frame is 8.3). */
const MAX_COMPRESSED_MP = 16;

/**
 * Parses a `sensor_msgs/CompressedImage` (`data` as rosbridge's base64 string or a list of bytes)
 * into RGB. `format` is `jpeg` or `png`, or image_transport's `<encoding>; <jpeg|png> compressed
 * <encoding>` form; the bytes must be what it says (checked by their signature). A grey image
 * becomes three equal channels; PNG alpha is dropped. Errors name the field.
 */
export function parseCompressedImage(msg: unknown, what: string): Parsed<RgbImage> {
  if (typeof msg !== "object" || msg === null)
    return { kind: "error", error: `${what}: CompressedImage: not an object` };
  const m = msg as Record<string, unknown>;
  const format = typeof m.format === "string" ? m.format.toLowerCase() : "";
  const kind: CompressedFormat | undefined = /\bpng\b/.test(format)
    ? "png"
    : /\b(jpeg|jpg)\b/.test(format)
      ? "jpeg"
      : undefined;
  if (!kind)
    return {
      kind: "error",
      error: `${what}: CompressedImage: format ${JSON.stringify(m.format)} is neither jpeg nor png`,
    };
  let data: Uint8Array;
  if (typeof m.data === "string") data = new Uint8Array(Buffer.from(m.data, "base64"));
  else if (Array.isArray(m.data)) data = Uint8Array.from(m.data as number[]);
  else return { kind: "error", error: `${what}: CompressedImage: 'data' is neither a base64 string nor a byte list` };
  const isJpeg = data.length > 3 && data[0] === 0xff && data[1] === 0xd8 && data[2] === 0xff;
  const isPng = data.length > 8 && data[0] === 0x89 && data[1] === 0x50 && data[2] === 0x4e && data[3] === 0x47;
  if ((kind === "jpeg" && !isJpeg) || (kind === "png" && !isPng))
    return {
      kind: "error",
      error: `${what}: CompressedImage: format '${String(m.format)}' but the ${data.length} data bytes are ${isJpeg ? "a JPEG" : isPng ? "a PNG" : "neither a JPEG nor a PNG"}`,
    };
  try {
    if (kind === "jpeg") {
      const d = jpeg.decode(data, {
        useTArray: true,
        formatAsRGBA: false,
        maxResolutionInMP: MAX_COMPRESSED_MP,
        maxMemoryUsageInMB: 256,
      });
      const n = d.width * d.height;
      // jpeg-js gives RGB for colour and grey JPEGs alike when formatAsRGBA is false
      if (d.data.length !== n * 3)
        return {
          kind: "error",
          error: `${what}: CompressedImage: JPEG decoded to ${d.data.length} bytes for ${d.width}x${d.height}`,
        };
      return { kind: "ok", value: { width: d.width, height: d.height, rgb: d.data } };
    }
    const png = PNG.sync.read(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    if (png.width * png.height > MAX_COMPRESSED_MP * 1e6)
      return {
        kind: "error",
        error: `${what}: CompressedImage: PNG of ${png.width}x${png.height} is over ${MAX_COMPRESSED_MP} MP`,
      };
    const rgb = new Uint8Array(png.width * png.height * 3);
    for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) {
      rgb[j] = png.data[i]!;
      rgb[j + 1] = png.data[i + 1]!;
      rgb[j + 2] = png.data[i + 2]!;
    }
    return { kind: "ok", value: { width: png.width, height: png.height, rgb } };
  } catch (err) {
    return {
      kind: "error",
      error: `${what}: CompressedImage: cannot decode the ${kind.toUpperCase()}: ${(err as Error).message}`,
    };
  }
}

/** Parses a camera message as the profile's `transport` says: `sensor_msgs/Image` (raw) or `CompressedImage`. */
export function parseCameraMessage(msg: unknown, transport: "raw" | "compressed", what: string): Parsed<RgbImage> {
  return transport === "compressed" ? parseCompressedImage(msg, what) : parseImage(msg, what);
}

/** `img` resized to `width` x `height` (box average when shrinking, nearest pixel when growing). */
export function resizeRgb(img: RgbImage, width: number, height: number): Uint8Array {
  if (img.width === width && img.height === height) return img.rgb;
  const out = new Uint8Array(width * height * 3);
  const sx = img.width / width;
  const sy = img.height / height;
  for (let y = 0; y < height; y++) {
    const y0 = Math.floor(y * sy);
    const y1 = Math.max(y0 + 1, Math.floor((y + 1) * sy));
    for (let x = 0; x < width; x++) {
      const x0 = Math.floor(x * sx);
      const x1 = Math.max(x0 + 1, Math.floor((x + 1) * sx));
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let yy = y0; yy < y1; yy++)
          for (let xx = x0; xx < x1; xx++) sum += img.rgb[(yy * img.width + xx) * 3 + c]!;
        out[(y * width + x) * 3 + c] = Math.round(sum / ((y1 - y0) * (x1 - x0)));
      }
    }
  }
  return out;
}
