/**
 * `actionflow sim robot`: the simulator plays a ROS robot. It connects to a rosbridge, publishes the
 * task's joint states and environment state on the profile's topics, and executes the commands it
 * receives in real time (trajectories interpolated as joint_trajectory_controller does), through the
 * same topics and messages a real robot uses.
 *
 * `actionflow sim run`: both sides in one process, in real time: the control loop drives the
 * simulated robot directly (`--via direct`), through a rosbridge (`--via ros`, the two sides
 * connecting as two ROS clients would), or with the policy behind a policy server (`--via zmq` or
 * `--via openpi`: a server started in-process on 127.0.0.1, or `--server <url>`). ONNX policies run
 * in a worker thread ({@link startLocalPolicy}): inference never blocks the loop.
 */
import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { driveRobot } from "../../bridge/drive.ts";
import { startLocalPolicy, type LocalPolicy } from "../../bridge/local-policy.ts";
import { ControlLoop } from "../../bridge/loop.ts";
import type { LoopStats } from "../../bridge/loop.ts";
import type { LoopMerge } from "../../bridge/merge.ts";
import type { Plant } from "../../bridge/plant.ts";
import { PlantLink } from "../../bridge/plant-link.ts";
import type { RobotProfile } from "../../bridge/profile.ts";
import { loadRobotProfile } from "../../bridge/profile.ts";
import { RosRobotNode } from "../../bridge/ros/robot-node.ts";
import { realScheduler } from "../../bridge/scheduler.ts";
import { OpenpiPolicyServer } from "../../bridge/server/openpi-server.ts";
import { OpenpiChunkPolicy, servedChunkPolicy, ZmqChunkPolicy } from "../../bridge/server/remote-policy.ts";
import type { ServedPolicy } from "../../bridge/server/served-policy.ts";
import { ZmqPolicyServer } from "../../bridge/server/zmq-server.ts";
import { isZ85Key, readCurveKeyPair, type CurveKeyPair } from "../../bridge/server/zap.ts";
import { StaleCommandMeter } from "../../bridge/stale-commands.ts";
import type { Aggregate } from "../../policy/runtime/executor.ts";
import type { ChunkPolicy } from "../../policy/chunk-policy.ts";
import type { FeatureIO } from "../../policy/onnx/graphs.ts";
import { ExpertChunkPolicy } from "../../sim/policy.ts";
import type { Task, TaskName } from "../../sim/tasks/index.ts";
import { createTask, TASK_NAMES } from "../../sim/tasks/index.ts";
import { choiceOption, nonNegativeInt, option, positiveFloat, positiveInt, providerOption } from "../args.ts";
import type { ExecutionProvider } from "../../policy/runtime/providers.ts";
import { addMergeOptions, loopMergeFrom } from "../merge-options.ts";
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

async function simTask(taskName: TaskName, profile: RobotProfile, profilePath: string, seed: number): Promise<Task> {
  const task = await createTask(taskName, { fps: profile.control_rate_hz });
  if (task.env.scene.joints.join(",") !== profile.joints.join(",")) {
    task.dispose();
    throw new Error(
      `${profilePath}: joints (${profile.joints.join(", ")}) differ from the simulator's (${task.env.scene.joints.join(", ")})`,
    );
  }
  task.reset(seed);
  return task;
}

const VIAS = ["direct", "ros", "zmq", "openpi"] as const;

/** The options of {@link runSim} (the `sim run` flags). */
export interface SimRunOptions {
  task: TaskName;
  policy: string;
  via: (typeof VIAS)[number];
  ros?: string;
  server?: string;
  apiKeyFile?: string;
  serverKey?: string;
  clientKeys?: string;
  robot: string;
  merge: LoopMerge["mode"];
  nActionSteps?: number;
  aggregate?: Aggregate;
  prefixSteps?: number;
  publish: "step" | "chunk";
  seconds: number;
  seed: number;
  horizon: number;
  threads?: number;
  provider: ExecutionProvider;
  json?: boolean;
  /** Wraps the policy the loop calls (e.g. to time each chunk request); the demo uses it. */
  wrapPolicy?: (policy: ChunkPolicy) => ChunkPolicy;
}

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
        "direct (in process), ros (through the rosbridge at --ros), zmq or openpi (the policy behind a server: in-process on 127.0.0.1, or --server)",
        VIAS,
        "direct",
      ),
    )
    .option("--ros <url>", "rosbridge URL for --via ros, e.g. ws://127.0.0.1:9090")
    .option(
      "--server <url>",
      "--via zmq|openpi: an already running policy server (tcp://host:port or ws://host:port) instead of an in-process one",
    )
    .option("--api-key-file <file>", "--via openpi --server: the API key to send (else $ACTIONFLOW_API_KEY)")
    .option("--server-key <key-or-file>", "--via zmq --server: the server's CURVE public key (Z85) or its .pub file")
    .option(
      "--client-keys <file>",
      "--via zmq --server: this client's CURVE keypair (a .key file from `actionflow keys --out`)",
    )
    .option("--robot <profile>", "robot profile JSON", "examples/robots/sim-arm.json");
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
    .addOption(providerOption())
    .option("--json", "print one JSON object as the last stdout line")
    .action(async (o: SimRunOptions) => simRun(o));
}

