/**
 * Avoid: reach a target behind a pillar without touching it. The end effector starts low in front
 * of the pillar and the target lies low behind it, so the way goes round the pillar on the left
 * (+y) or on the right (-y): two equally good solutions, the case a unimodal policy averages into a
 * collision. Success = within 2 cm of the target for 5 control steps with no contact with the
 * pillar ever; a contact ends the episode as a failure.
 * `observation.environment_state` = [target x, y, z, obstacle x, y, end effector x, y, z] (metres).
 */
import type { Rng } from "../../policy/random.ts";
import type { SimEnv, Vec3 } from "../env.ts";
import type { SceneMarkers, TaskInfo } from "./task.ts";
import { Task, dist3, resetArmAt, shapedReward, uniform } from "./task.ts";

/** Success radius (metres) and hold (control steps). */
export const AVOID_RADIUS = 0.02;
export const AVOID_HOLD = 5;
/** Pillar radius and height (metres). */
export const OBSTACLE_RADIUS = 0.02;
export const OBSTACLE_HEIGHT = 0.08;

/** The avoid task's static description. */
export const AVOID_INFO: TaskInfo = {
  name: "avoid",
  description: "Reach the green target behind the red pillar without touching the pillar.",
  maxSteps: 200,
  envStateNames: ["target_x", "target_y", "target_z", "obstacle_x", "obstacle_y", "ee_x", "ee_y", "ee_z"],
  modes: ["left", "right"],
};

/** MJCF for the target marker (mocap) and the pillar (a mocap body so it can move between episodes). */
export const AVOID_WORLDBODY = `
    <body name="af_target" mocap="true" pos="0.24 0 0.045">
      <geom name="af_target" type="sphere" size="0.012" contype="0" conaffinity="0" rgba="0.1 0.8 0.2 0.6"/>
    </body>
    <body name="af_obstacle" mocap="true" pos="0.175 0 ${OBSTACLE_HEIGHT / 2}">
      <geom name="af_obstacle" type="cylinder" size="${OBSTACLE_RADIUS} ${OBSTACLE_HEIGHT / 2}" rgba="0.85 0.15 0.1 1"/>
    </body>`;

/** The avoid task. */
export class AvoidTask extends Task {
  readonly info = AVOID_INFO;
  /** Target position (metres). */
  target: Vec3 = [0.24, 0, 0.045];
  /** Pillar centre at mid height (metres). */
  obstacle: Vec3 = [0.175, 0, OBSTACLE_HEIGHT / 2];
  /** True once anything touched the pillar this episode. */
  touched = false;
  private readonly targetBody: number;
  private readonly obstacleBody: number;
  private readonly obstacleGeom: number;
  private inside = 0;

  /** Wraps an environment compiled with {@link AVOID_WORLDBODY}. */
  constructor(env: SimEnv) {
    super(env);
    this.targetBody = env.id("body", "af_target");
    this.obstacleBody = env.id("body", "af_obstacle");
    this.obstacleGeom = env.id("geom", "af_obstacle");
    env.watch(this.obstacleGeom);
  }

  override get failed(): boolean {
    return this.touched;
  }

  protected resetScene(rng: Rng): void {
    const start: Vec3 = [0.1 + uniform(rng, -0.006, 0.006), uniform(rng, -0.01, 0.01), 0.05];
    this.obstacle = [0.175 + uniform(rng, -0.006, 0.006), uniform(rng, -0.01, 0.01), OBSTACLE_HEIGHT / 2];
    this.target = [0.24 + uniform(rng, -0.008, 0.008), uniform(rng, -0.015, 0.015), 0.045];
    // Start low in front of the pillar: the home pose moved there by IK, plus a little noise.
    const env = this.env;
    resetArmAt(env, rng, start, 0.01);
    env.setMocapPos(this.targetBody, this.target);
    env.setMocapPos(this.obstacleBody, this.obstacle);
    this.touched = false;
    this.inside = 0;
  }

  protected override afterStep(): void {
    if (!this.touched && (this.env.wasTouched(this.obstacleGeom) || this.env.touching(this.obstacleGeom))) {
      this.touched = true;
    }
  }

  protected environmentState(): number[] {
    return [...this.target, this.obstacle[0], this.obstacle[1], ...this.env.eePos()];
  }

  protected successNow(): boolean {
    if (this.touched) return false;
    this.inside = dist3(this.env.eePos(), this.target) < AVOID_RADIUS ? this.inside + 1 : 0;
    return this.inside >= AVOID_HOLD;
  }

  reward(): number {
    return this.touched ? 0 : shapedReward(Math.max(0, dist3(this.env.eePos(), this.target) - AVOID_RADIUS));
  }

  override modeOf(trace: readonly Vec3[]): "left" | "right" | "none" {
    return avoidMode(trace, this.obstacle);
  }

  markers(): SceneMarkers {
    return { target: this.target, obstacle: { center: this.obstacle, radius: OBSTACLE_RADIUS } };
  }
}

/**
 * Which way round the pillar the end effector went: "left" (+y), "right" (-y), or "none" if it never came level with
 * it.
 */
export function avoidMode(trace: readonly Vec3[], obstacle: Vec3): "left" | "right" | "none" {
  let best = Infinity;
  let side: "left" | "right" | "none" = "none";
  for (const p of trace) {
    const dx = Math.abs(p[0] - obstacle[0]);
    if (dx < 0.02 && dx < best) {
      best = dx;
      side = p[1] >= obstacle[1] ? "left" : "right";
    }
  }
  return side;
}
