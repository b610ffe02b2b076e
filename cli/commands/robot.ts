/**
 * `actionflow sim robot`: the simulator plays a ROS robot. It connects to a rosbridge, publishes the
 * task's joint states and environment state on the profile's topics, and executes the commands it
 * receives in real time (trajectories interpolated as joint_trajectory_controller does), through the
 * same topics and messages a real robot uses.
 */
import type { Command } from "commander";
import { loadRobotProfile } from "../../bridge/profile.ts";
import type { Plant } from "../../bridge/plant.ts";
import { RosRobotNode } from "../../bridge/ros/robot-node.ts";
import { createTask, parseTaskName, TASK_NAMES } from "../../sim/tasks/index.ts";
import { log, printResult } from "../output.ts";

/** Registers `sim robot` under the existing `sim` command (call after `registerSim`). */
export function registerSimRobot(program: Command): void {
  const sim = program.commands.find((c) => c.name() === "sim");
  if (!sim) throw new Error("registerSimRobot: register the `sim` command first");
  sim
    .command("robot")
    .description("the simulator as a ROS robot over rosbridge: publishes joint states, executes commands in real time")
    .requiredOption("--task <name>", `task: ${TASK_NAMES.join(", ")}`)
    .requiredOption("--ros <url>", "rosbridge URL, e.g. ws://127.0.0.1:9090")
    .requiredOption("--robot <profile>", "robot profile JSON (e.g. examples/robots/sim-arm.json)")
    .option("--seed <n>", "episode seed", "0")
    .option("--seconds <s>", "run this long, then print the result (default: until SIGINT/SIGTERM)")
    .option("--json", "print one JSON object as the last stdout line")
    .action(async (o: { task: string; ros: string; robot: string; seed: string; seconds?: string; json?: boolean }) => {
      const taskName = parseTaskName(o.task);
      const seed = Number(o.seed);
      if (!Number.isInteger(seed) || seed < 0)
        throw new Error(`--seed: expected a non-negative integer, got ${o.seed}`);
      const seconds = o.seconds === undefined ? undefined : Number(o.seconds);
      if (seconds !== undefined && !(seconds > 0))
        throw new Error(`--seconds: expected a positive number, got ${o.seconds}`);
      const profile = await loadRobotProfile(o.robot);
      const task = await createTask(taskName, { fps: profile.control_rate_hz });
      try {
        if (task.env.scene.joints.join(",") !== profile.joints.join(","))
          throw new Error(
            `${o.robot}: joints (${profile.joints.join(", ")}) differ from the simulator's (${task.env.scene.joints.join(", ")})`,
          );
        task.reset(seed);
        const plant: Plant = {
          dtS: 1 / profile.control_rate_hz,
          positions: () => task.env.jointPositions(),
          features: () => {
            const out: Record<string, ArrayLike<number>> = {};
            const env = task.observe()["observation.environment_state"];
            if (env) out["observation.environment_state"] = env;
            return out;
          },
          step: (targets) => task.step(targets),
        };
        const node = new RosRobotNode({ url: o.ros, profile, plant });
        const t0 = performance.now();
        node.start();
        log(`sim robot: ${taskName} (seed ${seed}) on ${o.ros} as '${profile.name}' at ${profile.control_rate_hz} Hz`);
        await new Promise<void>((resolve) => {
          const done = (): void => {
            process.off("SIGINT", done);
            process.off("SIGTERM", done);
            clearTimeout(timer);
            resolve();
          };
          const timer = seconds !== undefined ? setTimeout(done, seconds * 1000) : undefined;
          process.on("SIGINT", done);
          process.on("SIGTERM", done);
        });
        const st = node.stop();
        printResult(
          {
            task: taskName,
            seed,
            seconds: (performance.now() - t0) / 1000,
            success: task.success,
            reward: task.reward(),
            ...st,
          },
          { json: o.json ?? false },
        );
      } finally {
        task.dispose();
      }
    });
}
