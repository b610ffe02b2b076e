/**
 * `bench serve`: both policy servers under 1, 8 and 32 concurrent clients, for the default
 * transformer head (H=50, A=32, 10 Euler steps; untrained weights, exported as `bench infer` does).
 *
 * Each client runs closed loop (one request in flight, the next sent when the reply arrives) for
 * `requests` requests; clients live in this process, the policy in its worker thread. Per
 * configuration: `{clients, requests, errors, lost, p50Ms, p99Ms, chunksPerSec, rssMb}`, where
 * `lost` counts requests that got neither a chunk nor an error, latencies are client-side round
 * trips, and `rssMb` is this process's resident memory after the run. `speedup32` = chunks/s with
 * 32 clients / with 1 (batching; the target is >= 3). `cpuMsPerChunk` is the CPU time of
 * the whole process (server, inference workers and the clients, all threads) per chunk: on `cores`
 * cores no configuration serves more than `cores * 1000 / cpuMsPerChunk` chunks/s, however loaded
 * the machine is. The ZeroMQ figures also split a request's round trip (`split`, medians): `inferMs`
 * (the worker's run per chunk), `workerHopMs` (queueing and messages to and from the worker,
 * server-side `total_ms - infer_ms`) and `transportMs` (ZeroMQ, msgpack and the event loops, client
 * round trip - `total_ms`).
 *
 * `ceiling32` bounds `speedup32` from CPU time alone, so that it holds on a loaded machine too:
 * 32 clients get at most `cores * 1000 / cpuMsPerChunk(32)` chunks/s, and one client, whose
 * request path is serial, at least `1000 / cpuMsPerChunk(1)` on an idle machine when no thread
 * spins (its round trip is then mostly CPU time; compare its `p50Ms`); so
 * `speedup32 <= cores * cpuMsPerChunk(1) / cpuMsPerChunk(32)` up to the single client's idle waits.
 *
 * `kserve` (unless `kserve: false`): the same head exported as a Triton model repository
 * (`exportTriton`, `max_batch_size` = `maxBatch` capped at 64, `queueDelayUs`) served by the test
 * KServe server in its own process (`test/bridge/start-kserve.ts`, onnxruntime with `workers *
 * threads` intra-op threads, Triton-style dynamic batching), and clients that are
 * `KServeChunkPolicy`s (the loop's client: start-up checks, noise drawn client side) over HTTP with
 * binary tensors and over gRPC. Same figures; `cpuMsPerChunk` adds the server process's CPU time
 * (from /proc) to this one's; `server` has the server's batch count and mean batch size.
 *
 * `computeCeiling` measures the worker's own run per chunk alone and inside one batch of 32 (no
 * sockets), in wall time and in process CPU time (the main thread is idle meanwhile): the compute
 * part of the cost, without the serving overhead. `ceilingRatio32` is each server's 32-client
 * chunks/s over that ceiling (cores x 1000 / the batched CPU ms per chunk), `wallCeilingRatio32`
 * the same over the batched wall ms per chunk.
 */
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { Rng } from "../policy/random.ts";
import { ThreadedPolicy } from "../policy/runtime/threaded.ts";
import { decodeMsgpackNumpy, encodeMsgpackNumpy, NdArray, type MsgMap } from "../bridge/codec/msgpack-numpy.ts";
import { OpenpiPolicyServer } from "../bridge/server/openpi-server.ts";
import { ZmqPolicyClient } from "../bridge/server/zmq-client.ts";
import { ZmqPolicyServer } from "../bridge/server/zmq-server.ts";
import { useBackend } from "../training/backend/registry.ts";
import { exportDefaultHead } from "./infer.ts";
import { median, percentiles } from "../policy/stats/quantiles.ts";
import { KServeChunkPolicy } from "../bridge/kserve/chunk-policy.ts";
import { KServeError, type KServeProtocol } from "../bridge/kserve/transport.ts";
import { exportTriton } from "../policy/onnx/triton.ts";

