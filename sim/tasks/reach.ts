/**
 * Reach: bring the end effector within 2 cm of a random target and hold it there for 10 control
 * steps. `observation.environment_state` = [target x, y, z, end effector x, y, z] (metres).
 */
import type { Rng } from "../../policy/random.ts";
import type { SimEnv, Vec3 } from "../env.ts";
import type { SceneMarkers, TaskInfo } from "./task.ts";
import { Task, dist3, shapedReward, uniform } from "./task.ts";

/** Success radius (metres). */
export const REACH_RADIUS = 0.02;
/** Control steps the end effector must stay inside the radius. */
export const REACH_HOLD = 10;

/** The reach task's static description. */
export const REACH_INFO: TaskInfo = {
  name: "reach",
  description: "Move the gripper tip to the green target and hold it there.",
  maxSteps: 150,
  envStateNames: ["target_x", "target_y", "target_z", "ee_x", "ee_y", "ee_z"],
};

/**
 * MJCF for the target marker (a mocap body without collisions): a sphere of the success radius, so
 * a camera shows the region the tip must stay in, and a gripper at the target does not hide it.
 */
export const REACH_WORLDBODY = `
    <body name="af_target" mocap="true" pos="0.2 0 0.05">
      <geom name="af_target" type="sphere" size="${REACH_RADIUS}" contype="0" conaffinity="0" rgba="0.1 0.8 0.2 0.6"/>
    </body>`;

/** The reach task. */
export class ReachTask extends Task {
  readonly info = REACH_INFO;
  /** Target position for this episode (metres). */
  target: Vec3 = [0.2, 0, 0.05];
  private readonly targetBody: number;
  private inside = 0;

  /** Wraps an environment compiled with {@link REACH_WORLDBODY}. */
  constructor(env: SimEnv) {
    super(env);
    this.targetBody = env.id("body", "af_target");
  }

  protected resetScene(rng: Rng): void {
    this.resetArm(rng, 0.05);
    const r = uniform(rng, 0.13, 0.23);
    const phi = uniform(rng, -0.9, 0.9);
    this.target = [r * Math.cos(phi), r * Math.sin(phi), uniform(rng, 0.03, 0.09)];
    this.env.setMocapPos(this.targetBody, this.target);
    this.inside = 0;
  }

  protected environmentState(): number[] {
    return [...this.target, ...this.env.eePos()];
  }

  protected successNow(): boolean {
    this.inside = dist3(this.env.eePos(), this.target) < REACH_RADIUS ? this.inside + 1 : 0;
    return this.inside >= REACH_HOLD;
  }

  reward(): number {
    return shapedReward(Math.max(0, dist3(this.env.eePos(), this.target) - REACH_RADIUS));
  }

  markers(): SceneMarkers {
    return { target: this.target };
  }
}
