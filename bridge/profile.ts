/**
 * Robot profiles: the JSON file that tells the bridge how to drive one robot (joint names in action
 * order, ROS topics and versions, the command interface, the control rate, joint limits in
 * ros2_control's `joint_limits` schema, the watchdog and the observation feature topics).
 *
 * A profile is validated on load; every error names the file and the field, e.g.
 * `robot.json: joint_limits.shoulder_pan.max_velocity: expected a positive number`.
 */
import { readJsonFile } from "../policy/io/json.ts";
import { z } from "zod";

const positive = (): z.ZodNumber =>
  z.number({ error: "expected a positive number" }).positive({ error: "expected a positive number" });
const finite = (): z.ZodNumber =>
  z.number({ error: "expected a finite number" }).finite({ error: "expected a finite number" });
const flag = (): z.ZodOptional<z.ZodBoolean> => z.boolean({ error: "expected true or false" }).optional();
const topic = (): z.ZodString =>
  z
    .string({ error: "expected a topic name" })
    .regex(/^\/?[A-Za-z_~][A-Za-z0-9_/~]*$/, { error: "expected a ROS topic name like /joint_states" });

/**
 * One joint's limits, ros2_control's `joint_limits.<joint>` schema
 * (`joint_limits/joint_limits_rosparam.hpp`). A value without its `has_*` flag set is ignored.
 * Positions in radians (metres for prismatic joints), velocities per second, accelerations per
 * second squared.
 */
const JointLimitsSchema = z.strictObject(
  {
    has_position_limits: flag(),
    min_position: finite().optional(),
    max_position: finite().optional(),
    has_velocity_limits: flag(),
    max_velocity: positive().optional(),
    has_acceleration_limits: flag(),
    max_acceleration: positive().optional(),
    has_deceleration_limits: flag(),
    max_deceleration: positive().optional(),
    has_jerk_limits: flag(),
    max_jerk: positive().optional(),
    has_effort_limits: flag(),
    max_effort: positive().optional(),
    angle_wraparound: flag(),
    has_soft_limits: flag(),
    k_position: finite().optional(),
    k_velocity: finite().optional(),
    soft_lower_limit: finite().optional(),
    soft_upper_limit: finite().optional(),
  },
  {
    error: (iss) =>
      iss.code === "unrecognized_keys" ? `unknown field(s) ${iss.keys.join(", ")}` : "expected an object",
  },
);

const FeatureTopicSchema = z.strictObject({
  /** `std_msgs/Float32MultiArray` topic carrying the feature. */
  topic: topic(),
  /** The policy's observation key the topic feeds, e.g. `observation.environment_state`. */
  feature: z.string({ error: "expected a feature name" }).min(1, { error: "expected a feature name" }),
  /** Values per message; a message of another length is rejected. */
  size: z
    .number({ error: "expected a positive integer" })
    .int({ error: "expected a positive integer" })
    .positive({ error: "expected a positive integer" }),
  /** A message older than this (seconds) is stale: no inference is run on it. */
  stale_after_s: positive(),
});

const evenPixels = (what: string) =>
  z
    .number({ error: `expected an even positive integer (${what})` })
    .int({ error: `expected an even positive integer (${what})` })
    .positive({ error: `expected an even positive integer (${what})` })
    .refine((n) => n % 2 === 0, { error: `expected an even positive integer (${what}; video needs even sizes)` });

/**
 * A camera topic: `sensor_msgs/Image` (`transport: "raw"`, the default) or
 * `sensor_msgs/CompressedImage` (`"compressed"`: JPEG or PNG, as image_transport's `compressed`
 * plugin publishes on `<camera>/compressed`), recorded as a video feature and, at run time, fed
 * to a policy that takes the feature.
 */