/** One configuration's figures. */
export interface ServeFigures {
  clients: number;
  requests: number;
  errors: number;
  lost: number;
  p50Ms: number;
  p99Ms: number;
  chunksPerSec: number;
  rssMb: number;
  /** Process CPU time (all threads) per chunk, ms. */
  cpuMsPerChunk: number;
  /** ZeroMQ only: medians of where a request's round trip went, ms. */
  split?: { inferMs: number; workerHopMs: number; transportMs: number };
  /** KServe only, when requests were lost: how many by why (`timeout`, `unreachable`). */
  lostBy?: Record<string, number>;
}

interface Tally {
  latencies: number[];
  errors: number;
  lost: number;
  /** ZeroMQ: per answered request, the server's timing. */
  timings?: Array<{ rtt: number; total: number; infer: number; batch: number }>;
  /** KServe: lost requests by why (`timeout`, `unreachable`). */
  lostBy?: Record<string, number>;
}

type Run = Tally & { seconds: number; cpuMs: number };

const STATE_DIM = 32;

/** Runs the serve benchmark. */
export async function benchServe(o: {
  requests: number;
  clients: number[];
  threads: number;
  workers: number;
  maxBatch: number;
  /** The KServe path (default on): the head as a Triton repository behind the test KServe server. */
  kserve?: boolean;
  /** `max_queue_delay_microseconds` of the KServe dynamic batcher (default 500). */
  queueDelayUs?: number;
}): Promise<Record<string, unknown>> {
  await useBackend("wasm");
  const dir = await mkdtemp(join(tmpdir(), "actionflow-bench-serve-"));
  try {
    const exported = await exportDefaultHead(dir, STATE_DIM);
    const policy = await ThreadedPolicy.start(exported.onnx, {
      threads: o.threads,
      workers: o.workers,
      maxBatch: o.maxBatch,
      seed: 1,
    });
    const states = Array.from({ length: 64 }, (_, i) => new Rng(100 + i).normalArray(STATE_DIM));
    try {
      const zmqServer = await ZmqPolicyServer.start({
        policy,
        endpoint: "tcp://127.0.0.1:0",
        auth: { mode: "insecure" },
      });
      const zmq: ServeFigures[] = [];
      try {
        await runZmq(zmqServer.endpoint, 1, 5, states); // warm-up
        for (const n of o.clients)
          zmq.push(figures(n, o.requests, await runZmq(zmqServer.endpoint, n, o.requests, states)));
      } finally {
        await zmqServer.close();
      }
      const wsServer = await OpenpiPolicyServer.start({ policy, url: "ws://127.0.0.1:0", auth: { mode: "insecure" } });
      const openpi: ServeFigures[] = [];
      try {
        await runOpenpi(wsServer.url, 1, 5, states);
        for (const n of o.clients)
          openpi.push(figures(n, o.requests, await runOpenpi(wsServer.url, n, o.requests, states)));
      } finally {
        await wsServer.close();
      }
      const kserve = o.kserve === false ? undefined : await benchKServe(exported.checkpoint, dir, states, o);
      const ceiling = await computeCeiling(policy, states);
      const pair = (f: ServeFigures[]): [ServeFigures, ServeFigures] | undefined => {
        const one = f.find((x) => x.clients === 1);
        const many = f.find((x) => x.clients === 32);
        return one && many ? [one, many] : undefined;
      };
      const speedup = (f: ServeFigures[]): number | null => {
        const p = pair(f);
        return p ? round(p[1].chunksPerSec / p[0].chunksPerSec) : null;
      };
      const cores = availableParallelism();
      const bound = (f: ServeFigures[]): number | null => {
        const p = pair(f);
        return p ? round((cores * p[0].cpuMsPerChunk) / p[1].cpuMsPerChunk) : null;
      };
      // 32 clients' chunks/s against the compute alone: every core running batched chunks at the
      // worker's CPU time per chunk in a batch of 32 (the CPU ceiling), or at its wall time.
      const atCeiling = (f: ServeFigures[], msPerChunk: number | undefined): number | null => {
        const many = f.find((x) => x.clients === 32);
        return many && msPerChunk ? round(many.chunksPerSec / ((cores * 1000) / msPerChunk)) : null;
      };
      return {
        zmq,
        openpi,
        ...(kserve ? { kserve } : {}),
        speedup32: { zmq: speedup(zmq), openpi: speedup(openpi) },
        ceilingRatio32: {
          zmq: atCeiling(zmq, ceiling["batch32CpuMsPerChunk"]),
          openpi: atCeiling(openpi, ceiling["batch32CpuMsPerChunk"]),
        },
        wallCeilingRatio32: {
          zmq: atCeiling(zmq, ceiling["batch32MsPerChunk"]),
          openpi: atCeiling(openpi, ceiling["batch32MsPerChunk"]),
        },
        ceiling32: { zmq: bound(zmq), openpi: bound(openpi) },
        computeCeiling: ceiling,
        policy: { horizon: policy.horizon, actionDim: policy.actionDim, steps: policy.steps, solver: policy.solver },
        batching: policy.stats(),
        cores,
        requestsPerClient: o.requests,
        threads: o.threads,
        workers: o.workers,
        maxBatch: o.maxBatch,
      };
    } finally {
      await policy.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function cpuMs(since: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(since);
  return (c.user + c.system) / 1000;
}

/** The worker's run per chunk alone and inside one batch of 32, wall and CPU (see the module doc). */
async function computeCeiling(policy: ThreadedPolicy, states: Float32Array[]): Promise<Record<string, number>> {
  const one: number[] = [];
  const c1 = process.cpuUsage();
  const n1 = 20;
  for (let i = 0; i < n1; i++) one.push((await policy.sampleChunkTimed({ "observation.state": states[i]! })).inferMs);
  const cpu1 = cpuMs(c1) / n1;
  const many: number[] = [];
  let chunks = 0;
  const c32 = process.cpuUsage();
  for (let r = 0; r < 3; r++) {
    // The first request runs alone at once; the next 32 wait for it and run as one batch (one worker).
    const all = await Promise.all(
      Array.from({ length: 33 }, (_, i) =>
        policy.sampleChunkTimed({ "observation.state": states[i % states.length]! }),
      ),
    );
    const big = all.reduce((a, b) => (b.batch > a.batch ? b : a));
    many.push(big.inferMs / big.batch);
    chunks += all.length;
  }
  // The 3 lone runs are charged at the batch-1 CPU cost.
  const cpu32 = (cpuMs(c32) - 3 * cpu1) / (chunks - 3);
  const b1 = median(one);
  const b32 = median(many);
  return {
    batch1MsPerChunk: round(b1),
    batch32MsPerChunk: round(b32),
    ratio: round(b1 / b32),
    batch1CpuMsPerChunk: round(cpu1),
    batch32CpuMsPerChunk: round(cpu32),
    cpuRatio: round(cpu1 / cpu32),
  };
}

function figures(clients: number, perClient: number, r: Run): ServeFigures {
  const p = percentiles(r.latencies.length > 0 ? r.latencies : [Number.NaN]);
  const t = r.timings ?? [];
  return {
    clients,
    requests: clients * perClient,
    errors: r.errors,
    lost: r.lost,
    p50Ms: round(p.p50Ms),
    p99Ms: round(p.p99Ms),
    chunksPerSec: round(r.latencies.length / r.seconds),
    rssMb: round(process.memoryUsage().rss / 2 ** 20),
    cpuMsPerChunk: round(r.cpuMs / Math.max(1, r.latencies.length)),
    ...(r.lostBy && Object.keys(r.lostBy).length > 0 ? { lostBy: r.lostBy } : {}),
    ...(t.length > 0
      ? {
          split: {
            inferMs: round(median(t.map((x) => x.infer / x.batch))),
            workerHopMs: round(median(t.map((x) => x.total - x.infer))),
            transportMs: round(median(t.map((x) => x.rtt - x.total))),
          },
        }
      : {}),
  };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

async function runZmq(endpoint: string, n: number, perClient: number, states: Float32Array[]): Promise<Run> {
  const clients = Array.from({ length: n }, () => ZmqPolicyClient.connect({ endpoint, timeoutMs: 60_000 }));
  const tally: Tally = { latencies: [], errors: 0, lost: 0, timings: [] };
  try {
    await Promise.all(clients.map((c) => c.ping())); // connected before the clock starts
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(
      clients.map(async (c, ci) => {
        for (let i = 0; i < perClient; i++) {
          const s = performance.now();
          try {
            const r = await c.infer({ "observation.state": NdArray.float32(states[(ci + i) % states.length]!) });
            const rtt = performance.now() - s;
            if (r.actions.length > 0) {
              tally.latencies.push(rtt);
              const { total_ms, infer_ms, batch } = r.timing;
              tally.timings!.push({ rtt, total: Number(total_ms), infer: Number(infer_ms), batch: Number(batch) });
            } else tally.lost++;
          } catch (err) {
            if ((err as Error).name === "ZmqServerError") tally.errors++;
            else tally.lost++;
          }
        }
      }),
    );
    return { ...tally, seconds: (performance.now() - t0) / 1000, cpuMs: cpuMs(c0) };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

async function runOpenpi(url: string, n: number, perClient: number, states: Float32Array[]): Promise<Run> {
  const tally: Tally = { latencies: [], errors: 0, lost: 0 };
  const sockets = await Promise.all(
    Array.from({ length: n }, async () => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      const frames: Array<{ data: Buffer; binary: boolean }> = [];
      const waiters: Array<(f: { data: Buffer; binary: boolean } | undefined) => void> = [];
      ws.on("message", (data: Buffer, binary: boolean) => {
        const w = waiters.shift();
        if (w) w({ data, binary });
        else frames.push({ data, binary });
      });
      ws.on("close", () => waiters.splice(0).forEach((w) => w(undefined)));
      await new Promise<void>((resolve, reject) => {
        ws.once("open", () => resolve());
        ws.once("error", reject);
      });
      const next = (): Promise<{ data: Buffer; binary: boolean } | undefined> => {
        const f = frames.shift();
        return f ? Promise.resolve(f) : new Promise((resolve) => waiters.push(resolve));
      };
      await next(); // metadata
      return { ws, next };
    }),
  );
  try {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(
      sockets.map(async ({ ws, next }, ci) => {
        for (let i = 0; i < perClient; i++) {
          if (ws.readyState !== ws.OPEN) {
            tally.lost += perClient - i;
            return;
          }
          const s = performance.now();
          ws.send(encodeMsgpackNumpy({ "observation.state": NdArray.float32(states[(ci + i) % states.length]!) }));
          const f = await next();
          if (!f) tally.lost++;
          else if (!f.binary) tally.errors++;
          else {
            const m = decodeMsgpackNumpy(f.data) as MsgMap;
            if (m["actions"] instanceof NdArray) tally.latencies.push(performance.now() - s);
            else tally.lost++;
          }
        }
      }),
    );
    return { ...tally, seconds: (performance.now() - t0) / 1000, cpuMs: cpuMs(c0) };
  } finally {
    for (const { ws } of sockets) ws.close();
  }
}

/** CPU time (user + system) of another process so far, ms, from /proc (Linux); undefined elsewhere. */
function procCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
    const hz = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;
    return (ticks * 1000) / hz;
  } catch {
    return undefined;
  }
}

/** The KServe path of `bench serve` (see the module doc). */
async function benchKServe(
  checkpoint: string,
  dir: string,
  states: Float32Array[],
  o: { requests: number; clients: number[]; threads: number; workers: number; maxBatch: number; queueDelayUs?: number },
): Promise<Record<string, unknown>> {
  const maxBatch = Math.min(64, o.maxBatch);
  const repo = await exportTriton(checkpoint, {
    repo: join(dir, "triton"),
    steps: 10,
    solver: "euler",
    maxBatch,
    queueDelayUs: o.queueDelayUs ?? 500,
  });
  const threads = Math.max(1, o.workers * o.threads);
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join("test", "bridge", "start-kserve.ts"), "--repo", repo.repo, "--port", "0"].concat([
      "--threads",
      String(threads),
    ]),
    { cwd: process.cwd(), stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  let err = "";
  child.stdout.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr.on("data", (b: Buffer) => (err += b.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    const t0 = Date.now();
    while (!out.includes("\n")) {
      if (child.exitCode !== null || Date.now() - t0 > 60_000)
        throw new Error(`bench serve: the KServe server did not start: ${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const urls = JSON.parse(out.split("\n")[0]!) as { http: string; grpc: string };
    const figs: Record<KServeProtocol, ServeFigures[]> = { http: [], grpc: [] };
    for (const protocol of ["http", "grpc"] as const) {
      const url = protocol === "http" ? urls.http : urls.grpc;
      await runKServe(url, child.pid!, 1, 5, states); // warm-up (the first connect also waits for the model)
      for (const n of o.clients)
        figs[protocol].push(figures(n, o.requests, await runKServe(url, child.pid!, n, o.requests, states)));
    }
    child.kill("SIGTERM");
    await exited;
    const stopped = /stopped (\{.*\})/.exec(err);
    const server = stopped ? (JSON.parse(stopped[1]!) as Record<string, number>) : {};
    const speedup = (f: ServeFigures[]): number | null => {
      const one = f.find((x) => x.clients === 1);
      const many = f.find((x) => x.clients === 32);
      return one && many ? round(many.chunksPerSec / one.chunksPerSec) : null;
    };
    return {
      http: figs.http,
      grpc: figs.grpc,
      speedup32: { http: speedup(figs.http), grpc: speedup(figs.grpc) },
      server: { ...server, threads, maxBatchSize: maxBatch, queueDelayUs: o.queueDelayUs ?? 500 },
    };
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
  }
}

async function runKServe(
  url: string,
  serverPid: number,
  n: number,
  perClient: number,
  states: Float32Array[],
): Promise<Run> {
  const deadline = Date.now() + 60_000;
  const connect = async (): Promise<KServeChunkPolicy> => {
    for (;;) {
      try {
        // the loop's client as it is, but for the deadline: a benchmark waits for every chunk
        return await KServeChunkPolicy.connect({ url, model: "policy", timeoutMs: 300_000, seed: 1 });
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 100)); // the model may still be loading
      }
    }
  };
  const clients: KServeChunkPolicy[] = [];
  for (let i = 0; i < n; i++) clients.push(await connect());
  const lostBy: Record<string, number> = {};
  const tally: Tally = { latencies: [], errors: 0, lost: 0, lostBy };
  try {
    const c0 = process.cpuUsage();
    const s0 = procCpuMs(serverPid);
    const t0 = performance.now();
    await Promise.all(
      clients.map(async (c, ci) => {
        for (let i = 0; i < perClient; i++) {
          const s = performance.now();
          try {
            const chunk = await c.sampleChunk({ "observation.state": states[(ci + i) % states.length]! });
            if (chunk.length === c.horizon * c.actionDim) tally.latencies.push(performance.now() - s);
            else tally.lost++;
          } catch (err) {
            // an error reply counts as an error; no reply at all (timeout, broken connection) as lost
            if (
              err instanceof KServeError &&
              (err.kind === "rejected" || err.kind === "unavailable" || err.kind === "protocol")
            )
              tally.errors++;
            else {
              tally.lost++;
              const why = err instanceof KServeError ? err.kind : "other";
              lostBy[why] = (lostBy[why] ?? 0) + 1;
            }
          }
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const s1 = procCpuMs(serverPid);
    const serverMs = s0 !== undefined && s1 !== undefined ? s1 - s0 : 0;
    return { ...tally, seconds, cpuMs: cpuMs(c0) + serverMs };
  } finally {
    for (const c of clients) c.close();
  }
}
