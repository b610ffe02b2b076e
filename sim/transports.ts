/**
 * How `sim run` reaches the policy: one entry per `--via`, each saying which flags it accepts, what
 * it refuses at start, and how it builds the policy the loop calls (registering its cleanup). The
 * link to the simulated robot is the plant in process for every entry but `ros`, which goes through
 * a rosbridge (the loop and the simulated robot connecting as two ROS clients would).
 */
import { readFile } from "node:fs/promises";
import { KServeChunkPolicy } from "../bridge/kserve/chunk-policy.ts";
import type { KServeProtocol } from "../bridge/kserve/transport.ts";
import type { DeclaredFeature, RobotProfile } from "../bridge/profile.ts";
import { OpenpiPolicyServer } from "../bridge/server/openpi-server.ts";
import { OpenpiChunkPolicy, ZmqChunkPolicy } from "../bridge/server/remote-policy.ts";
import type { ServedPolicy } from "../bridge/server/served-policy.ts";
import { ZmqPolicyServer } from "../bridge/server/zmq-server.ts";
import { isZ85Key, readCurveKeyPair, type CurveKeyPair } from "../bridge/server/zap.ts";
import type { ChunkPolicy } from "../policy/chunk-policy.ts";
import type { ChunkMerge } from "../policy/runtime/executor.ts";

/** The transport-specific flags of `sim run` (camelCase as commander gives them). */
export interface TransportFlags {
  ros?: string;
  server?: string;
  apiKeyFile?: string;
  serverKey?: string;
  clientKeys?: string;
  model?: string;
  kserveProtocol?: KServeProtocol;
  timeoutMs?: number;
}

/** What an entry builds its policy from. */
export interface TransportContext {
  flags: TransportFlags;
  profile: RobotProfile;
  seed: number;
  /** The policy in this process (absent when the entry has `localPolicy: false`). */
  local?: ChunkPolicy;
  /** The same policy as a server serves it (features announced). */
  served?: ServedPolicy;
  /** Cleanups, run in reverse order when `sim run` ends. */
  closers: Array<() => Promise<void> | void>;
}

/** One `--via`. */
export interface SimTransport {
  /** The flags (beyond the common ones) this entry accepts; any other transport flag is refused. */
  readonly accepts: readonly (keyof TransportFlags)[];
  /** Whether `--policy` is loaded in this process (false: the server holds it). */
  localPolicy(flags: TransportFlags): boolean;
  /** The robot side: the plant in process, or through a rosbridge at `--ros`. */
  readonly link: "plant" | "ros";
  /** Throws when the flags or the merge cannot work with this transport. */
  check(flags: TransportFlags, merge: ChunkMerge): void;
  /** The policy the loop calls, and the server it talks to (null: none). */
  connect(ctx: TransportContext): Promise<{ policy: ChunkPolicy; server: string | null }>;
}