/** CURVE settings of `--server-key` and `--client-keys` (both or neither; only with `--server`). */
async function curveFrom(o: SimRunOptions): Promise<{ serverPublicKey: string; keys: CurveKeyPair } | undefined> {
  if (o.serverKey === undefined && o.clientKeys === undefined) return undefined;
  if (o.serverKey === undefined || o.clientKeys === undefined || o.server === undefined)
    throw new Error("--server-key and --client-keys go together, with --via zmq --server <endpoint>");
  const serverPublicKey = isZ85Key(o.serverKey)
    ? o.serverKey
    : (await readFile(o.serverKey, "utf8").catch(() => "")).trim();
  if (!isZ85Key(serverPublicKey))
    throw new Error(`--server-key ${o.serverKey}: neither a 40-character Z85 key nor a file holding one`);
  const keys = await readCurveKeyPair(o.clientKeys);
  return { serverPublicKey, keys };
}

/** The features the expert announces when served: the task's observation, as the profile maps it. */
function taskFeatures(task: Task): FeatureIO[] {
  return Object.entries(task.observe()).map(([key, v]) => {
    const n = (v as ArrayLike<number>).length;
    return { name: key.split(".").pop() ?? key, key, shape: [n], rawShape: [n] };
  });
}

async function simRun(o: SimRunOptions): Promise<void> {
  printResult(await runSim(o), { json: o.json ?? false });
}

/** What {@link runSim} measured (`sim run --json` prints it). */
export type SimRunResult = Awaited<ReturnType<typeof runSim>>;

/**
 * Runs `sim run`: the control loop drives the simulated robot in real time until the task is solved
 * or `seconds` pass, and returns the loop's figures (rate, jitter, inference latency, clamps).
 */
export async function runSim(o: SimRunOptions) {
  if (o.via === "ros" && !o.ros) throw new Error("--via ros needs --ros <url>");
  if (o.server !== undefined && o.via !== "zmq" && o.via !== "openpi")
    throw new Error(`--server applies to --via zmq or openpi, not ${o.via}`);
  if (o.via === "openpi" && o.merge === "rtc")
    throw new Error("--via openpi cannot run --merge rtc: the openpi protocol carries no prefix (use --via zmq)");
  const { seed, seconds, publish } = o;
  const merge = loopMergeFrom(o);
  const profile = await loadRobotProfile(o.robot);
  const task = await simTask(o.task, profile, o.robot, seed);
  const closers: Array<() => Promise<void> | void> = [];
  try {
    // the policy as it exists in this process (absent with --server)
    let local: ChunkPolicy | undefined;
    let served: ServedPolicy | undefined;
    if (o.server === undefined) {
      if (o.policy === "expert") {
        const expert = new ExpertChunkPolicy(task, { horizon: o.horizon });
        closers.push(() => expert.dispose());
        local = expert;
        served = servedChunkPolicy(expert, { features: taskFeatures(task), solver: "expert" });
      } else {
        const lp: LocalPolicy = await startLocalPolicy(o.policy, {
          seed,
          executionProviders: [o.provider],
          ...(o.threads !== undefined ? { threads: o.threads } : {}),
        });
        closers.push(() => lp.close());
        lp.reset(seed);
        local = served = lp;
      }
    }
    let policy: ChunkPolicy;
    let server: string | null = null;
    if (o.via === "zmq") {
      let endpoint = o.server;
      if (endpoint === undefined) {
        const s = await ZmqPolicyServer.start({
          policy: served as ServedPolicy,
          endpoint: "tcp://127.0.0.1:0",
          auth: { mode: "insecure" },
        });
        closers.push(() => s.close());
        endpoint = s.endpoint;
      }
      const curve = await curveFrom(o);
      const remote = await ZmqChunkPolicy.connect({ endpoint, ...(curve ? { curve } : {}) });
      closers.push(() => remote.close());
      server = endpoint;
      policy = remote;
    } else if (o.via === "openpi") {
      let url = o.server;
      if (url === undefined) {
        const s = await OpenpiPolicyServer.start({
          policy: served as ServedPolicy,
          url: "ws://127.0.0.1:0",
          auth: { mode: "insecure" },
        });
        closers.push(() => s.close());
        url = s.url;
      }
      const apiKey =
        o.server === undefined
          ? undefined
          : o.apiKeyFile !== undefined
            ? (await readFile(o.apiKeyFile, "utf8")).trim()
            : process.env["ACTIONFLOW_API_KEY"]?.trim() || undefined;
      const remote = await OpenpiChunkPolicy.connect({ url, ...(apiKey !== undefined ? { apiKey } : {}) });
      closers.push(() => remote.close());
      server = url;
      policy = remote;
    } else policy = local as ChunkPolicy;
    if (o.wrapPolicy) policy = o.wrapPolicy(policy);

    const plant = taskPlant(task, profile);
    const sched = realScheduler();
    let loopStats: LoopStats;
    let staleCommands = 0;
    let robotSide: Record<string, number> = {};
    if (o.via !== "ros") {
      const link = new PlantLink({ plant, profile, scheduler: sched });
      link.start();
      const loop = new ControlLoop({
        policy,
        link,
        profile,
        scheduler: sched,
        merge,
        publish,
        ...(o.json ? {} : { onEvent: (e) => e.kind !== "hold" && log(`loop: ${JSON.stringify(e)}`) }),
      });
      loop.start();
      const t0 = Date.now();
      while (!task.success && Date.now() - t0 < seconds * 1000 && !loop.stats().safety.estop)
        await new Promise((r) => setTimeout(r, 50));
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
        merge,
        publish,
        seconds,
        stopWhen: () => task.success,
        scheduler: sched,
        ...(o.json ? {} : { log }),
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
      merge: merge.mode,
      server,
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
      inferErrors: loopStats.inferErrors,
      rtcOverruns: loopStats.rtcOverruns,
      estop: loopStats.safety.estopReason ?? null,
      robot: robotSide,
    };
    return result;
  } finally {
    for (const c of closers.reverse()) await c();
    task.dispose();
  }
}
