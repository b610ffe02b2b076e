/**
 * The built-in table-top arm: 5 revolute joints and a parallel gripper, sized and limited like the
 * SO-101 (LeRobot's low-cost arm), MuJoCo primitives only, position actuators.
 *
 * Frame: the table top is the plane z = 0, the arm's base sits at the origin, +x points forward.
 * Joint zeros follow SO-101's "middle of the range" calibration: at zero the upper arm is
 * vertical, the forearm points forward (90° at the elbow) and the wrist continues the forearm.
 * Pitch joints turn about +y, so a positive angle tips the next link towards +x/-z.
 */
import type { RobotScene } from "./robot.ts";
import { injectWorldbody } from "./robot.ts";

/** Link lengths (metres), from the SO-101's kinematics. */
export const ARM_LINKS = {
  /** Table to the shoulder_lift axis. */
  shoulderHeight: 0.11,
  /** shoulder_lift axis to elbow_flex axis. */
  upperArm: 0.116,
  /** elbow_flex axis to wrist_flex axis. */
  forearm: 0.135,
  /** wrist_flex axis to the end-effector site between the fingertips. */
  tool: 0.105,
} as const;

/** Joint names in state/action order. */
export const ARM_JOINTS = [
  "shoulder_pan",
  "shoulder_lift",
  "elbow_flex",
  "wrist_flex",
  "wrist_roll",
  "gripper",
] as const;

/** Joint ranges [min, max] in radians (gripper: metres of opening per finger), SO-101 limits. */
export const ARM_RANGES: Record<(typeof ARM_JOINTS)[number], [number, number]> = {
  shoulder_pan: [-1.92, 1.92],
  shoulder_lift: [-1.75, 1.75],
  elbow_flex: [-1.69, 1.69],
  wrist_flex: [-1.66, 1.66],
  wrist_roll: [-2.74, 2.84],
  gripper: [0, 0.03],
};

/** Options for {@link armMjcf}. */
export interface ArmMjcfOptions {
  /** Physics timestep in seconds; default 0.002 (500 Hz). */
  timestep?: number;
  /** Position-servo stiffness of the arm joints (N·m/rad); default 30. */
  kp?: number;
}