const CameraTopicSchema = z.strictObject({
  topic: topic(),
  feature: z
    .string({ error: "expected a feature name like observation.images.front" })
    .regex(/^observation\.images\.[A-Za-z0-9_]+$/, { error: "expected a feature name like observation.images.front" }),
  width: evenPixels("pixels"),
  height: evenPixels("pixels"),
  transport: z.enum(["raw", "compressed"], { error: 'expected "raw" or "compressed"' }).default("raw"),
  /**
   * At run time, an image older than this (seconds) is stale: no inference is run on it (as a
   * feature past `stale_after_s`). Required for a camera a policy takes.
   */
  max_age_s: positive().optional(),
});

/**
 * Where a recorded frame's action comes from: a leader arm's `sensor_msgs/JointState` (`leader`), the
 * commands on the profile's command topic (`command`: a JointTrajectory is read at the frame's time,
 * a Float64MultiArray as sent), or the follower's own next joint state (`next_state`).
 */
const ActionSourceSchema = z.discriminatedUnion(
  "source",
  [
    z.strictObject({ source: z.literal("leader"), topic: topic() }),
    z.strictObject({ source: z.literal("command") }),
    z.strictObject({ source: z.literal("next_state") }),
  ],
  { error: 'expected {"source": "leader", "topic": ...}, {"source": "command"} or {"source": "next_state"}' },
);

/** How `record` and `dataset convert` turn the robot's topics into LeRobot frames. */
const RecordingSchema = z.strictObject({
  /** Frame rate of the dataset, Hz: messages are aligned onto this grid by their header stamps. */
  fps: positive().default(30),
  action: ActionSourceSchema,
  /** The dataset's action feature; default `action`. */
  action_feature: z.string({ error: "expected a feature name" }).min(1).default("action"),
  /**
   * A frame takes each topic's latest message stamped at or before the frame's time, if it is at
   * most this many seconds old; otherwise the topic is late and the frame is not written (reported,
   * never filled). Default 1.5 frame periods.
   */
  max_age_s: positive().optional(),
  /** `std_msgs/String` topic of episode commands (`start`, `stop`, `keep`, `discard`, `quit`). */
  control_topic: topic().default("/actionflow/record"),
  /** The task string of recorded episodes when none is given on the command line. */
  task: z.string({ error: "expected a string" }).min(1).optional(),
});

/** The recording section of a profile, with defaults applied. */
export type RecordingProfile = z.output<typeof RecordingSchema>;

