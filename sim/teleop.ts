/**
 * A scripted teleoperator over ROS, for recording round trips without a person (`sim teleop`): the
 * simulated arm is the follower (a {@link RosRobotNode}: it publishes its joint states and feature
 * topics and executes the commands on its command topic, as `sim robot` does), and the task's
 * scripted expert plays the person at a leader arm. Every control step it reads the scene (as a
 * person watches the robot), publishes the leader's `sensor_msgs/JointState` on the profile's
 * `recording.action.topic`, and commands the follower to the leader's pose on the command topic,
 * the way a leader-follower teleop (ALOHA, SO-100) does. Episode k resets the scene with
 * `seed + k` and is framed by `start` and `stop` (or `discard` for a failed one) on the recording
 * control topic; `quit` follows the last one.
 */
import { Ros, Topic } from "roslib";
import type { ITransportFactory } from "roslib";
import type { RobotProfile } from "../bridge/profile.ts";
import { RosRobotNode } from "../bridge/ros/robot-node.ts";
import { MSG, float64MultiArray, jointTrajectory, zeroHeader } from "../bridge/ros/protocol.ts";
import { createExpert, type Expert } from "./experts/index.ts";
import { simTask, taskPlant } from "./run.ts";
import type { TaskName } from "./tasks/index.ts";

/** Options of {@link runTeleop}. */
export interface TeleopOptions {
  task: TaskName;
  profile: RobotProfile;
  profilePath: string;
  /** rosbridge URL. */
  url: string;
  episodes: number;
  /** Episode k uses scene seed `seed + k`. */
  seed: number;
  /** Seconds the arm rests at its reset pose before `start` (default 0.3). */
  settleS?: number;
  /** Seconds after `stop` before the next reset, so the recorder takes the last frames (default max_age_s + 0.3). */
  tailS?: number;
  /** Send `stop` (keep) for failed episodes too; default `discard`. */
  keepFailures?: boolean;
  /** Send `quit` after the last episode (default true). */
  quit?: boolean;
  transportFactory?: ITransportFactory;
  /** Reports each episode's end. */
  onEpisode?: (e: { episode: number; seed: number; success: boolean; steps: number }) => void;
}

/** What {@link runTeleop} did. */
export interface TeleopResult {
  task: TaskName;
  episodes: number;
  successes: number;
  /** Per episode: seed, success, steps. */
  runs: { seed: number; success: boolean; steps: number }[];
  seconds: number;
  follower: ReturnType<RosRobotNode["stats"]>;
}

/** Runs the teleoperated episodes (real time); see the module comment. */
export async function runTeleop(o: TeleopOptions): Promise<TeleopResult> {
  const p = o.profile;
  const action = p.recording?.action;
  if (action?.source !== "leader")
    throw new Error(
      `${o.profilePath}: sim teleop plays a leader arm; the profile's recording.action must be {"source": "leader", "topic": ...}`,
    );
  if (!Number.isInteger(o.episodes) || o.episodes < 1)
    throw new RangeError(`sim teleop: episodes must be a positive integer, got ${o.episodes}`);
  const task = await simTask(o.task, p, o.profilePath, o.seed);
  const dt = 1 / p.control_rate_hz;
  const settle = Math.round((o.settleS ?? 0.3) / dt);
  const maxAge = p.recording?.max_age_s ?? 1.5 / (p.recording?.fps ?? 30);
  const tail = Math.round((o.tailS ?? maxAge + 0.3) / dt);
  const ros = new Ros(o.transportFactory ? { transportFactory: o.transportFactory } : {});
  ros.on("error", () => {});
  const t0 = performance.now();
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`sim teleop: no connection to ${o.url} within 10 s`)), 10_000);
      ros.once("connection", () => {
        clearTimeout(timer);
        resolve();
      });
      ros.connect(o.url).catch(() => {});
    });
    const leader = new Topic<Record<string, unknown>>({ ros, name: action.topic, messageType: MSG.jointState });
    const command = new Topic<Record<string, unknown>>({
      ros,
      name: p.ros.command,
      messageType: p.command_interface === "trajectory" ? MSG.jointTrajectory : MSG.float64MultiArray,
    });
    const control = new Topic<Record<string, unknown>>({
      ros,
      name: p.recording?.control_topic ?? "/actionflow/record",
      messageType: "std_msgs/String",
    });
    const pose = (q: ArrayLike<number>): void => {
      leader.publish({
        header: zeroHeader(p.ros.version),
        name: [...p.joints],
        position: Array.from(q),
        velocity: [],
        effort: [],
      });
      command.publish(
        p.command_interface === "trajectory" ? jointTrajectory(p.ros.version, p.joints, [q], dt) : float64MultiArray(q),
      );
    };
    const runs: TeleopResult["runs"] = [];
    const plant = taskPlant(task, p);
    let node: RosRobotNode | undefined;
    const finished = new Promise<void>((resolve, reject) => {
      let k = 0;
      let phase: "settle" | "run" | "tail" = "settle";
      let ticks = 0;
      let steps = 0;
      let expert: Expert | undefined;
      let hold: Float32Array = Float32Array.from(task.env.jointPositions());
      const onStep = (): void => {
        try {
          ticks++;
          if (phase === "settle") {
            pose(hold);
            if (ticks >= settle) {
              control.publish({ data: "start" });
              expert = createExpert(task);
              phase = "run";
              ticks = 0;
              steps = 0;
            }
            return;
          }
          if (phase === "run") {
            if (!task.done && steps < task.info.maxSteps) {
              const a = expert!.act();
              pose(a);
              hold = a;
              steps++;
              return;
            }
            const success = task.success;
            control.publish({ data: success || o.keepFailures ? "stop" : "discard" });
            runs.push({ seed: o.seed + k, success, steps });
            o.onEpisode?.({ episode: k, seed: o.seed + k, success, steps });
            expert?.dispose();
            expert = undefined;
            phase = "tail";
            ticks = 0;
            return;
          }
          pose(hold);
          if (ticks < tail) return;
          k++;
          if (k >= o.episodes) {
            if (o.quit ?? true) control.publish({ data: "quit" });
            return resolve();
          }
          task.reset(o.seed + k);
          hold = Float32Array.from(task.env.jointPositions());
          node!.holdAt(hold);
          phase = "settle";
          ticks = 0;
        } catch (err) {
          reject(err as Error);
        }
      };
      node = new RosRobotNode({
        url: o.url,
        profile: p,
        plant,
        onStep,
        ...(o.transportFactory ? { transportFactory: o.transportFactory } : {}),
      });
      node.start();
    });
    try {
      await finished;
    } finally {
      // let the last messages leave before the connections close
      await new Promise((r) => setTimeout(r, 200));
    }
    const follower = node!.stop();
    return {
      task: o.task,
      episodes: runs.length,
      successes: runs.filter((r) => r.success).length,
      runs,
      seconds: (performance.now() - t0) / 1000,
      follower,
    };
  } finally {
    ros.close();
    task.dispose();
  }
}
