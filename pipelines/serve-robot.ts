/**
 * `serve --robot --ros` as a library function: the control loop drives a robot over rosbridge
 * ({@link driveRobot}) with the policy in this process (an exported policy in a worker thread) or
 * behind a KServe v2 / Triton server (`via: "kserve"`), until `seconds` pass or SIGINT/SIGTERM.
 * A profile whose feature sizes differ from the policy's is refused at start.
 */
import { driveRobot } from "../bridge/drive.ts";
import { KServeChunkPolicy } from "../bridge/kserve/chunk-policy.ts";
import type { KServeProtocol } from "../bridge/kserve/transport.ts";
import { startLocalPolicy } from "../bridge/local-policy.ts";
import { checkFeatureSizes, loadRobotProfile, withInterventionTopic, withPromptTopic } from "../bridge/profile.ts";
import type { ChunkPolicy } from "../policy/chunk-policy.ts";
import { chunkMergeFrom, type Aggregate, type ChunkMerge } from "../policy/runtime/executor.ts";
import type { ExecutionProvider } from "../policy/runtime/providers.ts";

/** Where `serve --robot` finds the policy. */
export const SERVE_ROBOT_VIAS = ["local", "kserve"] as const;

/** Options of {@link serveRobot} (the `serve --robot` flags). */
export interface ServeRobotOptions {
  /** Robot profile JSON. */
  robot: string;
  /** rosbridge URL. */
  ros: string;
  via: (typeof SERVE_ROBOT_VIAS)[number];
  /** `local`: a run folder, checkpoint folder or policy .onnx. */
  policy?: string;
  /** `kserve`: the server, and the model's name in its repository (default `policy`). */
  server?: string;
  model?: string;
  kserveProtocol?: KServeProtocol;
  timeoutMs?: number;
  seed: number;
  threads?: number;
  /** SCHED_FIFO priority of the loop's thread while it runs (`--realtime-priority`, 1-99); default: the normal policy. */
  realtimePriority?: number;
  provider: ExecutionProvider;
  fps?: number;
  steps?: number;
  solver?: string;
  merge: ChunkMerge["mode"];
  nActionSteps?: number;
  aggregate?: Aggregate;
  prefixSteps?: number;
  /** Smoothing weight λ of each new chunk onto the commands before it (`--smoothing`; sync, blend and rtc). */
  smoothing?: number;
  publish: "step" | "chunk";
  seconds?: number;
  /** `std_msgs/Bool` topic: true while a person has the robot (overrides the profile's `ros.intervention`). */
  interventionTopic?: string;
  /** The task prompt of a prompt-conditioned policy from the first chunk on (`--prompt`). */
  prompt?: string;
  /** `std_msgs/String` topic of task prompts (overrides the profile's `ros.prompt`). */
  promptTopic?: string;
  /** Write an MCAP run log of the drive to this file (`--log`). */
  runLog?: string;
  /** The command line recorded in the run log; default `process.argv`. */
  argv?: readonly string[];
  log: (line: string) => void;
}

