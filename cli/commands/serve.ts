/**
 * `actionflow serve --policy <run> --robot <profile> --ros <ws-url>`: drives a robot over rosbridge
 * with the real-time control loop (`bridge/drive.ts`), inference in a worker thread (or, with
 * `--via kserve --server <url> [--model <name>]`, on a KServe v2 / Triton server); SIGINT/SIGTERM
 * latch the e-stop, hold, then exit; the loop's figures are the last stdout line. The pipelines are
 * `pipelines/serve-robot.ts` and `pipelines/serve-policy.ts`.
 *
 * `actionflow serve --policy <run> [--zmq <endpoint>] [--openpi <ws-url>]`: serves a policy over
 * ZeroMQ and/or the openpi WebSocket protocol (see `bridge/server/`), inference in a worker thread
 * with batching. Authentication is required unless `--insecure` is given: CURVE with a client
 * allow-list for ZeroMQ (`--server-key`, `--allow`; make keys with `actionflow keys`), an API key
 * for WebSocket (`--api-key-file` or `$ACTIONFLOW_API_KEY`; clients send `Authorization: Api-Key <key>`).
 *
 * Prints `{"event": "listening", ...}` once listening, and on SIGINT/SIGTERM (or after `--seconds`)
 * the final counters as the last stdout line.
 */
import { type Command } from "commander";
import { log, printResult } from "../output.ts";
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
import { SOLVER_NAMES } from "../../policy/flow/solvers.ts";
import { servePolicy, type ServePolicyOptions } from "../../pipelines/serve-policy.ts";
import { SERVE_ROBOT_VIAS, serveRobot, type ServeRobotOptions } from "../../pipelines/serve-robot.ts";

type ServeCliOptions = ServePolicyOptions &
  Pick<
    ServeRobotOptions,
    | "via"
    | "server"
    | "realtimePriority"
    | "model"
    | "kserveProtocol"
    | "timeoutMs"
    | "interventionTopic"
    | "prompt"
    | "promptTopic"
  > & {
    /** `--log <file>`: the run log's path. */
    log?: string;
  };

const collect = (v: string, prev: string[]): string[] => [...prev, v];