/** The profile schema (snake_case, as ros2_control's YAML). */
export const RobotProfileSchema = z
  .strictObject({
    /** A name for logs and diagnostics. */
    name: z.string({ error: "expected a string" }).min(1, { error: "expected a non-empty string" }),
    /** Joint names in action (and state) order. */
    joints: z
      .array(z.string({ error: "expected a joint name" }).min(1, { error: "expected a joint name" }), {
        error: "expected an array of joint names",
      })
      .min(1, { error: "expected at least one joint" }),
    ros: z.strictObject({
      /** ROS 1 or ROS 2: selects type names and time formats (`{secs,nsecs}` or `{sec,nanosec}`). */
      version: z.union([z.literal(1), z.literal(2)], { error: "expected 1 or 2" }),
      /** `sensor_msgs/JointState` topic. */
      joint_states: topic(),
      /** Command topic: a joint_trajectory_controller's `~/joint_trajectory` or a forward controller's `~/commands`. */
      command: topic(),
      /** `diagnostic_msgs/DiagnosticArray` topic; default `/diagnostics`. */
      diagnostics: topic().default("/diagnostics"),
      /** Optional `std_msgs/Bool` e-stop topic: `true` latches the e-stop. */
      estop: topic().optional(),
      /**
       * Optional `std_msgs/Bool` intervention topic: while `true` a person has the robot; the loop
       * stops commanding (one hold message), logs the person's commands from the command topic, and
       * ramps back in from the measured position when it turns `false`.
       */
      intervention: topic().optional(),
      /**
       * Optional `std_msgs/String` prompt topic: each message sets the task prompt of a
       * prompt-conditioned policy from its next chunk on (an unknown prompt is refused, naming the
       * known ones, and the current one stays).
       */
      prompt: topic().optional(),
    }),
    /**
     * `trajectory`: joint_trajectory_controller, `trajectory_msgs/JointTrajectory`;
     * `forward`: forward_position_controller, `std_msgs/Float64MultiArray`.
     */
    command_interface: z.enum(["trajectory", "forward"], { error: 'expected "trajectory" or "forward"' }),
    /** Control loop rate, Hz. */
    control_rate_hz: z
      .number({ error: "expected a number of Hz in [30, 500]" })
      .min(30, { error: "expected a number of Hz in [30, 500]" })
      .max(500, { error: "expected a number of Hz in [30, 500]" }),
    /** Per-joint limits (ros2_control schema); a joint without an entry is unlimited. */
    joint_limits: z.record(z.string(), JointLimitsSchema).default({}),
    /** LeRobot's per-step clamp against the measured position: one value for all joints or one per joint. */
    max_relative_target: z
      .union([positive(), z.record(z.string(), positive())], {
        error: "expected a positive number or an object of positive numbers per joint",
      })
      .optional(),
    /** No fresh joint state within this many seconds: stop commanding and hold. */
    watchdog_timeout_s: positive(),
    /** Seconds over which the first command after a (re)start blends from the measured position; default 0.5. */
    ramp_s: z
      .number({ error: "expected a non-negative number" })
      .nonnegative({ error: "expected a non-negative number" })
      .default(0.5),
    /**
     * `rtc`: an inference slower than the policy can be given as a prefix (d > `rtcMaxDelay`, or
     * 2d > horizon) is an overrun; this many in a row stop the loop (e-stop, an error); default 3.
     */
    rtc_max_consecutive_overruns: z
      .number({ error: "expected a positive integer" })
      .int({ error: "expected a positive integer" })
      .positive({ error: "expected a positive integer" })
      .default(3),
    /** `rtc`: an inference still running after this many seconds stops the loop (e-stop, an error); default 3. */
    rtc_overrun_timeout_s: positive().default(3),
    /** The policy's observation key the measured joint positions feed; default `observation.state`. */
    state_feature: z.string({ error: "expected a feature name" }).min(1).default("observation.state"),
    /** Other observation features, each from its own `std_msgs/Float32MultiArray` topic. */
    features: z.array(FeatureTopicSchema, { error: "expected an array" }).default([]),
    /**
     * Cameras, each a `sensor_msgs/Image` topic (rgb8, bgr8, rgba8, bgra8 or mono8) or a
     * `sensor_msgs/CompressedImage` topic (jpeg, png) recorded as the video feature `feature`
     * (`observation.images.<name>`) at `width` x `height` (images of another size are resized);
     * `sim robot` renders and publishes them. At run time a policy that takes the feature gets the
     * newest image, resized the same way to the policy's size, if it is at most `max_age_s` old.
     */
    cameras: z.array(CameraTopicSchema, { error: "expected an array" }).default([]),
    /** How to record demonstrations and convert bags and run logs into datasets; optional. */
    recording: RecordingSchema.optional(),
  })
  .superRefine((p, ctx) => {
    const seen = new Set<string>();
    p.joints.forEach((j, i) => {
      if (seen.has(j)) ctx.addIssue({ code: "custom", path: ["joints", i], message: `duplicate joint '${j}'` });
      seen.add(j);
    });
    for (const [joint, lim] of Object.entries(p.joint_limits)) {
      if (!seen.has(joint))
        ctx.addIssue({
          code: "custom",
          path: ["joint_limits", joint],
          message: `'${joint}' is not in joints (${p.joints.join(", ")})`,
        });
      const need = (has: boolean | undefined, field: keyof typeof lim): void => {
        if (has && lim[field] === undefined)
          ctx.addIssue({
            code: "custom",
            path: ["joint_limits", joint, field],
            message: `required when its has_* flag is true`,
          });
      };
      need(lim.has_position_limits, "min_position");
      need(lim.has_position_limits, "max_position");
      need(lim.has_velocity_limits, "max_velocity");
      need(lim.has_acceleration_limits, "max_acceleration");
      need(lim.has_deceleration_limits, "max_deceleration");
      need(lim.has_jerk_limits, "max_jerk");
      need(lim.has_effort_limits, "max_effort");
      if (
        lim.has_position_limits &&
        lim.min_position !== undefined &&
        lim.max_position !== undefined &&
        !(lim.min_position < lim.max_position)
      )
        ctx.addIssue({
          code: "custom",
          path: ["joint_limits", joint, "max_position"],
          message: `expected max_position > min_position (${lim.max_position} <= ${lim.min_position})`,
        });
    }
    const mrt = p.max_relative_target;
    if (mrt !== undefined && typeof mrt === "object") {
      for (const joint of Object.keys(mrt))
        if (!seen.has(joint))
          ctx.addIssue({
            code: "custom",
            path: ["max_relative_target", joint],
            message: `'${joint}' is not in joints`,
          });
    }
    const keys = new Set<string>([p.state_feature]);
    p.features.forEach((f, i) => {
      if (keys.has(f.feature))
        ctx.addIssue({ code: "custom", path: ["features", i, "feature"], message: `duplicate feature '${f.feature}'` });
      keys.add(f.feature);
    });
    p.cameras.forEach((c, i) => {
      if (keys.has(c.feature))
        ctx.addIssue({ code: "custom", path: ["cameras", i, "feature"], message: `duplicate feature '${c.feature}'` });
      keys.add(c.feature);
    });
  });

