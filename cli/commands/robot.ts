/**
 * `actionflow sim robot`: the simulator plays a ROS robot. It connects to a rosbridge, publishes the
 * task's joint states and environment state on the profile's topics, and executes the commands it
 * receives in real time (trajectories interpolated as joint_trajectory_controller does), through the
 * same topics and messages a real robot uses.
 *
 * `actionflow sim run`: both sides in one process, in real time: the control loop drives the
 * simulated robot either directly (`--via direct`) or through a rosbridge (`--via ros`, the two
 * sides connecting as two ROS clients would).
 */
import type { Command } from "commander";
import { driveRobot } from "../../bridge/drive.ts";
import { ControlLoop } from "../../bridge/loop.ts";
import type { LoopStats } from "../../bridge/loop.ts";
import type { ActionMerger } from "../../bridge/merge.ts";
import { LatestMerger, SyncMerger } from "../../bridge/merge.ts";
import type { Plant } from "../../bridge/plant.ts";
import { PlantLink } from "../../bridge/plant-link.ts";
import type { RobotProfile } from "../../bridge/profile.ts";
import { loadRobotProfile } from "../../bridge/profile.ts";
import { RosRobotNode } from "../../bridge/ros/robot-node.ts";
import { realScheduler } from "../../bridge/scheduler.ts";
import { StaleCommandMeter } from "../../bridge/stale-commands.ts";
import type { ChunkPolicy } from "../../policy/chunk-policy.ts";
import { OnnxPolicy } from "../../policy/runtime/onnx-policy.ts";
import { ExpertChunkPolicy } from "../../sim/policy.ts";
import type { Task } from "../../sim/tasks/index.ts";
import { createTask, parseTaskName, TASK_NAMES } from "../../sim/tasks/index.ts";
import { log, printResult } from "../output.ts";

