/**
 * `actionflow sim robot`: the simulator plays a ROS robot. It connects to a rosbridge, publishes the
 * task's joint states and environment state on the profile's topics, and executes the commands it
 * receives in real time (trajectories interpolated as joint_trajectory_controller does), through the
 * same topics and messages a real robot uses.
 *
 * `actionflow sim run`: both sides in one process, in real time: the control loop drives the
 * simulated robot directly (`--via direct`), through a rosbridge (`--via ros`, the two sides
 * connecting as two ROS clients would), or with the policy behind a policy server (`--via zmq` or
 * `--via openpi`: a server started in-process on 127.0.0.1, or `--server <url>`; `--via kserve
 * --server <url> [--model <name>]`: a KServe v2 / Triton server). ONNX policies run
 * in a worker thread: inference never blocks the loop. The pipeline is `sim/run.ts`'s {@link runSim}.
 */
import type { Command } from "commander";
import { RosRobotNode } from "../../bridge/ros/robot-node.ts";
import { loadRobotProfile } from "../../bridge/profile.ts";
import { runSim, SIM_RUN_VIAS, simTask, taskPlant } from "../../sim/run.ts";
import type { SimRunOptions } from "../../sim/run.ts";
import type { TaskName } from "../../sim/tasks/index.ts";
import { TASK_NAMES } from "../../sim/tasks/index.ts";
import {
  choiceOption,
  nonNegativeInt,
  option,
  positiveFloat,
  positiveInt,
  providerOption,
  realtimePriorityOption,
} from "../args.ts";
import { addMergeOptions } from "../merge-options.ts";
import { log, printResult } from "../output.ts";

/** Registers `sim robot` and `sim run` under the existing `sim` command (call after `registerSim`). */
export function registerSimRobot(program: Command): void {
  const sim = program.commands.find((c) => c.name() === "sim");
  if (!sim) throw new Error("registerSimRobot: register the `sim` command first");
  sim
    .command("robot")
    .description("the simulator as a ROS robot over rosbridge: publishes joint states, executes commands in real time")
    .addOption(choiceOption("--task <name>", "task", TASK_NAMES).makeOptionMandatory())
    .requiredOption("--ros <url>", "rosbridge URL, e.g. ws://127.0.0.1:9090")
    .requiredOption("--robot <profile>", "robot profile JSON (e.g. examples/robots/sim-arm.json)")
    .addOption(option("--seed <n>", "episode seed", nonNegativeInt, 0))
    .addOption(
      option("--seconds <s>", "run this long, then print the result (default: until SIGINT/SIGTERM)", positiveFloat),
    )
    .option("--json", "print one JSON object as the last stdout line")
    .action(
      async (o: { task: TaskName; ros: string; robot: string; seed: number; seconds?: number; json?: boolean }) => {
        const { task: taskName, seed, seconds } = o;
        const profile = await loadRobotProfile(o.robot);
        const task = await simTask(taskName, profile, o.robot, seed);
        try {
          const plant = taskPlant(task, profile);
          const node = new RosRobotNode({ url: o.ros, profile, plant });
          const t0 = performance.now();
          node.start();
          log(
            `sim robot: ${taskName} (seed ${seed}) on ${o.ros} as '${profile.name}' at ${profile.control_rate_hz} Hz`,
          );
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
      },
    );

  const run = sim
    .command("run")
    .description(
      "drive the simulated robot in real time with the control loop: directly, through a rosbridge, or with the policy behind a ZeroMQ or openpi server",
    )
    .addOption(choiceOption("--task <name>", "task", TASK_NAMES).makeOptionMandatory())
    .requiredOption("--policy <run>", "a run folder or policy.onnx, or 'expert' for the task's scripted expert")
    .addOption(
      choiceOption(
        "--via <how>",
        "direct (in process), ros (through the rosbridge at --ros), zmq or openpi (the policy behind a server: in-process on 127.0.0.1, or --server), kserve (a KServe v2 / Triton server at --server)",
        SIM_RUN_VIAS,
        "direct",
      ),
    )
    .option("--ros <url>", "rosbridge URL for --via ros, e.g. ws://127.0.0.1:9090")
    .option(
      "--server <url>",
      "--via zmq|openpi: an already running policy server (tcp://host:port or ws://host:port) instead of an in-process one; --via kserve: the server (http://host:8000 or grpc://host:8001)",
    )
    .option("--model <name>", "--via kserve: the model's name in the server's repository (default: policy)")
    .addOption(
      choiceOption("--kserve-protocol <p>", "--via kserve: http or grpc (default: from the URL's scheme)", [
        "http",
        "grpc",
      ]),
    )
    .addOption(
      option("--timeout-ms <ms>", "--via kserve: deadline of one chunk request, ms (default 1000)", positiveInt),
    )
    .option("--api-key-file <file>", "--via openpi --server: the API key to send (else $ACTIONFLOW_API_KEY)")
    .option("--server-key <key-or-file>", "--via zmq --server: the server's CURVE public key (Z85) or its .pub file")
    .option(
      "--client-keys <file>",
      "--via zmq --server: this client's CURVE keypair (a .key file from `actionflow keys --out`)",
    )
    .option(
      "--robot <profile>",
      "robot profile JSON (default: the shipped examples/robots/sim-arm.json for reach, sim-arm-<task>.json for the others)",
    );
  addMergeOptions(run, "blend")
    .addOption(
      choiceOption(
        "--publish <how>",
        "trajectory interface: step (one point per tick) or chunk",
        ["step", "chunk"],
        "step",
      ),
    )
    .addOption(
      option("--seconds <s>", "give up after this long (stops earlier once the task is solved)", positiveFloat, 30),
    )
    .addOption(option("--seed <n>", "episode seed", nonNegativeInt, 0))
    .addOption(option("--horizon <n>", "chunk length of the scripted expert (--policy expert)", positiveInt, 16))
    .addOption(option("--threads <n>", "onnxruntime intra-op threads of the inference worker", positiveInt))
    .addOption(realtimePriorityOption())
    .addOption(providerOption())
    .option("--log <file.mcap>", "write an MCAP run log (joint states, commands, diagnostics, chunks, events)")
    .option(
      "--intervention-topic <topic>",
      "std_msgs/Bool topic: while true a person has the robot (the loop holds, then ramps back in)",
    )
    .option(
      "--prompt <text>",
      "the task prompt: an instructed task (fork-instructed) is told the way it names, a prompt-conditioned policy is given it",
    )
    .option(
      "--prompt-topic <topic>",
      "--via ros: std_msgs/String topic of task prompts; a new one takes effect at the policy's next chunk",
    )
    .option("--json", "print one JSON object as the last stdout line")
    .action(async (o: Omit<SimRunOptions, "log"> & { json?: boolean; log?: string }) => simRun(o));
}

async function simRun(o: Omit<SimRunOptions, "log"> & { json?: boolean; log?: string }): Promise<void> {
  const { log: runLog, ...rest } = o;
  // rejected inputs and a starved loop go to stderr with --json too: stdout keeps the one JSON line
  printResult(await runSim({ ...rest, log, ...(runLog !== undefined ? { runLog } : {}) }), {
    json: o.json ?? false,
  });
}
