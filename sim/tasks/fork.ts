/**
 * Fork: reach a target behind a low wall through one of its two gaps. The end effector starts low
 * on the centreline 7.5 cm in front of the wall, whose solid middle blocks the straight way; the
 * gaps (7 cm wide) are centred 7 cm to the left (+y) and to the right (-y). The expert's approach to a split point 6 cm
 * in front of the wall is the same either way (see `sim/experts/fork.ts`); there the way forks with
 * no room to drift: the average of the two ways runs into the middle of the wall, and a
 * half-hearted swerve hits it too. The wall is lower than the gripper's palm, so only the fingers
 * thread the gap and the arm passes over. Success = within 2 cm of the target for 5 control steps
 * with no contact with the wall ever; a contact ends the episode as a failure.
 * `observation.environment_state` = [target x, y, z, wall x, y, end effector x, y, z] (metres).
 */
import type { Rng } from "../../policy/random.ts";
import type { SimEnv, Vec3 } from "../env.ts";
import type { SceneMarkers, TaskInfo } from "./task.ts";
import { Task, dist3, resetArmAt, shapedReward, uniform } from "./task.ts";

/** Success radius (metres) and hold (control steps). */
export const FORK_RADIUS = 0.02;
export const FORK_HOLD = 5;

/** The wall's dimensions (metres): thickness (x), height, gap offset from its centre (y) and gap width. */
export const FORK_WALL = {
  thickness: 0.01,
  height: 0.07,
  /** Centre of each gap, this far left and right of the wall's centre. */
  gapOffset: 0.07,
  /** Width of each gap (y). */
  gapWidth: 0.07,
  /** Length of each outer piece beyond a gap (y). */
  outer: 0.06,
} as const;

/** Nominal x (metres) of the wall's centre; the end effector starts at x 0.1, 7.5 cm in front of it. */
export const FORK_WALL_X = 0.175;

/** The fork task's static description. */
export const FORK_INFO: TaskInfo = {
  name: "fork",
  description: "Reach the green target behind the red wall through one of its two gaps without touching the wall.",
  maxSteps: 150,
  envStateNames: ["target_x", "target_y", "target_z", "wall_x", "wall_y", "ee_x", "ee_y", "ee_z"],
  modes: ["left", "right"],
};

/**
 * The instructed fork (`fork-instructed`): the same scene, the episode's instruction names the gap
 * ("pass through the left gap" / "pass through the right gap"), the expert follows it, and
 * evaluation reports how often a policy went the instructed way.
 */
export const FORK_INSTRUCTED_INFO: TaskInfo = {
  ...FORK_INFO,
  name: "fork-instructed",
  description: "Reach the green target behind the red wall through the gap the instruction names.",
  instructions: { left: "pass through the left gap", right: "pass through the right gap" },
};

const W = FORK_WALL;
/** Half length (y) of the solid middle between the gaps. */
const MIDDLE_HALF = W.gapOffset - W.gapWidth / 2;
/** Centre (y, from the wall's centre) of each outer piece. */
const OUTER_CENTER = W.gapOffset + W.gapWidth / 2 + W.outer / 2;

/** The wall's solid pieces as [centre y offset, half length y]. */
const PIECES: [number, number][] = [
  [0, MIDDLE_HALF],
  [OUTER_CENTER, W.outer / 2],
  [-OUTER_CENTER, W.outer / 2],
];

/** MJCF for the target marker (mocap) and the wall (one mocap body with three boxes, so it can move between episodes). */
export const FORK_WORLDBODY = `
    <body name="af_target" mocap="true" pos="0.24 0 0.045">
      <geom name="af_target" type="sphere" size="0.012" contype="0" conaffinity="0" rgba="0.1 0.8 0.2 0.6"/>
    </body>
    <body name="af_wall" mocap="true" pos="${FORK_WALL_X} 0 ${W.height / 2}">
${PIECES.map(
  ([y, half], i) =>
    `      <geom name="af_wall_${i}" type="box" pos="0 ${y} 0" size="${W.thickness / 2} ${half} ${W.height / 2}" rgba="0.85 0.15 0.1 1"/>`,
).join("\n")}
    </body>`;

