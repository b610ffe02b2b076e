/**
 * What every simulated task shares: a seeded reset, observations in LeRobot's feature names,
 * a reward, a success test and a maximum episode length, over one {@link SimEnv}.
 */
import { Rng } from "../../policy/random.ts";
import { RayCamera } from "../camera.ts";
import type { CameraFrame, CameraSpec } from "../camera.ts";
import type { SimEnv, Vec3 } from "../env.ts";
import { SiteIk } from "../experts/ik.ts";
import { normalizePrompt } from "../../policy/net/prompt.ts";

/** Names of the built-in tasks. */
export type TaskName = "reach" | "push" | "avoid" | "fork" | "fork-instructed";

/**
 * Observation dict in LeRobot feature names: `observation.state` [dim] and
 * `observation.environment_state` [envDim] (float32), and for each camera
 * `observation.images.<name>`, uint8 RGB `[height, width, 3]`.
 */
export type Observation = Record<string, Float32Array | Uint8Array>;

/**
 * Parts of the observation a dataset records or a policy is given: the joint positions ("state"),
 * the task's environment state ("env": e.g. the target's position) and the camera images
 * ("camera"). `["state", "camera"]` is the vision-only variant: the target is only in the image.
 */
export type ObsPart = "state" | "env" | "camera";

/** The observation parts accepted by {@link parseObsParts}. */
export const OBS_PARTS: readonly ObsPart[] = ["state", "env", "camera"];

/** Parses a comma-separated obs selection such as "state,camera"; throws naming the bad part. */
export function parseObsParts(text: string, where = "--obs"): ObsPart[] {
  const parts = text
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
  if (parts.length === 0) throw new Error(`${where}: empty selection (choose from ${OBS_PARTS.join(", ")})`);
  for (const p of parts)
    if (!OBS_PARTS.includes(p as ObsPart))
      throw new Error(`${where}: unknown part '${p}' (choose from ${OBS_PARTS.join(", ")})`);
  return [...new Set(parts)] as ObsPart[];
}

/** The dataset key of a camera's image. */
export function imageKey(camera: string): string {
  return `observation.images.${camera}`;
}

/** Objects a picture of the episode shows (top-down), in world metres. */
export interface SceneMarkers {
  /** Where the end effector should end up (reach, avoid, fork). */
  target?: Vec3;
  /** Obstacle centre and radius (avoid). */
  obstacle?: { center: Vec3; radius: number };
  /** Goal centre and radius of the goal region (push). */
  goal?: { center: Vec3; radius: number };
  /** Block centre and radius (push), at the current time. */
  block?: { center: Vec3; radius: number };
  /** Solid boxes seen from above (fork: the wall on each side of its gaps): centre and half sizes in x and y. */
  walls?: { center: Vec3; halfSize: [number, number] }[];
}

/** A static description of a task (no simulator needed). */
export interface TaskInfo {
  name: TaskName;
  /** The natural-language task string stored in the dataset. */
  description: string;
  /** Maximum control steps per episode. */
  maxSteps: number;
  /** Names of the `observation.environment_state` entries (fixed length for the task). */
  envStateNames: string[];
  /**
   * The two solution modes of a multimodal task (avoid, fork: `["left", "right"]`), which its expert
   * can be forced into and {@link Task.modeOf} tells apart; absent for single-mode tasks.
   */
  modes?: readonly [string, string];
  /**
   * Instructed tasks only (fork-instructed): the instruction (task prompt) of each mode, e.g.
   * `{ left: "pass through the left gap" }`. Each episode is told one of them and succeeds only
   * the instructed way round as far as `instructed_share` goes; absent for other tasks.
   */
  instructions?: Readonly<Record<string, string>>;
}

/** A task over a live environment. Call `reset(seed)` before anything else. */
export abstract class Task {
  /** The environment the task runs in (owned by the task: {@link Task.dispose} frees it). */
  readonly env: SimEnv;
  /** Control steps taken since the reset. */
  stepsTaken = 0;
  /** The seed of the last reset. */
  seed = 0;
  private achieved = false;
  private readonly cams: RayCamera[] = [];
  private readonly lastFrames = new Map<string, CameraFrame>();
  /** Camera frames rendered by {@link Task.observe} so far (all cameras) and the seconds it took. */
  readonly cameraTime = { frames: 0, seconds: 0 };

