/**
 * Test helpers for the KServe path: the test server in its own process
 * (`test/bridge/start-kserve.ts`, as a Triton server would be), a repository exported from the
 * shipped reach policy, and a port pair (HTTP p, gRPC p + 1) free for a server to come back on.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import { exportTriton, type TritonExportResult } from "../../../policy/onnx/triton.ts";

/** The trained reach policy shipped in `examples/policies/reach` (solves reach; see its README). */
export const REACH_POLICY = join(process.cwd(), "examples", "policies", "reach");

/** Exports the shipped reach policy into a Triton repository under `dir` (4 Euler steps: quick on a busy machine). */
export function reachRepository(dir: string, opts: { maxBatch?: number } = {}): Promise<TritonExportResult> {
  return exportTriton(REACH_POLICY, { repo: join(dir, "repo"), steps: 4, ...opts });
}

/** A running `start-kserve.ts` child. */
export interface ServerProcess {
  child: ChildProcess;
  http: string;
  grpc: string;
  httpPort: number;
  grpcPort: number;
  /** stderr so far. */
  stderr(): string;
  /** SIGKILL (a server that dies) and wait for the exit. */
  kill(): Promise<void>;
  /** SIGTERM and wait for the exit. */
  stop(): Promise<void>;
}

/** Starts the test server on `repo` (`port` 0: free ports) and resolves once it printed its ports. */
export async function startServerProcess(
  repo: string,
  opts: { port?: number; extra?: string[] } = {},
): Promise<ServerProcess> {
  const args = ["--import", "tsx", join("test", "bridge", "start-kserve.ts"), "--repo", repo];
  args.push("--port", String(opts.port ?? 0), ...(opts.extra ?? []));
  const child = spawn(process.execPath, args, { cwd: process.cwd(), stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr.on("data", (b: Buffer) => (err += b.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const deadline = Date.now() + 60_000;
  while (!out.includes("\n")) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`start-kserve did not start (exit ${child.exitCode}): ${err}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const info = JSON.parse(out.split("\n")[0]!) as { http: string; grpc: string; httpPort: number; grpcPort: number };
  return {
    child,
    ...info,
    stderr: () => err,
    async kill() {
      if (child.exitCode === null) child.kill("SIGKILL");
      await exited;
    },
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

/** A port p with p and p + 1 both free on 127.0.0.1 right now. */
export async function freePortPair(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await new Promise<number>((resolve, reject) => {
      const s = createServer();
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => {
        const port = (s.address() as { port: number }).port;
        s.close(() => resolve(port));
      });
    });
    if (p < 65535 && (await bindable(p + 1))) return p;
  }
  throw new Error("no free port pair found");
}

/** Polls `fn` every 20 ms until it holds or `ms` pass; resolves with whether it held. */
export async function waitFor(fn: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return fn();
}