/** Registers the `serve` command. */
export function registerServe(program: Command): void {
  const cmd = program
    .command("serve")
    .description(
      "drive a robot over rosbridge (--robot, --ros), or serve a policy over ZeroMQ (--zmq) and/or the openpi WebSocket protocol (--openpi)",
    )
    .option("--policy <run>", "run folder, checkpoint folder or policy .onnx file (not with --via kserve)")
    .option("--zmq <endpoint>", "ZeroMQ ROUTER endpoint, e.g. tcp://127.0.0.1:5555")
    .option("--openpi <url>", "openpi-compatible WebSocket server, e.g. ws://127.0.0.1:8000")
    .option("--pub <endpoint>", "also publish every served chunk and its timing on a ZeroMQ PUB socket")
    .option("--insecure", "serve without authentication (anyone who can reach the port drives the robot)")
    .option("--server-key <file>", "the ZeroMQ server's CURVE keypair (a .key file from `actionflow keys --out`)")
    .option(
      "--allow <key-or-file>",
      "an allowed client public key (Z85) or a .pub file of one; repeatable",
      collect,
      [],
    )
    .option("--api-key-file <file>", "file holding the WebSocket API key (else $ACTIONFLOW_API_KEY)")
    .option(
      "--key-map <client=dataset>",
      "rename a client observation key, e.g. observation/state=observation.state; repeatable",
      collect,
      [],
    )
    .addOption(option("--fps <hz>", "the chunk's action rate to announce in the metadata", positiveFloat))
    .addOption(
      option("--threads <n>", "onnxruntime intra-op threads of each inference worker (default 1)", positiveInt),
    )
    .addOption(providerOption())
    .addOption(realtimePriorityOption())
    .addOption(
      option(
        "--workers <n>",
        "inference worker threads, each its own onnxruntime session (default: one per core up to 4 when serving, 1 with --robot)",
        positiveInt,
      ),
    )
    .addOption(option("--seed <n>", "seed of the policy's noise stream", nonNegativeInt, 0))
    .addOption(option("--max-batch <n>", "most requests in one batched run", positiveInt, 64))
    .addOption(option("--max-queue <n>", "most waiting requests before answering busy", positiveInt, 1024))
    .addOption(option("--batch-window-ms <ms>", "how long an idle worker waits to gather a batch", nonNegativeInt, 0))
    .addOption(option("--max-message-mb <mb>", "largest accepted request, MiB", positiveFloat, 16))
    .addOption(option("--steps <n>", "solver steps when exporting a checkpoint in memory", positiveInt))
    .addOption(choiceOption("--solver <name>", "solver when exporting a checkpoint in memory", SOLVER_NAMES))
    .addOption(option("--seconds <s>", "stop after this many seconds (default: until SIGINT/SIGTERM)", positiveFloat))
    .option("--json", "print JSON lines; the last stdout line is the final summary")
    .option("--robot <profile>", "drive this robot (a robot profile JSON) over the rosbridge at --ros")
    .option("--ros <url>", "rosbridge URL for --robot, e.g. ws://127.0.0.1:9090")
    .option("--log <file>", "--robot: write an MCAP run log (joint states, features, commands, chunks, events)")
    .option(
      "--intervention-topic <topic>",
      "--robot: std_msgs/Bool topic; while true a person has the robot (the loop holds, then ramps back in)",
    )
    .option("--prompt <text>", "--robot: the task prompt of a prompt-conditioned policy (one it was trained on)")
    .option(
      "--prompt-topic <topic>",
      "--robot: std_msgs/String topic of task prompts; a new one takes effect at the next chunk",
    )
    .addOption(
      choiceOption(
        "--via <where>",
        "--robot: the policy in this process (local) or on a KServe v2 / Triton server (kserve, at --server)",
        SERVE_ROBOT_VIAS,
        "local",
      ),
    )
    .option("--server <url>", "--robot --via kserve: the server, http://host:8000 or grpc://host:8001")
    .option("--model <name>", "--robot --via kserve: the model's name in the server's repository (default: policy)")
    .addOption(
      choiceOption("--kserve-protocol <p>", "--robot --via kserve: http or grpc (default: from the URL's scheme)", [
        "http",
        "grpc",
      ]),
    )
    .addOption(
      option(
        "--timeout-ms <ms>",
        "--robot --via kserve: deadline of one chunk request, ms (default 1000)",
        positiveInt,
      ),
    )
    .addOption(
      choiceOption(
        "--publish <how>",
        "--robot, trajectory interface: step (one point per tick) or chunk",
        ["step", "chunk"],
        "step",
      ),
    );
  addMergeOptions(cmd, "blend").action(async (o: ServeCliOptions) => {
    if (o.robot !== undefined || o.ros !== undefined) return driveCli(o);
    if (o.via !== "local" || o.server !== undefined) throw new Error("--via kserve and --server go with --robot");
    if (o.log !== undefined) throw new Error("--log goes with --robot (a run log of a robot drive)");
    if (o.realtimePriority !== undefined)
      throw new Error("--realtime-priority goes with --robot (the control loop's thread)");
    const summary = await servePolicy(o, {
      log,
      onListening: (listening, line) => (o.json ? process.stdout.write(JSON.stringify(listening) + "\n") : log(line)),
    });
    printResult(summary, { json: o.json ?? false });
  });
}

/** `serve --robot --ros`: the control loop against a robot over rosbridge, until --seconds or a signal. */
async function driveCli(o: ServeCliOptions): Promise<void> {
  if (o.robot === undefined || o.ros === undefined) throw new Error("--robot <profile> and --ros <url> go together");
  if (o.zmq !== undefined || o.openpi !== undefined || o.pub !== undefined)
    throw new Error("--robot drives a robot; serve --zmq/--openpi/--pub in another process");
  const { robot, ros, log: runLog } = o;
  printResult(await serveRobot({ ...o, robot, ros, log, ...(runLog !== undefined ? { runLog } : {}) }), {
    json: o.json ?? false,
  });
}
