import { describe, expect, it } from "vitest";
import {
  float64MultiArray,
  jointTrajectory,
  parseBool,
  parseFloat32MultiArray,
  parseJointState,
  rosDuration,
  rosSeconds,
} from "../../../bridge/ros/protocol.ts";
import { trajectoryViolations } from "../../../bridge/ros/trajectory-rules.ts";

const J = ["a", "b", "c"];

describe("ROS messages", () => {
  it("writes durations in each version's layout", () => {
    expect(rosDuration(1, 1.25)).toEqual({ secs: 1, nsecs: 250000000 });
    expect(rosDuration(2, 0.02)).toEqual({ sec: 0, nanosec: 20000000 });
    expect(rosDuration(2, 0.9999999999)).toEqual({ sec: 1, nanosec: 0 });
    expect(rosSeconds(2, { sec: 3, nanosec: 5e8 })).toBe(3.5);
    expect(rosSeconds(2, { secs: 3, nsecs: 0 })).toBeUndefined();
    expect(rosSeconds(1, { secs: 3, nsecs: 1e9 })).toBeUndefined();
  });

  it("builds trajectories the controller accepts, in both dialects", () => {
    for (const v of [1, 2] as const) {
      const msg = jointTrajectory(
        v,
        J,
        [
          [0, 1, 2],
          [0.1, 1.1, 2.1],
          [0.2, 1.2, 2.2],
        ],
        1 / 30,
      );
      expect(trajectoryViolations(msg, { joints: J, version: v })).toEqual([]);
      const pts = msg.points as { time_from_start: unknown }[];
      expect(pts.map((p) => rosSeconds(v, p.time_from_start))).toEqual([0.033333333, 0.066666667, 0.1]);
    }
    expect(() => jointTrajectory(2, J, [[0, 1]], 0.1)).toThrow("point 0 has 2 values for 3 joints");
  });

  it("flags every joint_trajectory_controller rejection rule", () => {
    const ok = jointTrajectory(
      2,
      J,
      [
        [0, 1, 2],
        [0, 1, 2],
      ],
      0.1,
    ) as {
      header: { stamp: { sec: number } };
      joint_names: string[];
      points: { positions: number[]; velocities: number[]; time_from_start: { sec: number; nanosec: number } }[];
    };
    const bad = (f: (m: typeof ok) => void): string[] => {
      const m = structuredClone(ok);
      f(m);
      return trajectoryViolations(m, { joints: J, version: 2 });
    };
    expect(bad((m) => (m.joint_names = ["a", "b"]))).toContain(
      "joint_names: missing joint 'c' (partial goals are rejected)",
    );
    expect(bad((m) => (m.joint_names = ["a", "b", "x"]))).toContain("joint_names: unknown joint 'x'");
    expect(bad((m) => (m.points = []))).toEqual(["points: empty"]);
    expect(bad((m) => (m.points[1]!.time_from_start = { sec: 0, nanosec: 100000000 }))).toEqual([
      "points[1].time_from_start: 0.1 s is not after 0.1 s",
    ]);
    expect(bad((m) => (m.points[0]!.positions = [0, 1]))).toEqual(["points[0].positions: 2 values for 3 joints"]);
    expect(bad((m) => (m.points[0]!.velocities = [0]))).toEqual(["points[0].velocities: 1 values for 3 joints"]);
    expect(bad((m) => (m.points[1]!.velocities = [0, 0.5, 0]))).toEqual([
      "points[last].velocities: non-zero velocity at the end",
    ]);
    expect(bad((m) => (m.header.stamp.sec = 5))).toEqual(["header.stamp: 5 s, expected 0 (now)"]);
    expect(bad((m) => (m.points[0]!.positions[1] = NaN))).toEqual([
      "points[0].positions[1]: not a finite number (null)",
    ]);
    expect(trajectoryViolations(ok, { joints: J, version: 1 })[0]).toBe("header.stamp: not a ROS 1 time");
  });

  it("builds forward commands with exactly one value per joint", () => {
    expect(float64MultiArray(new Float64Array([1, 2, 3]))).toEqual({
      layout: { dim: [], data_offset: 0 },
      data: [1, 2, 3],
    });
  });

  it("picks joints from a JointState by name, in any order, ignoring extra joints", () => {
    const r = parseJointState({ name: ["x", "c", "a", "b"], position: [9, 3, 1, 2] }, J);
    expect(r).toEqual({ kind: "ok", value: new Float64Array([1, 2, 3]) });
  });

  it("names a missing joint, a non-finite position and a malformed field", () => {
    expect(parseJointState({ name: ["a", "x"], position: [1, 2] }, J)).toEqual({
      kind: "error",
      error: "JointState: missing joints 'b', 'c'",
    });
    expect(parseJointState({ name: ["a", "b", "c"], position: [1, null, 3] }, J)).toEqual({
      kind: "error",
      error: "JointState.position of joint 'b': expected a finite number, got null",
    });
    expect(parseJointState({ name: ["a"], position: [1, 2] }, ["a"])).toMatchObject({
      error: "JointState.position: 2 values for 1 names",
    });
    expect(parseJointState({ name: "a", position: [1] }, ["a"])).toMatchObject({
      error: "JointState.name: expected an array of strings",
    });
    expect(parseJointState(7, ["a"])).toMatchObject({ kind: "error" });
  });

  it("parses feature arrays and e-stop flags strictly", () => {
    expect(parseFloat32MultiArray({ data: [1, 2] }, 2, "/env")).toEqual({
      kind: "ok",
      value: new Float32Array([1, 2]),
    });
    expect(parseFloat32MultiArray({ data: [1] }, 2, "/env")).toEqual({
      kind: "error",
      error: "/env.data: expected 2 values, got 1",
    });
    expect(parseFloat32MultiArray({ data: [1, null] }, 2, "/env")).toMatchObject({
      error: "/env.data[1]: expected a finite number, got null",
    });
    expect(parseBool({ data: true }, "/estop")).toEqual({ kind: "ok", value: true });
    expect(parseBool({ data: 1 }, "/estop")).toEqual({ kind: "error", error: "/estop.data: expected true or false" });
  });
});