/** Drives the robot until `seconds` or a signal; returns the loop's figures, the link's counters and the refused inputs. */
export async function serveRobot(o: ServeRobotOptions) {
  const merge = chunkMergeFrom(o);
  const profile = withPromptTopic(
    withInterventionTopic(await loadRobotProfile(o.robot), o.interventionTopic),
    o.promptTopic,
  );
  const closers: Array<() => Promise<void> | void> = [];
  try {
    let policy: ChunkPolicy;
    let source: string;
    if (o.via === "kserve") {
      if (o.server === undefined)
        throw new Error("--via kserve needs --server <url> (http://host:8000 or grpc://host:8001)");
      if (o.policy !== undefined) throw new Error("--via kserve: the server holds the policy; drop --policy");
      const kp = await KServeChunkPolicy.connect({
        url: o.server,
        model: o.model ?? "policy",
        ...(o.kserveProtocol !== undefined ? { protocol: o.kserveProtocol } : {}),
        ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
        seed: o.seed,
        observationKeys: [profile.state_feature, ...profile.features.map((f) => f.feature)],
      });
      closers.push(() => kp.close());
      kp.reset(o.seed);
      checkFeatureSizes(profile, o.robot, kp.features, `the policy behind ${o.server}`);
      policy = kp;
      source = kp.source;
    } else {
      if (o.policy === undefined)
        throw new Error("serve --robot needs --policy <run> (or --via kserve --server <url>)");
      for (const [flag, v] of [
        ["--server", o.server],
        ["--model", o.model],
        ["--kserve-protocol", o.kserveProtocol],
        ["--timeout-ms", o.timeoutMs],
      ] as const)
        if (v !== undefined) throw new Error(`${flag} applies to --via kserve, not local`);
      const lp = await startLocalPolicy(o.policy, {
        seed: o.seed,
        executionProviders: [o.provider],
        ...(o.threads !== undefined ? { threads: o.threads } : {}),
        ...(o.fps !== undefined ? { fps: o.fps } : {}),
        ...(o.steps !== undefined ? { steps: o.steps } : {}),
        ...(o.solver !== undefined ? { solver: o.solver } : {}),
      });
      closers.push(() => lp.close());
      lp.reset(o.seed);
      checkFeatureSizes(profile, o.robot, lp.features, `the policy ${o.policy}`);
      policy = lp;
      source = lp.threaded.source;
    }
    if (policy.prompts !== undefined)
      o.log(`serve: the policy takes a prompt: ${policy.prompts.map((p) => JSON.stringify(p)).join(", ")}`);
    if (o.prompt !== undefined) {
      if (policy.prompts === undefined || !policy.setPrompt)
        throw new Error(`--prompt: the policy ${source} takes no prompt (it was trained without one)`);
      policy.setPrompt(o.prompt);
    } else if (policy.prompts !== undefined)
      // every chunk would be refused until a prompt arrived
      throw new Error(
        `the policy ${source} is conditioned on a task prompt: pass --prompt with one of ${policy.prompts.map((p) => JSON.stringify(p)).join(", ")} (the prompt topic can change it later)`,
      );
    else if (profile.ros.prompt !== undefined && policy.prompts === undefined)
      o.log(`serve: the policy takes no prompt; messages on ${profile.ros.prompt} will be refused`);
    o.log(
      `serve: driving '${profile.name}' at ${profile.control_rate_hz} Hz over ${o.ros} with ${source} (merge ${merge.mode}); SIGINT/SIGTERM holds and exits`,
    );
    const res = await driveRobot({
      url: o.ros,
      profile,
      policy,
      merge,
      publish: o.publish,
      ...(o.seconds !== undefined ? { seconds: o.seconds } : {}),
      log: o.log,
      ...(o.realtimePriority !== undefined ? { realtimePriority: o.realtimePriority } : {}),
      ...(o.runLog !== undefined
        ? {
            runLog: {
              path: o.runLog,
              argv: o.argv ?? process.argv,
              policyMeta: {
                policy: source,
                via: o.via,
                horizon: policy.horizon,
                actionDim: policy.actionDim,
                fps: policy.fps ?? null,
                merge: merge.mode,
                seed: o.seed,
              },
            },
          }
        : {}),
    });
    const { safety, ...loop } = res.loop;
    return {
      robot: profile.name,
      policy: source,
      via: o.via,
      merge: merge.mode,
      stoppedBy: res.stoppedBy,
      ...loop,
      estop: safety.estopReason ?? null,
      watchdogTrips: safety.watchdogTrips,
      rejectedMessages: res.rejectedMessages,
      link: res.link,
      ...(res.runLog ? { runLog: res.runLog } : {}),
      ...(res.realtime ? { realtime: res.realtime } : {}),
    };
  } finally {
    for (const c of closers.reverse()) await c();
  }
}
