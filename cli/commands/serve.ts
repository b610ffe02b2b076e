/**
 * `actionflow serve --policy <run> --robot <profile> --ros <ws-url>`: drives a robot over rosbridge
 * with the real-time control loop (`bridge/drive.ts`), inference in a worker thread; SIGINT/SIGTERM
 * latch the e-stop, hold, then exit; the loop's figures are the last stdout line.
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
import { readFile } from "node:fs/promises";
import { InvalidArgumentError, type Command } from "commander";
import { driveRobot } from "../../bridge/drive.ts";
import { startLocalPolicy } from "../../bridge/local-policy.ts";
import { loadRobotProfile } from "../../bridge/profile.ts";
import { OpenpiPolicyServer, type OpenpiAuth } from "../../bridge/server/openpi-server.ts";
import { parseKeyMap, policyMetadata } from "../../bridge/server/served-policy.ts";
import { ZmqPolicyServer, type ZmqAuth } from "../../bridge/server/zmq-server.ts";
import { defaultServeWorkers } from "../../policy/runtime/threaded.ts";
import { isZ85Key, readCurveKeyPair } from "../../bridge/server/zap.ts";
import { log, printResult } from "../output.ts";
import { choiceOption, nonNegativeInt, option, positiveFloat, positiveInt, providerOption } from "../args.ts";
import type { ExecutionProvider } from "../../policy/runtime/providers.ts";
import { addMergeOptions } from "../merge-options.ts";
import { SOLVER_NAMES } from "../../policy/flow/solvers.ts";
import { chunkMergeFrom, type Aggregate, type ChunkMerge } from "../../policy/runtime/executor.ts";

interface ServeCliOptions {
  policy: string;
  zmq?: string;
  openpi?: string;
  pub?: string;
  insecure?: boolean;
  serverKey?: string;
  allow: string[];
  apiKeyFile?: string;
  keyMap: string[];
  fps?: number;
  threads?: number;
  provider: ExecutionProvider;
  workers?: number;
  seed: number;
  maxBatch: number;
  maxQueue: number;
  batchWindowMs: number;
  maxMessageMb: number;
  steps?: number;
  solver?: string;
  seconds?: number;
  json?: boolean;
  robot?: string;
  ros?: string;
  merge: ChunkMerge["mode"];
  nActionSteps?: number;
  aggregate?: Aggregate;
  prefixSteps?: number;
  publish: "step" | "chunk";
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

/** Registers the `serve` command. */
export function registerServe(program: Command): void {
  const cmd = program
    .command("serve")
    .description(
      "drive a robot over rosbridge (--robot, --ros), or serve a policy over ZeroMQ (--zmq) and/or the openpi WebSocket protocol (--openpi)",
    )
    .requiredOption("--policy <run>", "run folder, checkpoint folder or policy .onnx file")
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
      option(
        "--threads <n>",
        "onnxruntime intra-op threads of each inference worker (default: 1 when serving, onnxruntime's choice with --robot)",
        positiveInt,
      ),
    )
    .addOption(providerOption())
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
    if (o.zmq === undefined && o.openpi === undefined)
      throw new Error("give --robot <profile> --ros <url>, or --zmq <endpoint> and/or --openpi <url>");
    if (o.pub !== undefined && o.zmq === undefined) throw new Error("--pub needs --zmq");
    const maxBytes = Math.round(o.maxMessageMb * 1024 * 1024);
    const { fps, seconds } = o;
    const keyMap = parseKeyMap(o.keyMap);
    const zmqAuth = o.zmq !== undefined ? await zmqAuthFrom(o) : undefined;
    const openpiAuth = o.openpi !== undefined ? await openpiAuthFrom(o) : undefined;
    if (o.insecure)
      log("serve: WARNING --insecure: no authentication; anyone who reaches the port can drive the robot");

    // One single-threaded session per core: a batch-1 chunk of the default head is faster on one
    // thread than on two, and batches spread over the workers (README, "Remote inference").
    const policy = await startLocalPolicy(o.policy, {
      seed: o.seed,
      executionProviders: [o.provider],
      workers: o.workers ?? defaultServeWorkers(),
      threads: o.threads ?? 1,
      maxBatch: Math.max(1, o.maxBatch),
      maxQueue: Math.max(1, o.maxQueue),
      batchWindowMs: o.batchWindowMs,
      ...(fps !== undefined ? { fps } : {}),
      ...(o.steps !== undefined ? { steps: o.steps } : {}),
      ...(o.solver !== undefined ? { solver: o.solver } : {}),
    });
    let zmqServer: ZmqPolicyServer | undefined;
    let openpiServer: OpenpiPolicyServer | undefined;
    try {
      if (o.zmq !== undefined && zmqAuth) {
        zmqServer = await ZmqPolicyServer.start({
          policy,
          endpoint: o.zmq,
          auth: zmqAuth,
          keyMap,
          maxMessageBytes: maxBytes,
          ...(o.pub !== undefined ? { pub: o.pub } : {}),
          onAuth: (d) => {
            if (!d.allowed) log(`serve: refused ZeroMQ client ${d.clientKey ?? "(no CURVE key)"} from ${d.address}`);
          },
        });
      }
      if (o.openpi !== undefined && openpiAuth) {
        openpiServer = await OpenpiPolicyServer.start({
          policy,
          url: o.openpi,
          auth: openpiAuth,
          keyMap,
          maxPayloadBytes: maxBytes,
        });
      }
    } catch (err) {
      await zmqServer?.close();
      await policy.close();
      throw err;
    }
    const listening = {
      event: "listening",
      policy: policy.threaded.source,
      zmq: zmqServer?.endpoint ?? null,
      pub: zmqServer?.pubEndpoint ?? null,
      openpi: openpiServer?.url ?? null,
      auth: o.insecure ? "insecure" : "required",
      metadata: policyMetadata(policy, keyMap),
    };
    if (o.json) process.stdout.write(JSON.stringify(listening) + "\n");
    else
      log(
        `serving ${policy.threaded.source}: ${[zmqServer && `zmq ${zmqServer.endpoint}`, openpiServer && `openpi ${openpiServer.url}`].filter(Boolean).join(", ")}`,
      );
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      const stop = (): void => resolve();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      if (seconds !== undefined) setTimeout(stop, seconds * 1000).unref();
    });
    await zmqServer?.close();
    await openpiServer?.close();
    const summary = {
      event: "stopped",
      seconds: (performance.now() - t0) / 1000,
      policy: policy.threaded.stats(),
      zmq: zmqServer?.stats() ?? null,
      openpi: openpiServer?.stats() ?? null,
    };
    await policy.close();
    printResult(summary, { json: o.json ?? false });
  });
}