/** A validated robot profile (snake_case fields as in the JSON file). */
export type RobotProfile = z.output<typeof RobotProfileSchema>;

/**
 * One joint's effective limits, with every value whose `has_*` flag is unset removed. Units: radians
 * (metres), per second, per second squared; `maxRelativeTarget` per control step.
 */
export interface EffectiveJointLimits {
  /** Joint name. */
  readonly name: string;
  readonly minPosition?: number;
  readonly maxPosition?: number;
  readonly maxVelocity?: number;
  readonly maxAcceleration?: number;
  /** Used instead of `maxAcceleration` while the change of velocity opposes the velocity (slowing down). */
  readonly maxDeceleration?: number;
  /** Largest change of acceleration per second, per second cubed. */
  readonly maxJerk?: number;
  readonly maxRelativeTarget?: number;
}

/**
 * Validates a parsed profile; throws an `Error` listing every problem as `<source>: <field path>: <message>`.
 * `source` names the file (or other origin) in the messages.
 */
export function parseRobotProfile(value: unknown, source: string): RobotProfile {
  const res = RobotProfileSchema.safeParse(value);
  if (res.success) return res.data;
  const lines = res.error.issues.map(
    (iss) => `${source}: ${iss.path.length > 0 ? iss.path.join(".") : "(root)"}: ${iss.message}`,
  );
  throw new Error(lines.join("\n"));
}

/** `profile` with its intervention topic set to `topic` (the `--intervention-topic` flag), checked. */
export function withInterventionTopic(profile: RobotProfile, topic: string | undefined): RobotProfile {
  if (topic === undefined) return profile;
  checkTopic("--intervention-topic", topic, "/teleop/active");
  return { ...profile, ros: { ...profile.ros, intervention: topic } };
}

/** `profile` with its prompt topic set to `topic` (the `--prompt-topic` flag), checked. */
export function withPromptTopic(profile: RobotProfile, topic: string | undefined): RobotProfile {
  if (topic === undefined) return profile;
  checkTopic("--prompt-topic", topic, "/task/prompt");
  return { ...profile, ros: { ...profile.ros, prompt: topic } };
}

