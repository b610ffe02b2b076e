/**
 * What the simulator needs to know about a robot: its MJCF, which joints make the observed state,
 * which actuators take the action dims, the end-effector site and the gripper.
 */

/** The gripper's place in the action/state vectors and its open/closed targets. */
export interface GripperSpec {
  /** Index into `joints`/`actuators`. */
  index: number;
  /** Joint target for an open gripper (the joint's unit: metres for a slide, radians for a hinge). */
  open: number;
  /** Joint target for a closed gripper. */
  closed: number;
}

/** A robot scene: MJCF text plus the mapping from joints and actuators to state and action dims. */
export interface RobotScene {
  /** Names the scene in errors and metadata: "actionflow-arm" or the user MJCF path. */
  source: string;
  /** Returns the full MJCF with task objects (MJCF `<body>`/`<geom>` elements) added to the worldbody. */
  buildXml(worldbodyExtras: string): string;
  /** Extra files the MJCF refers to (meshes, included XML), keyed by path relative to the MJCF. */
  assets: Record<string, string | Uint8Array>;
  /** Joint names whose positions form `observation.state`, in order (length = stateDim). */
  joints: string[];
  /** Actuator names taking the action dims, in order (position actuators; length = actionDim). */
  actuators: string[];
  /** The end-effector site (tip of the tool) used for IK, success checks and pictures. */
  eeSite: string;
  /** The gripper dim, if any; IK leaves it alone. */
  gripper?: GripperSpec;
  /** A joint configuration to start from (radians/metres, one per joint); defaults to all zeros. */
  home?: number[];
}

/** Inserts `extras` before the last `</worldbody>` of an MJCF document. */
export function injectWorldbody(xml: string, extras: string, source: string): string {
  const at = xml.lastIndexOf("</worldbody>");
  if (at < 0) throw new Error(`${source}: MJCF has no </worldbody> to add task objects to`);
  return xml.slice(0, at) + extras + "\n" + xml.slice(at);
}
