import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { effectiveLimits, loadRobotProfile, parseRobotProfile, profileWarnings } from "../../bridge/profile.ts";
import { ARM_JOINTS, ARM_RANGES } from "../../sim/scene/arm.ts";

const base = (): Record<string, unknown> => ({
  name: "t",
  joints: ["a", "b"],
  ros: { version: 2, joint_states: "/joint_states", command: "/c/joint_trajectory" },
  command_interface: "trajectory",
  control_rate_hz: 50,
  joint_limits: { a: { has_velocity_limits: true, max_velocity: 1 } },
  watchdog_timeout_s: 0.1,
});

describe("robot profile", () => {
  it("loads the three example profiles", async () => {
    for (const f of ["sim-arm", "ros2-forward-arm", "ros2-trajectory-arm"]) {
      const p = await loadRobotProfile(`examples/robots/${f}.json`);
      expect(p.joints.length).toBe(6);
    }
    const fwd = await loadRobotProfile("examples/robots/ros2-forward-arm.json");
    expect(fwd.command_interface).toBe("forward");
    expect(fwd.ros.command).toBe("/forward_position_controller/commands");
  });

  it("the sim arm's profile matches the simulator's joints and ranges", async () => {
    const p = await loadRobotProfile("examples/robots/sim-arm.json");
    expect(p.joints).toEqual([...ARM_JOINTS]);
    for (const j of ARM_JOINTS) {
      expect([p.joint_limits[j]?.min_position, p.joint_limits[j]?.max_position]).toEqual(ARM_RANGES[j]);
    }
  });

  it("applies defaults", () => {
    const p = parseRobotProfile(base(), "robot.json");
    expect(p.ros.diagnostics).toBe("/diagnostics");
    expect(p.ramp_s).toBe(0.5);
    expect(p.state_feature).toBe("observation.state");
    expect(p.features).toEqual([]);
  });

  it("names the file and the field in every error", () => {
    const bad = base();
    bad.joint_limits = { a: { has_velocity_limits: true, max_velocity: -2 } };
    expect(() => parseRobotProfile(bad, "robot.json")).toThrow(
      "robot.json: joint_limits.a.max_velocity: expected a positive number",
    );
    const rate = { ...base(), control_rate_hz: 1000 };
    expect(() => parseRobotProfile(rate, "robot.json")).toThrow(
      "robot.json: control_rate_hz: expected a number of Hz in [30, 500]",
    );
    const ver = { ...base(), ros: { version: 3, joint_states: "/js", command: "/c" } };
    expect(() => parseRobotProfile(ver, "r.json")).toThrow("r.json: ros.version: expected 1 or 2");
    const iface = { ...base(), command_interface: "effort" };
    expect(() => parseRobotProfile(iface, "r.json")).toThrow(
      'r.json: command_interface: expected "trajectory" or "forward"',
    );
    const missing = base();
    delete missing.watchdog_timeout_s;
    expect(() => parseRobotProfile(missing, "r.json")).toThrow(
      "r.json: watchdog_timeout_s: expected a positive number",
    );
  });

  it("reads cameras: transport raw by default or compressed, max_age_s, and names a bad field", () => {
    const cam = { topic: "/cam/front/compressed", feature: "observation.images.front", width: 64, height: 48 };
    const raw = parseRobotProfile({ ...base(), cameras: [cam] }, "robot.json");
    expect(raw.cameras).toEqual([{ ...cam, transport: "raw" }]);
    const c = parseRobotProfile(
      { ...base(), cameras: [{ ...cam, transport: "compressed", max_age_s: 0.1 }] },
      "robot.json",
    );
    expect([c.cameras[0]!.transport, c.cameras[0]!.max_age_s]).toEqual(["compressed", 0.1]);
    expect(() => parseRobotProfile({ ...base(), cameras: [{ ...cam, transport: "theora" }] }, "robot.json")).toThrow(
      'robot.json: cameras.0.transport: expected "raw" or "compressed"',
    );
    expect(() => parseRobotProfile({ ...base(), cameras: [{ ...cam, max_age_s: 0 }] }, "robot.json")).toThrow(
      "robot.json: cameras.0.max_age_s: expected a positive number",
    );
    expect(() => parseRobotProfile({ ...base(), cameras: [cam, { ...cam, topic: "/other" }] }, "robot.json")).toThrow(
      "robot.json: cameras.1.feature: duplicate feature 'observation.images.front'",
    );
  });

  it("checks cross-field rules", () => {
    const unknownJoint = { ...base(), joint_limits: { z: {} } };
    expect(() => parseRobotProfile(unknownJoint, "r.json")).toThrow(
      "r.json: joint_limits.z: 'z' is not in joints (a, b)",
    );
    const flagWithoutValue = { ...base(), joint_limits: { a: { has_position_limits: true, min_position: -1 } } };
    expect(() => parseRobotProfile(flagWithoutValue, "r.json")).toThrow(
      "r.json: joint_limits.a.max_position: required when its has_* flag is true",
    );
    const inverted = {
      ...base(),
      joint_limits: { a: { has_position_limits: true, min_position: 1, max_position: -1 } },
    };
    expect(() => parseRobotProfile(inverted, "r.json")).toThrow(
      "r.json: joint_limits.a.max_position: expected max_position > min_position",
    );
    const dup = { ...base(), joints: ["a", "a"] };
    expect(() => parseRobotProfile(dup, "r.json")).toThrow("r.json: joints.1: duplicate joint 'a'");
    const typo = { ...base(), joint_limits: { a: { max_velocty: 1 } } };
    expect(() => parseRobotProfile(typo, "r.json")).toThrow("r.json: joint_limits.a: unknown field(s) max_velocty");
    const mrt = { ...base(), max_relative_target: { q: 0.1 } };
    expect(() => parseRobotProfile(mrt, "r.json")).toThrow("r.json: max_relative_target.q: 'q' is not in joints");
  });

  it("ignores a limit value whose has_* flag is not set, as ros2_control does", () => {
    const p = parseRobotProfile(
      {
        ...base(),
        joint_limits: {
          a: { min_position: -1, max_position: 1, has_velocity_limits: true, max_velocity: 2, max_acceleration: 9 },
          b: {
            has_position_limits: true,
            min_position: -0.5,
            max_position: 0.5,
            has_acceleration_limits: false,
            max_acceleration: 3,
          },
        },
        max_relative_target: 0.1,
      },
      "r.json",
    );
    expect(effectiveLimits(p)).toEqual([
      { name: "a", maxVelocity: 2, maxRelativeTarget: 0.1 },
      { name: "b", minPosition: -0.5, maxPosition: 0.5, maxRelativeTarget: 0.1 },
    ]);
  });

  it("enforces max_jerk only with has_jerk_limits, and warns at load that an effort limit is not enforced", async () => {
    const { mkdtempSync, writeFileSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const f = join(mkdtempSync(join(tmpdir(), "profile-")), "robot.json");
    writeFileSync(
      f,
      JSON.stringify({
        ...base(),
        joint_limits: {
          a: { has_jerk_limits: true, max_jerk: 50, has_effort_limits: true, max_effort: 20 },
          b: { max_jerk: 7, max_effort: 3 },
        },
      }),
    );
    const warnings: string[] = [];
    const p = await loadRobotProfile(f, { warn: (m) => warnings.push(m) });
    expect(effectiveLimits(p)).toEqual([{ name: "a", maxJerk: 50 }, { name: "b" }]);
    // only joint a sets has_effort_limits
    expect(warnings).toEqual([
      `${f}: joint_limits.a.has_effort_limits: max_effort 20 is not enforced: the bridge sends position commands and cannot limit effort (set it in the robot's controller or drive)`,
    ]);
    expect(profileWarnings(parseRobotProfile(base(), "r.json"), "r.json")).toEqual([]);
  });

  it("reports invalid JSON with the path", async () => {
    const { mkdtempSync, writeFileSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "profile-"));
    const f = join(dir, "robot.json");
    writeFileSync(f, "{ nope");
    await expect(loadRobotProfile(f)).rejects.toThrow(`${f}: not valid JSON`);
    expect(readFileSync(f, "utf8")).toBe("{ nope");
  });
});