/** The task as a {@link Plant}: joint positions, its environment state, one control step per call. */
function taskPlant(task: Task, profile: RobotProfile): Plant {
  return {
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
}

async function simTask(taskName: string, profile: RobotProfile, profilePath: string, seed: number): Promise<Task> {
  const task = await createTask(parseTaskName(taskName), { fps: profile.control_rate_hz });
  if (task.env.scene.joints.join(",") !== profile.joints.join(",")) {
    task.dispose();
    throw new Error(
      `${profilePath}: joints (${profile.joints.join(", ")}) differ from the simulator's (${task.env.scene.joints.join(", ")})`,
    );
  }
  task.reset(seed);
  return task;
}

function intArg(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${flag}: expected a non-negative integer, got ${v}`);
  return n;
}

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
      const seed = intArg(o.seed, "--seed");
      const seconds = o.seconds === undefined ? undefined : Number(o.seconds);
      if (seconds !== undefined && !(seconds > 0))
        throw new Error(`--seconds: expected a positive number, got ${o.seconds}`);
      const profile = await loadRobotProfile(o.robot);
      const task = await simTask(taskName, profile, o.robot, seed);
      try {
        const plant = taskPlant(task, profile);
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

  sim
    .command("run")
    .description("drive the simulated robot in real time with the control loop, directly or through a rosbridge")
    .requiredOption("--task <name>", `task: ${TASK_NAMES.join(", ")}`)
    .requiredOption("--policy <run>", "a run folder or policy.onnx, or 'expert' for the task's scripted expert")
    .option("--via <how>", "direct (in process) or ros (through the rosbridge at --ros)", "direct")
    .option("--ros <url>", "rosbridge URL for --via ros, e.g. ws://127.0.0.1:9090")
    .option("--robot <profile>", "robot profile JSON", "examples/robots/sim-arm.json")
    .option("--merge <mode>", "chunk merging: sync or latest", "latest")
    .option("--publish <how>", "trajectory interface: step (one point per tick) or chunk", "step")
    .option("--seconds <s>", "give up after this long (stops earlier once the task is solved)", "30")
    .option("--seed <n>", "episode seed", "0")
    .option("--horizon <n>", "chunk length of the scripted expert (--policy expert)", "16")
    .option("--json", "print one JSON object as the last stdout line")
    .action(
      async (o: {
        task: string;
        policy: string;
        via: string;
        ros?: string;
        robot: string;
        merge: string;
        publish: string;
        seconds: string;
        seed: string;
        horizon: string;
        json?: boolean;
      }) => {
        if (o.via !== "direct" && o.via !== "ros") throw new Error(`--via: expected direct or ros, got ${o.via}`);
        if (o.via === "ros" && !o.ros) throw new Error("--via ros needs --ros <url>");
        if (o.merge !== "sync" && o.merge !== "latest")
          throw new Error(`--merge: expected sync or latest, got ${o.merge}`);
        if (o.publish !== "step" && o.publish !== "chunk")
          throw new Error(`--publish: expected step or chunk, got ${o.publish}`);
        const seconds = Number(o.seconds);
        if (!(seconds > 0)) throw new Error(`--seconds: expected a positive number, got ${o.seconds}`);
        const seed = intArg(o.seed, "--seed");
        const profile = await loadRobotProfile(o.robot);
        const task = await simTask(o.task, profile, o.robot, seed);
        let onnx: OnnxPolicy | undefined;
        try {
          let policy: ChunkPolicy;
          if (o.policy === "expert") {
            policy = new ExpertChunkPolicy(task, { horizon: Math.max(1, intArg(o.horizon, "--horizon")) });
          } else {
            const loaded = await OnnxPolicy.load(o.policy, { seed });
            onnx = loaded;
            loaded.reset(seed);
            policy = loaded;
          }
          const merger: ActionMerger =
            o.merge === "sync"
              ? new SyncMerger({ actionDim: policy.actionDim })
              : new LatestMerger({ actionDim: policy.actionDim });
          const publish = o.publish;
          const plant = taskPlant(task, profile);
          const sched = realScheduler();
          let loopStats: LoopStats;
          let staleCommands = 0;
          let robotSide: Record<string, number> = {};
          if (o.via === "direct") {
            const link = new PlantLink({ plant, profile, scheduler: sched });
            link.start();
            const loop = new ControlLoop({ policy, link, profile, scheduler: sched, merger, publish });
            loop.start();
            const t0 = Date.now();
            while (!task.success && Date.now() - t0 < seconds * 1000) await new Promise((r) => setTimeout(r, 50));
            loopStats = loop.stop();
            robotSide = link.stop();
          } else {
            const meter = new StaleCommandMeter();
            const node = new RosRobotNode({
              url: o.ros as string,
              profile,
              plant,
              scheduler: sched,
              onCommand: (msg, info) => meter.received(msg, info.lastConnectAtS),
            });
            node.start();
            const res = await driveRobot({
              onPublish: (msg, cmd) => meter.sent(msg, cmd.sourceAtS),
              url: o.ros as string,
              profile,
              policy,
              merger,
              publish,
              seconds,
              stopWhen: () => task.success,
              scheduler: sched,
              log: o.json ? undefined : log,
            });
            const ns = node.stop();
            loopStats = res.loop;
            staleCommands = meter.stale;
            robotSide = {
              steps: ns.steps,
              commands: ns.commands,
              rejected: ns.rejected,
              connects: ns.connects,
              missedSteps: ns.missedSteps,
              commandsBeforeFirstState: ns.commandsBeforeFirstState,
              unknownCommands: meter.unknown,
            };
          }
          const result = {
            task: task.info.name,
            via: o.via,
            merge: merger.mode,
            seed,
            success: task.success,
            loopHz: loopStats.loopHz,
            jitterP99Ms: loopStats.jitterP99Ms,
            missedDeadlines: loopStats.missedDeadlines,
            inferP50Ms: loopStats.inferP50Ms,
            queueEmptyEvents: loopStats.queueEmptyEvents,
            clamps: loopStats.clamps,
            staleCommands,
            seconds: loopStats.seconds,
            sent: loopStats.sent,
            robot: robotSide,
          };
          printResult(result, { json: o.json ?? false });
        } finally {
          await onnx?.release();
          task.dispose();
        }
      },
    );
}