function checkTopic(flag: string, topic: string, example: string): void {
  if (!/^\/?[A-Za-z_~][A-Za-z0-9_/~]*$/.test(topic))
    throw new Error(`${flag}: expected a ROS topic name like ${example}, got '${topic}'`);
}

/**
 * Reads and validates a robot profile JSON file; errors name the file and the field. Each of
 * {@link profileWarnings} goes to `warn` (default: a `warning:` line on stderr).
 */
export async function loadRobotProfile(
  path: string,
  opts: { warn?: (message: string) => void } = {},
): Promise<RobotProfile> {
  const profile = parseRobotProfile(await readJsonFile(path, z.unknown(), { missing: "the robot profile" }), path);
  const warn = opts.warn ?? ((m: string): void => void process.stderr.write(`warning: ${m}\n`));
  for (const w of profileWarnings(profile, path)) warn(w);
  return profile;
}

/**
 * What a valid profile asks for that the bridge cannot do: an effort limit (`has_effort_limits`)
 * cannot be enforced on position commands, since the bridge sends positions and never sees a torque;
 * the robot's own controller or drive must enforce it. One message per joint, naming the source and field.
 */
export function profileWarnings(profile: RobotProfile, source: string): string[] {
  const out: string[] = [];
  for (const joint of profile.joints) {
    const l = profile.joint_limits[joint];
    if (l?.has_effort_limits)
      out.push(
        `${source}: joint_limits.${joint}.has_effort_limits: max_effort ${l.max_effort} is not enforced: the bridge sends position commands and cannot limit effort (set it in the robot's controller or drive)`,
      );
  }
  return out;
}

/** The limits the safety layer enforces, in action order; a value without its `has_*` flag is dropped. */
export function effectiveLimits(profile: RobotProfile): EffectiveJointLimits[] {
  const mrt = profile.max_relative_target;
  return profile.joints.map((name) => {
    const l = profile.joint_limits[name] ?? {};
    const rel = mrt === undefined ? undefined : typeof mrt === "number" ? mrt : mrt[name];
    return {
      name,
      ...(l.has_position_limits ? { minPosition: l.min_position, maxPosition: l.max_position } : {}),
      ...(l.has_velocity_limits ? { maxVelocity: l.max_velocity } : {}),
      ...(l.has_acceleration_limits ? { maxAcceleration: l.max_acceleration } : {}),
      ...(l.has_deceleration_limits ? { maxDeceleration: l.max_deceleration } : {}),
      ...(l.has_jerk_limits ? { maxJerk: l.max_jerk } : {}),
      ...(rel !== undefined ? { maxRelativeTarget: rel } : {}),
    };
  });
}

/** A feature as a policy (or a simulated task) declares it: its observation key and its shape. */
export interface DeclaredFeature {
  key: string;
  /** Shape of one sample; its product is the message size. */
  rawShape: readonly number[];
}

/**
 * Refuses a profile whose feature sizes differ from what `declared` (a policy's metadata, a task's
 * observation) expects: throws an `Error` naming the profile file, the feature, the profile's size
 * and the declared one. Features the other side does not declare are not checked.
 */
export function checkFeatureSizes(
  profile: RobotProfile,
  source: string,
  declared: readonly DeclaredFeature[],
  what: string,
): void {
  const sizes = new Map(declared.map((f) => [f.key, f.rawShape.reduce((a, b) => a * b, 1)]));
  const problems: string[] = [];
  profile.features.forEach((f, i) => {
    const n = sizes.get(f.feature);
    if (n !== undefined && n !== f.size)
      problems.push(
        `${source}: features.${i}.size: feature ${f.feature} has size ${f.size} in the profile, ${n} in ${what}`,
      );
  });
  const state = sizes.get(profile.state_feature);
  if (state !== undefined && state !== profile.joints.length)
    problems.push(
      `${source}: state_feature: ${profile.state_feature} has ${profile.joints.length} joints in the profile, size ${state} in ${what}`,
    );
  if (problems.length > 0) throw new Error(problems.join("\n"));
}
