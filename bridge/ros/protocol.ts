/**
 * The ROS messages the bridge exchanges through rosbridge, for ROS 1 and ROS 2: builders for what
 * we publish and parsers (from `unknown`) for what we receive. Type names use the 2-part
 * `pkg/Type` form both ROS versions accept; time is `{secs, nsecs}` on ROS 1 and `{sec, nanosec}`
 * on ROS 2, and a ROS 1 Header carries `seq`.
 */

/** ROS 1 or ROS 2. */
export type RosVersion = 1 | 2;

/** Message type names (2-part form). */
export const MSG = {
  jointState: "sensor_msgs/JointState",
  jointTrajectory: "trajectory_msgs/JointTrajectory",
  float64MultiArray: "std_msgs/Float64MultiArray",
  float32MultiArray: "std_msgs/Float32MultiArray",
  bool: "std_msgs/Bool",
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