/** Generates the arm's MJCF; task objects are added by {@link armScene}'s `buildXml`. */
export function armMjcf(opts: ArmMjcfOptions = {}): string {
  const dt = opts.timestep ?? 0.002;
  const kp = opts.kp ?? 30;
  const L = ARM_LINKS;
  const r = (j: (typeof ARM_JOINTS)[number]): string => ARM_RANGES[j].join(" ");
  // The lower arm frame is pitched +90° at elbow zero (quat of a rotation of pi/2 about y).
  const q90 = `${Math.SQRT1_2} 0 ${Math.SQRT1_2} 0`;
  return `<mujoco model="actionflow_arm">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="${dt}" integrator="implicitfast"/>
  <default>
    <joint damping="1" armature="0.01"/>
    <geom friction="0.8 0.02 0.001" rgba="0.92 0.92 0.92 1" density="600"/>
    <position kp="${kp}"/>
  </default>
  <worldbody>
    <light pos="0 0 1.5" dir="0 0 -1" directional="true"/>
    <camera name="front" pos="0.55 0 0.4" xyaxes="0 1 0 -0.67 0 0.742" fovy="45"/>
    <geom name="table" type="plane" size="0.6 0.6 0.01" rgba="0.76 0.66 0.55 1"/>
    <body name="base">
      <geom name="base" type="cylinder" size="0.045 0.03" pos="0 0 0.03" rgba="0.2 0.2 0.2 1"/>
      <body name="shoulder" pos="0 0 0.06" gravcomp="1">
        <joint name="shoulder_pan" axis="0 0 1" range="${r("shoulder_pan")}"/>
        <geom name="shoulder" type="cylinder" size="0.028 0.022" pos="0 0 0.026"/>
        <body name="upper_arm" pos="0 0 ${L.shoulderHeight - 0.06}" gravcomp="1">
          <joint name="shoulder_lift" axis="0 1 0" range="${r("shoulder_lift")}"/>
          <geom name="upper_arm" type="capsule" size="0.017" fromto="0 0 0 0 0 ${L.upperArm}"/>
          <body name="lower_arm" pos="0 0 ${L.upperArm}" quat="${q90}" gravcomp="1">
            <joint name="elbow_flex" axis="0 1 0" range="${r("elbow_flex")}"/>
            <geom name="lower_arm" type="capsule" size="0.015" fromto="0 0 0 0 0 ${L.forearm}"/>
            <body name="wrist" pos="0 0 ${L.forearm}" gravcomp="1">
              <joint name="wrist_flex" axis="0 1 0" range="${r("wrist_flex")}"/>
              <geom name="wrist" type="capsule" size="0.014" fromto="0 0 0 0 0 0.03"/>
              <body name="gripper_base" pos="0 0 0.03" gravcomp="1">
                <joint name="wrist_roll" axis="0 0 1" range="${r("wrist_roll")}"/>
                <geom name="palm" type="box" size="0.032 0.013 0.01" pos="0 0 0.01"/>
                <body name="finger_left" pos="0 0 0.02" gravcomp="1">
                  <joint name="gripper" type="slide" axis="1 0 0" range="${r("gripper")}" damping="5"/>
                  <geom name="finger_left" type="box" size="0.005 0.011 0.03" pos="0.006 0 0.03" rgba="0.3 0.3 0.3 1"/>
                </body>
                <body name="finger_right" pos="0 0 0.02" gravcomp="1">
                  <joint name="gripper_mirror" type="slide" axis="-1 0 0" range="${r("gripper")}" damping="5"/>
                  <geom name="finger_right" type="box" size="0.005 0.011 0.03" pos="-0.006 0 0.03" rgba="0.3 0.3 0.3 1"/>
                </body>
                <site name="ee" pos="0 0 ${L.tool - 0.03}" size="0.006" rgba="1 0 0 1"/>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>
  </worldbody>
  <equality>
    <joint joint1="gripper_mirror" joint2="gripper" polycoef="0 1 0 0 0"/>
  </equality>
  <actuator>
    <position name="shoulder_pan" joint="shoulder_pan" ctrlrange="${r("shoulder_pan")}"/>
    <position name="shoulder_lift" joint="shoulder_lift" ctrlrange="${r("shoulder_lift")}"/>
    <position name="elbow_flex" joint="elbow_flex" ctrlrange="${r("elbow_flex")}"/>
    <position name="wrist_flex" joint="wrist_flex" ctrlrange="${r("wrist_flex")}"/>
    <position name="wrist_roll" joint="wrist_roll" ctrlrange="${r("wrist_roll")}" kp="${kp / 3}"/>
    <position name="gripper" joint="gripper" ctrlrange="${r("gripper")}" kp="200"/>
  </actuator>
</mujoco>
`;
}

/**
 * The start pose: end effector 0.16 m in front of the base, 0.10 m above the table, gripper
 * pointing down and half open (radians; gripper in metres). Found by IK, see test/sim/scene.test.ts.
 */
export const ARM_HOME = [0, 0.228, -0.094, 1.437, 0, 0.015];

/** The built-in arm as a {@link RobotScene}. */
export function armScene(opts: ArmMjcfOptions = {}): RobotScene {
  const xml = armMjcf(opts);
  return {
    source: "actionflow-arm",
    buildXml: (extras) => injectWorldbody(xml, extras, "actionflow-arm"),
    assets: {},
    joints: [...ARM_JOINTS],
    actuators: [...ARM_JOINTS],
    eeSite: "ee",
    gripper: { index: 5, open: 0.025, closed: 0 },
    home: [...ARM_HOME],
  };
}