/** The fork task. */
export class ForkTask extends Task {
  readonly info: TaskInfo;
  /** Target position (metres). */
  target: Vec3 = [0.24, 0, 0.045];
  /** The wall's centre at mid height (metres); the gaps are at wall y ± {@link FORK_WALL}.gapOffset. */
  wall: Vec3 = [FORK_WALL_X, 0, W.height / 2];
  /** True once anything touched the wall this episode. */
  touched = false;
  private readonly targetBody: number;
  private readonly wallBody: number;
  private readonly wallGeoms: number[];
  private inside = 0;

  /** Wraps an environment compiled with {@link FORK_WORLDBODY}; `info` {@link FORK_INSTRUCTED_INFO} makes it the instructed fork. */
  constructor(env: SimEnv, info: TaskInfo = FORK_INFO) {
    super(env);
    this.info = info;
    this.targetBody = env.id("body", "af_target");
    this.wallBody = env.id("body", "af_wall");
    this.wallGeoms = PIECES.map((_, i) => env.id("geom", `af_wall_${i}`));
    for (const g of this.wallGeoms) env.watch(g);
  }

  override get failed(): boolean {
    return this.touched;
  }

  protected resetScene(rng: Rng): void {
    const start: Vec3 = [0.1 + uniform(rng, -0.005, 0.005), uniform(rng, -0.005, 0.005), 0.05];
    this.wall = [FORK_WALL_X + uniform(rng, -0.004, 0.004), uniform(rng, -0.005, 0.005), W.height / 2];
    this.target = [0.24 + uniform(rng, -0.008, 0.008), this.wall[1] + uniform(rng, -0.01, 0.01), 0.045];
    resetArmAt(this.env, rng, start, 0.01);
    this.env.setMocapPos(this.targetBody, this.target);
    this.env.setMocapPos(this.wallBody, this.wall);
    this.touched = false;
    this.inside = 0;
  }

  protected override afterStep(): void {
    if (this.touched) return;
    for (const g of this.wallGeoms) {
      if (this.env.wasTouched(g) || this.env.touching(g)) {
        this.touched = true;
        return;
      }
    }
  }

  protected environmentState(): number[] {
    return [...this.target, this.wall[0], this.wall[1], ...this.env.eePos()];
  }

  protected successNow(): boolean {
    if (this.touched) return false;
    this.inside = dist3(this.env.eePos(), this.target) < FORK_RADIUS ? this.inside + 1 : 0;
    return this.inside >= FORK_HOLD;
  }

  reward(): number {
    return this.touched ? 0 : shapedReward(Math.max(0, dist3(this.env.eePos(), this.target) - FORK_RADIUS));
  }

  override modeOf(trace: readonly Vec3[]): "left" | "right" | "none" {
    return forkMode(trace, this.wall);
  }

  markers(): SceneMarkers {
    return {
      target: this.target,
      walls: PIECES.map(([y, half]) => ({
        center: [this.wall[0], this.wall[1] + y, this.wall[2]] as Vec3,
        halfSize: [W.thickness / 2, half] as [number, number],
      })),
    };
  }
}

/**
 * Which gap the end effector went through: "left" (+y of the wall's centre), "right" (-y), or
 * "none" if it never reached the wall's plane (e.g. it touched the wall first).
 */
export function forkMode(trace: readonly Vec3[], wall: Vec3): "left" | "right" | "none" {
  let best = Infinity;
  let side: "left" | "right" | "none" = "none";
  for (const p of trace) {
    const dx = Math.abs(p[0] - wall[0]);
    if (dx < W.thickness && dx < best) {
      best = dx;
      side = p[1] >= wall[1] ? "left" : "right";
    }
  }
  return side;
}
