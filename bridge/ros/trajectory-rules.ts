/**
 * joint_trajectory_controller's rejection rules, as a validator for every
 * `trajectory_msgs/JointTrajectory` the bridge sends (tests run it on every recorded message).
 *
 * The controller rejects a message when: `joint_names` is not the full joint set or names an
 * unknown joint; there are no points; `time_from_start` is not strictly increasing; a field's length
 * differs from `joint_names`; the last point has a non-zero velocity; the stamp is non-zero and the
 * trajectory ends in the past. We are stricter on two points: the stamp must be 0 (now) and every
 * number must be finite.
 */
import type { RosVersion } from "./protocol.ts";
import { rosSeconds } from "./protocol.ts";

/** Options of {@link trajectoryViolations}. */
export interface TrajectoryRuleOptions {
  /** The controller's joints (any order). */
  joints: readonly string[];
  version: RosVersion;
}

/** Every rule the message breaks, as readable strings; empty when the controller would accept it. */
export function trajectoryViolations(msg: unknown, opts: TrajectoryRuleOptions): string[] {
  const v: string[] = [];
  if (typeof msg !== "object" || msg === null) return ["not an object"];
  const m = msg as Record<string, unknown>;
  const header = m.header as Record<string, unknown> | undefined;
  const stamp = rosSeconds(opts.version, header?.stamp);
  if (stamp === undefined) v.push(`header.stamp: not a ROS ${opts.version} time`);
  else if (stamp !== 0) v.push(`header.stamp: ${stamp} s, expected 0 (now)`);
  const names = m.joint_names;
  if (!Array.isArray(names) || !names.every((n) => typeof n === "string")) {
    v.push("joint_names: expected an array of strings");
    return v;
  }
  const known = new Set(opts.joints);
  const seen = new Set<string>();
  for (const n of names as string[]) {
    if (!known.has(n)) v.push(`joint_names: unknown joint '${n}'`);
    if (seen.has(n)) v.push(`joint_names: duplicate joint '${n}'`);
    seen.add(n);
  }
  for (const j of opts.joints)
    if (!seen.has(j)) v.push(`joint_names: missing joint '${j}' (partial goals are rejected)`);
  const points = m.points;
  if (!Array.isArray(points) || points.length === 0) {
    v.push("points: empty");
    return v;
  }
  let prevT = -Infinity;
  points.forEach((p: unknown, k: number) => {
    if (typeof p !== "object" || p === null) {
      v.push(`points[${k}]: not an object`);
      return;
    }
    const pt = p as Record<string, unknown>;
    for (const field of ["positions", "velocities", "accelerations", "effort"]) {
      const a = pt[field];
      if (a === undefined) {
        if (field === "positions") v.push(`points[${k}].positions: missing`);
        continue;
      }
      if (!Array.isArray(a)) {
        v.push(`points[${k}].${field}: not an array`);
        continue;
      }
      if (field === "positions" ? a.length !== names.length : a.length !== 0 && a.length !== names.length)
        v.push(`points[${k}].${field}: ${a.length} values for ${names.length} joints`);
      a.forEach((x: unknown, i: number) => {
        if (typeof x !== "number" || !Number.isFinite(x))
          v.push(`points[${k}].${field}[${i}]: not a finite number (${JSON.stringify(x)})`);
      });
    }
    const t = rosSeconds(opts.version, pt.time_from_start);
    if (t === undefined) v.push(`points[${k}].time_from_start: not a ROS ${opts.version} duration`);
    else {
      if (!(t > prevT)) v.push(`points[${k}].time_from_start: ${t} s is not after ${prevT} s`);
      prevT = t;
    }
  });
  const last = points[points.length - 1] as Record<string, unknown> | null;
  const vel = last && typeof last === "object" ? last.velocities : undefined;
  if (Array.isArray(vel) && vel.some((x) => x !== 0)) v.push("points[last].velocities: non-zero velocity at the end");
  return v;
}