const flagName = (k: keyof TransportFlags): string => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** CURVE settings of `--server-key` and `--client-keys` (both or neither; only with `--server`). */
async function curveFrom(o: TransportFlags): Promise<{ serverPublicKey: string; keys: CurveKeyPair } | undefined> {
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

const inProcess = (ctx: TransportContext): { policy: ChunkPolicy; server: null } => ({
  policy: ctx.local as ChunkPolicy,
  server: null,
});

/** The `--via` entries of `sim run`. */
export const SIM_TRANSPORTS = {
  direct: { accepts: [], link: "plant", localPolicy: () => true, check: () => {}, connect: async (c) => inProcess(c) },
  ros: {
    accepts: ["ros"],
    link: "ros",
    localPolicy: () => true,
    check: (f) => {
      if (!f.ros) throw new Error("--via ros needs --ros <url>");
    },
    connect: async (c) => inProcess(c),
  },
  zmq: {
    accepts: ["server", "serverKey", "clientKeys"],
    link: "plant",
    localPolicy: (f) => f.server === undefined,
    check: () => {},
    async connect(ctx) {
      let endpoint = ctx.flags.server;
      if (endpoint === undefined) {
        const s = await ZmqPolicyServer.start({
          policy: ctx.served as ServedPolicy,
          endpoint: "tcp://127.0.0.1:0",
          auth: { mode: "insecure" },
        });
        ctx.closers.push(() => s.close());
        endpoint = s.endpoint;
      }
      const curve = await curveFrom(ctx.flags);
      const remote = await ZmqChunkPolicy.connect({ endpoint, ...(curve ? { curve } : {}) });
      ctx.closers.push(() => remote.close());
      return { policy: remote, server: endpoint };
    },
  },
  openpi: {
    accepts: ["server", "apiKeyFile"],
    link: "plant",
    localPolicy: (f) => f.server === undefined,
    check: (_f, merge) => {
      if (merge.mode === "rtc")
        throw new Error("--via openpi cannot run --merge rtc: the openpi protocol carries no prefix (use --via zmq)");
      const p = "prefixSteps" in merge ? (merge.prefixSteps ?? 0) : 0;
      if (p > 0)
        throw new Error(
          `--via openpi cannot run --prefix-steps ${p}: the openpi protocol carries no prefix (use --via zmq or kserve, or --prefix-steps 0)`,
        );
    },
    async connect(ctx) {
      let url = ctx.flags.server;
      if (url === undefined) {
        const s = await OpenpiPolicyServer.start({
          policy: ctx.served as ServedPolicy,
          url: "ws://127.0.0.1:0",
          auth: { mode: "insecure" },
        });
        ctx.closers.push(() => s.close());
        url = s.url;
      }
      const f = ctx.flags;
      const apiKey =
        f.server === undefined
          ? undefined
          : f.apiKeyFile !== undefined
            ? (await readFile(f.apiKeyFile, "utf8")).trim()
            : process.env["ACTIONFLOW_API_KEY"]?.trim() || undefined;
      const remote = await OpenpiChunkPolicy.connect({ url, ...(apiKey !== undefined ? { apiKey } : {}) });
      ctx.closers.push(() => remote.close());
      return { policy: remote, server: url };
    },
  },
  kserve: {
    accepts: ["server", "model", "kserveProtocol", "timeoutMs"],
    link: "plant",
    localPolicy: () => false,
    check: (f) => {
      if (f.server === undefined)
        throw new Error("--via kserve needs --server <url> (http://host:8000 or grpc://host:8001)");
    },
    async connect(ctx) {
      const { flags: f, profile } = ctx;
      const policy = await KServeChunkPolicy.connect({
        url: f.server as string,
        model: f.model ?? "policy",
        ...(f.kserveProtocol !== undefined ? { protocol: f.kserveProtocol } : {}),
        ...(f.timeoutMs !== undefined ? { timeoutMs: f.timeoutMs } : {}),
        seed: ctx.seed,
        observationKeys: [profile.state_feature, ...profile.features.map((x) => x.feature)],
      });
      ctx.closers.push(() => policy.close());
      policy.reset(ctx.seed);
      return { policy, server: f.server as string };
    },
  },
} satisfies Record<string, SimTransport>;

/** How `sim run` reaches the policy and the robot. */
export type SimVia = keyof typeof SIM_TRANSPORTS;

/** The `--via` names. */
export const SIM_RUN_VIAS = Object.keys(SIM_TRANSPORTS) as SimVia[];

/** The transport flags every entry knows of: a flag given that `via` does not accept is refused. */
const ALL_FLAGS = [
  ...new Set(Object.values(SIM_TRANSPORTS).flatMap((t: SimTransport) => t.accepts)),
] as (keyof TransportFlags)[];

/** The entry for `via`, after refusing the flags it does not accept and what {@link SimTransport.check} refuses. */
export function simTransport(via: SimVia, flags: TransportFlags, merge: ChunkMerge): SimTransport {
  const t: SimTransport | undefined = SIM_TRANSPORTS[via];
  if (!t) throw new Error(`--via ${String(via)}: expected one of ${SIM_RUN_VIAS.join(", ")}`);
  for (const k of ALL_FLAGS) {
    if (flags[k] === undefined || t.accepts.includes(k)) continue;
    const takers = SIM_RUN_VIAS.filter((v) => (SIM_TRANSPORTS[v] as SimTransport).accepts.includes(k));
    throw new Error(`${flagName(k)} applies to --via ${takers.join(" or ")}, not ${via}`);
  }
  t.check(flags, merge);
  return t;
}

/** The features a policy declares (a local or served policy's `features`, a remote one's metadata), if any. */
export function declaredFeatures(policy: ChunkPolicy): DeclaredFeature[] | undefined {
  const p = policy as {
    features?: ReadonlyArray<{ key: string; rawShape: readonly number[] }>;
    metadata?: { features?: ReadonlyArray<{ key: string; shape: readonly number[] }> };
  };
  if (Array.isArray(p.features)) return p.features.map((f) => ({ key: f.key, rawShape: f.rawShape }));
  if (Array.isArray(p.metadata?.features)) return p.metadata.features.map((f) => ({ key: f.key, rawShape: f.shape }));
  return undefined;
}
