import { spawn } from "node:child_process";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ZmqPolicyClient } from "../../bridge/server/zmq-client.ts";
import type { CurveKeyPair } from "../../bridge/server/zap.ts";
import { randomObs } from "../policy/onnx/fixture.ts";
import { maxAbsDiff } from "../policy/onnx/helpers.ts";
import { servedFixture, type ServedFixture } from "../bridge/server/fixture.ts";

const cli = (args: string[]): Promise<{ stdout: string }> =>
  promisify(execFile)("npx", ["tsx", "cli/main.ts", ...args], { cwd: process.cwd(), timeout: 60_000 });
const lastJson = (stdout: string): Record<string, unknown> =>
  JSON.parse(stdout.trimEnd().split("\n").pop()!) as Record<string, unknown>;

let fx: ServedFixture;
const dir = mkdtempSync(join(tmpdir(), "actionflow-cli-serve-"));
beforeAll(async () => {
  fx = await servedFixture();
});
afterAll(async () => {
  await fx.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe("actionflow keys / serve", () => {
  it("makes keypairs, serves over CURVE with an allow-list, and prints the summary last", async () => {
    const server = lastJson((await cli(["keys", "--out", dir, "--name", "server", "--json"])).stdout);
    const client = lastJson((await cli(["keys", "--out", dir, "--name", "client", "--api-key", "--json"])).stdout);
    expect(String(server["publicKey"])).toHaveLength(40);
    expect(statSync(join(dir, "server.key")).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, "client.pub"), "utf8").trim()).toBe(client["publicKey"]);
    expect(String(client["apiKey"]).length).toBeGreaterThanOrEqual(40);

    // Without keys or --insecure, serve refuses to start.
    await expect(cli(["serve", "--policy", fx.run, "--zmq", "tcp://127.0.0.1:0"])).rejects.toThrow(/needs CURVE/);
    await expect(cli(["serve", "--policy", fx.run, "--openpi", "ws://127.0.0.1:0"])).rejects.toThrow(
      /needs an API key/,
    );

    // Plain node with tsx's loader, so SIGTERM reaches the CLI itself (no npx in between).
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "cli/main.ts",
        "serve",
        "--policy",
        fx.run,
        "--zmq",
        "tcp://127.0.0.1:0",
        "--server-key",
        join(dir, "server.key"),
        "--allow",
        join(dir, "client.pub"),
        "--fps",
        "10",
        "--seconds",
        "300",
        "--json",
      ],
      { cwd: process.cwd(), stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
    const deadline = Date.now() + 60_000;
    while (!stdout.includes("\n") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const listening = JSON.parse(stdout.split("\n")[0]!) as { zmq: string; auth: string; metadata: { fps: number } };
    expect([listening.auth, listening.metadata.fps]).toEqual(["required", 10]);
    const keys = JSON.parse(readFileSync(join(dir, "client.key"), "utf8")) as CurveKeyPair;
    const c = ZmqPolicyClient.connect({
      endpoint: listening.zmq,
      curve: { serverPublicKey: String(server["publicKey"]), keys },
    });
    try {
      const o = randomObs(1, 5);
      const chunk = await c.infer({ state: o["state"]!, emb: o["emb"]! }, { seed: 8 });
      const want = await fx.direct.sampleChunk(o, { seed: 8 });
      expect(maxAbsDiff(chunk.actions, want)).toBeLessThan(1e-5);
    } finally {
      await c.close();
      child.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
    const summary = lastJson(stdout) as { event: string; zmq: { chunks: number; errors: number } };
    expect(summary.event).toBe("stopped");
    // One chunk served (the client also asked for the metadata, to shape its arrays), no errors.
    expect(summary.zmq.chunks).toBe(1);
    expect(summary.zmq.errors).toBe(0);
  });
});
