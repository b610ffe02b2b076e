/**
 * `serve --policy <run> [--zmq <endpoint>] [--openpi <ws-url>]` as a library function: serves a
 * policy over ZeroMQ and/or the openpi WebSocket protocol (see `bridge/server/`), inference in worker
 * threads with batching, authentication required unless `insecure`; runs until SIGINT/SIGTERM or
 * `seconds`, and returns the final counters.
 */
import { readFile } from "node:fs/promises";
import { startLocalPolicy } from "../bridge/local-policy.ts";
import { OpenpiPolicyServer, type OpenpiAuth } from "../bridge/server/openpi-server.ts";
import { parseKeyMap, policyMetadata } from "../bridge/server/served-policy.ts";
import { ZmqPolicyServer, type ZmqAuth } from "../bridge/server/zmq-server.ts";
import { isZ85Key, readCurveKeyPair } from "../bridge/server/zap.ts";
import { defaultServeWorkers } from "../policy/runtime/threaded.ts";
import type { ExecutionProvider } from "../policy/runtime/providers.ts";
import type { Aggregate, ChunkMerge } from "../policy/runtime/executor.ts";

/** The `serve` flags. */
export interface ServePolicyOptions {
  policy?: string;
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

/**
 * Serves until a signal or `seconds`; `onListening` gets the `{"event": "listening"}` object and a
 * readable line once the servers listen; `log` gets warnings and refused clients.
 */
export async function servePolicy(
  o: ServePolicyOptions,
  hooks: { log: (line: string) => void; onListening: (listening: object, line: string) => void },
) {
  const { log, onListening } = hooks;
  if (o.zmq === undefined && o.openpi === undefined)
    throw new Error("give --robot <profile> --ros <url>, or --zmq <endpoint> and/or --openpi <url>");
  if (o.policy === undefined) throw new Error("serve --zmq/--openpi needs --policy <run>");
  if (o.pub !== undefined && o.zmq === undefined) throw new Error("--pub needs --zmq");
  const maxBytes = Math.round(o.maxMessageMb * 1024 * 1024);
  const { fps, seconds } = o;
  const keyMap = parseKeyMap(o.keyMap);
  const zmqAuth = o.zmq !== undefined ? await zmqAuthFrom(o) : undefined;
  const openpiAuth = o.openpi !== undefined ? await openpiAuthFrom(o) : undefined;
  if (o.insecure) log("serve: WARNING --insecure: no authentication; anyone who reaches the port can drive the robot");

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
  onListening(
    listening,
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
  return summary;
}

async function zmqAuthFrom(o: ServePolicyOptions): Promise<ZmqAuth> {
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

async function openpiAuthFrom(o: ServePolicyOptions): Promise<OpenpiAuth> {
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