/** `serve --robot --ros`: the control loop against a robot over rosbridge, until --seconds or a signal. */
async function driveCli(o: ServeCliOptions): Promise<void> {
  if (o.robot === undefined || o.ros === undefined) throw new Error("--robot <profile> and --ros <url> go together");
  if (o.zmq !== undefined || o.openpi !== undefined || o.pub !== undefined)
    throw new Error("--robot drives a robot; serve --zmq/--openpi/--pub in another process");
  const merge = chunkMergeFrom(o);
  const profile = await loadRobotProfile(o.robot);
  const policy = await startLocalPolicy(o.policy, {
    seed: o.seed,
    executionProviders: [o.provider],
    ...(o.threads !== undefined ? { threads: o.threads } : {}),
    ...(o.fps !== undefined ? { fps: o.fps } : {}),
    ...(o.steps !== undefined ? { steps: o.steps } : {}),
    ...(o.solver !== undefined ? { solver: o.solver } : {}),
  });
  try {
    policy.reset(o.seed);
    log(
      `serve: driving '${profile.name}' at ${profile.control_rate_hz} Hz over ${o.ros} with ${policy.threaded.source} (merge ${merge.mode}); SIGINT/SIGTERM holds and exits`,
    );
    const res = await driveRobot({
      url: o.ros,
      profile,
      policy,
      merge,
      publish: o.publish,
      ...(o.seconds !== undefined ? { seconds: o.seconds } : {}),
      log,
    });
    const { safety, ...loop } = res.loop;
    printResult(
      {
        robot: profile.name,
        policy: policy.threaded.source,
        merge: merge.mode,
        stoppedBy: res.stoppedBy,
        ...loop,
        estop: safety.estopReason ?? null,
        watchdogTrips: safety.watchdogTrips,
        link: res.link,
      },
      { json: o.json ?? false },
    );
  } finally {
    await policy.close();
  }
}

async function zmqAuthFrom(o: ServeCliOptions): Promise<ZmqAuth> {
  if (o.insecure) return { mode: "insecure" };
  if (o.serverKey === undefined || o.allow.length === 0)
    throw new Error(
      "--zmq needs CURVE: --server-key <file.key> and at least one --allow <client key or .pub file> (make them with `actionflow keys --out <dir>`), or --insecure",
    );
  const serverKeys = await readCurveKeyPair(o.serverKey);
  const allow: string[] = [];
  for (const a of o.allow) {
    const key = isZ85Key(a) ? a : (await readFile(a, "utf8").catch(() => "")).trim();
    if (!isZ85Key(key)) throw new Error(`--allow ${a}: neither a 40-character Z85 key nor a file holding one`);
    allow.push(key);
  }
  return { mode: "curve", serverKeys, allow };
}

async function openpiAuthFrom(o: ServeCliOptions): Promise<OpenpiAuth> {
  if (o.insecure) return { mode: "insecure" };
  const key =
    o.apiKeyFile !== undefined
      ? (await readFile(o.apiKeyFile, "utf8")).trim()
      : (process.env["ACTIONFLOW_API_KEY"] ?? "").trim();
  if (key === "")
    throw new Error(
      "--openpi needs an API key: --api-key-file <file> or $ACTIONFLOW_API_KEY (make one with `actionflow keys --api-key`), or --insecure",
    );
  if (key.length < 16) throw new Error("the API key must be at least 16 characters");
  return { mode: "api-key", keys: [key] };
}