  /** Static description. */
  abstract readonly info: TaskInfo;
  /**
   * Instructed tasks only: the mode this episode is told to take (drawn from the seed at reset, or
   * set by {@link Task.instruct}); undefined for other tasks.
   */
  instructedMode: string | undefined = undefined;

  /**
   * The task prompt of the current episode: the instruction of the instructed mode, else the task's
   * description (what `sim collect` stores as the episode's task).
   */
  get prompt(): string {
    const m = this.instructedMode;
    return (m !== undefined ? this.info.instructions?.[m] : undefined) ?? this.info.description;
  }

  /**
   * Instructed tasks: tells the current episode to take `mode` (call after `reset`, before the
   * expert is created). Throws naming the task's modes for another mode or a task without instructions.
   */
  instruct(mode: string): void {
    const ins = this.info.instructions;
    if (!ins) throw new Error(`sim/${this.info.name}: the task takes no instruction (got '${mode}')`);
    if (!(mode in ins))
      throw new Error(
        `sim/${this.info.name}: mode must be ${Object.keys(ins)
          .map((m) => `'${m}'`)
          .join(" or ")}, got '${mode}'`,
      );
    this.instructedMode = mode;
  }

  /**
   * Instructed tasks: the mode a prompt instructs (its text matched ignoring case, spacing and final
   * punctuation). Throws naming the task's instructions for any other text.
   */
  modeOfPrompt(text: string): string {
    const ins = this.info.instructions;
    if (!ins) throw new Error(`sim/${this.info.name}: the task takes no instruction (got ${JSON.stringify(text)})`);
    const key = normalizePrompt(text);
    const hit = Object.entries(ins).find(([, t]) => normalizePrompt(t) === key);
    if (!hit)
      throw new Error(
        `sim/${this.info.name}: unknown instruction ${JSON.stringify(text)} (known: ${Object.values(ins)
          .map((t) => JSON.stringify(t))
          .join(", ")})`,
      );
    return hit[0];
  }

  protected constructor(env: SimEnv) {
    this.env = env;
  }

  /** Resets the arm near its home pose and draws a new scene from `seed` (deterministic). */
  reset(seed: number): void {
    this.seed = seed;
    this.stepsTaken = 0;
    this.achieved = false;
    const rng = new Rng(seed);
    this.resetScene(rng);
    // An instructed task draws the episode's instruction from a stream of its own, so the scene of a
    // seed is the same whatever it is told.
    const modes = this.info.modes;
    this.instructedMode =
      this.info.instructions && modes ? modes[new Rng((seed ^ 0x2545f491) >>> 0).int(2)] : undefined;
    this.env.forward();
    this.afterStep();
  }

  /**
   * Adds cameras (pose from the scene's camera of the same name, or the spec); each then renders
   * into every {@link Task.observe}. Throws on a duplicate name.
   */
  attachCameras(specs: readonly CameraSpec[]): void {
    for (const spec of specs) {
      if (this.cams.some((c) => c.spec.name === spec.name))
        throw new Error(`sim/${this.info.name}: two cameras named '${spec.name}'`);
      this.cams.push(new RayCamera(this.env, spec));
    }
  }

  /** The attached cameras' specs. */
  get cameras(): readonly Readonly<CameraSpec>[] {
    return this.cams.map((c) => c.spec);
  }

  /** The last frame (RGB and depth) a camera rendered in {@link Task.observe}, or undefined before the first. */
  cameraFrame(name: string): CameraFrame | undefined {
    return this.lastFrames.get(name);
  }

  /**
   * Current observation (copies): the state, the environment state and one image per attached
   * camera, rendered now. Use {@link selectObservation} for what a dataset or policy is given.
   */
  observe(): Observation {
    const obs: Observation = {
      "observation.state": this.env.jointPositions(),
      "observation.environment_state": Float32Array.from(this.environmentState()),
    };
    for (const cam of this.cams) {
      const t0 = performance.now();
      const frame = cam.render();
      this.cameraTime.seconds += (performance.now() - t0) / 1000;
      this.cameraTime.frames++;
      this.lastFrames.set(cam.spec.name, frame);
      obs[imageKey(cam.spec.name)] = frame.rgb;
    }
    return obs;
  }

