/**
 * Push: push a puck (a short cylinder, 2.2 cm radius) on the table into a goal region; success when
 * its centre is within 3 cm of the goal centre. `observation.environment_state` =
 * [block x, y, z, goal x, y, end effector x, y, z] (metres).
 */
import type { Rng } from "../../policy/random.ts";
import type { SimEnv, Vec3 } from "../env.ts";
import type { SceneMarkers, TaskInfo } from "./task.ts";
import { Task, distXY, shapedReward, uniform } from "./task.ts";

/** Goal radius (metres). */
export const PUSH_RADIUS = 0.03;
/** Puck radius and half height (metres). */
export const BLOCK_RADIUS = 0.022;
export const BLOCK_HALF_HEIGHT = 0.02;

/** The push task's static description. */
export const PUSH_INFO: TaskInfo = {
  name: "push",
  description: "Push the blue puck into the green goal region.",
  maxSteps: 300,
  envStateNames: ["block_x", "block_y", "block_z", "goal_x", "goal_y", "ee_x", "ee_y", "ee_z"],
};

/** MJCF for the puck (free body) and the goal marker (mocap, no collisions). */
export const PUSH_WORLDBODY = `
    <body name="af_block" pos="0.17 0 ${BLOCK_HALF_HEIGHT}">
      <freejoint name="af_block"/>
      <geom name="af_block" type="cylinder" size="${BLOCK_RADIUS} ${BLOCK_HALF_HEIGHT}" mass="0.05" friction="0.5 0.01 0.001" rgba="0.2 0.4 0.9 1"/>
    </body>
    <body name="af_goal" mocap="true" pos="0.2 0 0.0005">
      <geom name="af_goal" type="cylinder" size="${PUSH_RADIUS} 0.0005" contype="0" conaffinity="0" rgba="0.1 0.8 0.2 0.5"/>
    </body>`;

/** The push task. */
export class PushTask extends Task {
  readonly info = PUSH_INFO;
  /** Goal centre on the table (metres). */
  goal: Vec3 = [0.2, 0, 0];
  private readonly blockBody: number;
  private readonly blockJoint: number;
  private readonly goalBody: number;

  /** Wraps an environment compiled with {@link PUSH_WORLDBODY}. */
  constructor(env: SimEnv) {
    super(env);
    this.blockBody = env.id("body", "af_block");
    this.blockJoint = env.id("joint", "af_block");
    this.goalBody = env.id("body", "af_goal");
  }

  /** Current puck centre (metres). */
  block(): Vec3 {
    return this.env.bodyPos(this.blockBody);
  }

  protected resetScene(rng: Rng): void {
    const closed = this.env.scene.gripper?.closed;
    this.resetArm(rng, 0.04, closed);
    let block: Vec3 = [0.17, 0, BLOCK_HALF_HEIGHT];
    let goal: Vec3 = [0.22, 0, 0];
    for (let attempt = 0; attempt < 100; attempt++) {
      const r = uniform(rng, 0.14, 0.19);
      const phi = uniform(rng, -0.6, 0.6);
      block = [r * Math.cos(phi), r * Math.sin(phi), BLOCK_HALF_HEIGHT];
      const len = uniform(rng, 0.05, 0.09);
      const dir = uniform(rng, -Math.PI, Math.PI);
      goal = [block[0] + len * Math.cos(dir), block[1] + len * Math.sin(dir), 0];
      const rg = Math.hypot(goal[0], goal[1]);
      const phiGoal = Math.atan2(goal[1], goal[0]);
      if (rg >= 0.12 && rg <= 0.23 && Math.abs(phiGoal) <= 0.8) break;
    }
    this.goal = goal;
    this.env.setFreeJoint(this.blockJoint, block);
    this.env.setMocapPos(this.goalBody, [goal[0], goal[1], 0.0005]);
  }

  protected environmentState(): number[] {
    return [...this.block(), this.goal[0], this.goal[1], ...this.env.eePos()];
  }

  protected successNow(): boolean {
    return distXY(this.block(), this.goal) < PUSH_RADIUS;
  }

  reward(): number {
    return shapedReward(Math.max(0, distXY(this.block(), this.goal) - PUSH_RADIUS));
  }

  markers(): SceneMarkers {
    return {
      goal: { center: this.goal, radius: PUSH_RADIUS },
      block: { center: this.block(), radius: BLOCK_RADIUS },
    };
  }
}