  /** Applies one action (joint position targets, action order) for one control period. */
  step(action: ArrayLike<number>): void {
    this.env.step(action);
    this.stepsTaken++;
    this.afterStep();
    if (this.successNow()) this.achieved = true;
  }

  /** True once the task's success condition has held (sticky for the episode). */
  get success(): boolean {
    return this.achieved;
  }

  /** True when the episode is over: success, an unrecoverable failure, or the step limit. */
  get done(): boolean {
    return this.achieved || this.failed || this.stepsTaken >= this.info.maxSteps;
  }

  /** True after an unrecoverable failure (e.g. touching the obstacle). */
  get failed(): boolean {
    return false;
  }

  /**
   * The solution mode an end-effector path took (one of `info.modes`, or "none" when it took
   * neither), for multimodal tasks; undefined for single-mode tasks. Reads the current scene.
   */
  modeOf(trace: readonly Vec3[]): string | undefined {
    void trace;
    return undefined;
  }

  /** Reward of the current state, in [0, 1]: 1 inside the success region, falling off with the distance outside it. */
  abstract reward(): number;

  /** Objects to draw in pictures. */
  abstract markers(): SceneMarkers;

  /** Frees the cameras and the environment. */
  dispose(): void {
    for (const c of this.cams) c.dispose();
    this.cams.length = 0;
    this.env.dispose();
  }

  /** Places the arm and the task objects for a new episode (the env is reset by the implementation). */
  protected abstract resetScene(rng: Rng): void;

  /** Task features, fixed length `info.envStateNames.length`. */
  protected abstract environmentState(): number[];

  /** Whether the success condition holds after this step (hold counters live here). */
  protected abstract successNow(): boolean;

  /** Bookkeeping after every physics update (e.g. contact checks). */
  protected afterStep(): void {}

  /** Resets the env at the home pose with N(0, sigma) radians on the arm joints (not the gripper). */
  protected resetArm(rng: Rng, sigma: number, gripper?: number): void {
    const env = this.env;
    const home = env.scene.home ?? new Array<number>(env.dim).fill(0);
    const q = home.map((v, i) => {
      if (i === env.scene.gripper?.index) return gripper ?? v;
      const [lo, hi] = env.ranges[i] ?? [-Infinity, Infinity];
      return Math.min(hi, Math.max(lo, v + sigma * rng.normal()));
    });
    env.reset(q);
  }
}

/**
 * Resets the env with the end effector at `start`: the home pose (gripper closed) moved there by IK,
 * plus N(0, sigma) radians on the arm joints.
 */
export function resetArmAt(env: SimEnv, rng: Rng, start: Vec3, sigma: number): void {
  const gi = env.scene.gripper?.index;
  const home = (env.scene.home ?? new Array<number>(env.dim).fill(0)).map((v, i) =>
    i === gi ? (env.scene.gripper?.closed ?? v) : v,
  );
  const ik = new SiteIk(env);
  let q: number[];
  try {
    q = ik.solve(start, home).q;
  } finally {
    ik.dispose();
  }
  env.reset(q.map((v, i) => (i === gi ? v : v + sigma * rng.normal())));
}

/** Euclidean distance between two points. */
export function dist3(a: Vec3, b: Vec3): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
}

/** Distance in the table plane (x, y). */
export function distXY(a: Vec3, b: Vec3): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1]);
}

/** Shaped reward 1 - tanh(d / scale) in (0, 1]; tasks pass the distance outside their success radius, so 1 = inside. */
export function shapedReward(d: number, scale = 0.05): number {
  return 1 - Math.tanh(d / scale);
}

/** A uniform draw in [lo, hi). */
export function uniform(rng: Rng, lo: number, hi: number): number {
  return lo + (hi - lo) * rng.uniform();
}

/** The parts of `obs` a selection keeps (images: every `observation.images.*` key). */
export function selectObservation(obs: Observation, parts: readonly ObsPart[]): Observation {
  const out: Observation = {};
  for (const [k, v] of Object.entries(obs)) {
    const part: ObsPart | undefined =
      k === "observation.state"
        ? "state"
        : k === "observation.environment_state"
          ? "env"
          : k.startsWith("observation.images.")
            ? "camera"
            : undefined;
    if (part && parts.includes(part)) out[k] = v;
  }
  return out;
}
