import { spawn } from "node:child_process";
import { readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import { loadCheckpoint } from "../../policy/checkpoint/checkpoint.ts";
import { Rng } from "../../policy/random.ts";
import { useBackend } from "../../training/backend/registry.ts";
import { trainRun } from "../../training/run.ts";
import type { RunConfig } from "../../training/run/settings.ts";
import { G1, G1_COLUMNS, copyG1, readAllRows, removeDir, tempDir, writeRows } from "../datasets/lerobot/helpers.ts";
import { pathExists } from "../../policy/io/files.ts";

const TINY: RunConfig = { transformer: { width: 32, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 16 } };

let dir: string;
let config: string;
const dirs: string[] = [];
beforeAll(async () => {
  dir = await tempDir("cli-train");
  dirs.push(dir);
  config = join(dir, "tiny.json");
  await writeFile(config, JSON.stringify(TINY));
});
afterAll(async () => {
  for (const d of dirs) await removeDir(d);
});

interface Spawned {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts the real CLI (`node cli/bin.js train ...`); `kill` lets a caller SIGKILL it. */
function cli(args: string[]): { done: Promise<Spawned>; kill: () => void } {
  const child = spawn(process.execPath, ["cli/bin.js", "train", ...args], {
    cwd: process.cwd(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Spawned>((res, rej) => {
    child.on("error", rej);
    child.on("close", (code, signal) => res({ code, signal, stdout, stderr }));
  });
  return { done, kill: () => child.kill("SIGKILL") };
}

const lastJson = (s: string): Record<string, unknown> =>
  JSON.parse(s.trimEnd().split("\n").pop()!) as Record<string, unknown>;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("actionflow train (real CLI)", () => {
  it("survives SIGKILL at a seeded moment after the first checkpoint and resumes to the same weights as a straight run", async () => {
    // The kill delay comes from a seed (ACTIONFLOW_TEST_KILL_SEED, default 1) so a failure replays.
    const killSeed = Number(process.env["ACTIONFLOW_TEST_KILL_SEED"] ?? "1");
    expect(Number.isSafeInteger(killSeed), `ACTIONFLOW_TEST_KILL_SEED='${killSeed}'`).toBe(true);
    const killDelayMs = new Rng(killSeed).int(1500);
    let killedAtStep: number | undefined;
    onTestFailed(() => {
      process.stderr.write(
        `train kill test failed with ACTIONFLOW_TEST_KILL_SEED=${killSeed}: SIGKILL ${killDelayMs} ms after the first checkpoint` +
          `${killedAtStep !== undefined ? `, latest checkpoint at step ${killedAtStep}` : ""}; replay with ` +
          `ACTIONFLOW_TEST_KILL_SEED=${killSeed} npx vitest run test/cli/train.test.ts\n`,
      );
    });
    const out = join(dir, "killed");
    const common = [
      "--dataset",
      G1,
      "--config",
      config,
      "--steps",
      "80",
      "--batch",
      "16",
      "--horizon",
      "8",
      "--val-episodes",
      "8:10",
      "--checkpoint-every",
      "5",
      "--backend",
      "wasm",
      "--seed",
      "3",
      "--workers",
      "1",
    ];
    const first = cli([...common, "--out", out, "--json"]);
    const latest = join(out, "checkpoints", "latest.json");
    const deadline = Date.now() + 90_000;
    while (!(await pathExists(latest)) && Date.now() < deadline) await sleep(25);
    expect(await pathExists(latest)).toBe(true);
    await sleep(killDelayMs);
    first.kill();
    const killed = await first.done;
    // Normally killed mid-run; on a very fast machine it may have finished, which resume must also handle.
    expect(killed.signal === "SIGKILL" || killed.code === 0).toBe(true);
    const killedAt = (JSON.parse(await readFile(latest, "utf8")) as { step: number }).step;
    killedAtStep = killedAt;

    const resumed = await cli(["--out", out, "--resume", "--backend", "wasm", "--workers", "1", "--json"]).done;
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/backend: wasm/);
    const r = lastJson(resumed.stdout);
    expect(r).toMatchObject({ steps: 80, resumedFrom: killedAt, backend: "wasm" });
    for (const k of ["trainLoss", "valLoss", "valLossAtStart", "checkpoint", "seconds", "samplesPerSec", "params"])
      expect(r, k).toHaveProperty(k);
    expect(r["valLoss"] as number).toBeLessThan(r["valLossAtStart"] as number);

    const ckRoot = join(out, "checkpoints");
    const names = (await readdir(ckRoot)).filter((n) => n.startsWith("step-"));
    expect(names).toContain("step-000080");
    expect((await readdir(ckRoot)).filter((n) => n.startsWith("."))).toEqual([]);
    for (const n of names) {
      const ck = await loadCheckpoint(join(ckRoot, n), { withOptimizer: "yes" });
      expect(ck.optimizer?.trainState.step).toBe(Number(n.slice(5)));
    }

    // The same run without interruption, in-process, ends with bit-identical weights and moments.
    await useBackend("wasm");
    const straight = await trainRun({
      dataset: G1,
      out: join(dir, "straight"),
      config: TINY,
      steps: 80,
      batch: 16,
      horizon: 8,
      valEpisodes: "8:10",
      checkpointEvery: 80,
      backend: "wasm",
      seed: 3,
      workers: 1,
    });
    expect(straight.valLoss).toBe(r["valLoss"]);
    for (const f of ["model.safetensors", "optimizer.safetensors"]) {
      const a = await readFile(join(straight.checkpoint, f));
      const b = await readFile(join(ckRoot, "step-000080", f));
      expect(a.equals(b), f).toBe(true);
    }
  });

  it("prints the reader's error (file, column, frame, NaN) and exits 1", async () => {
    const ds = await copyG1();
    dirs.push(ds);
    const file = join(ds, "data/chunk-000/episode_000003.parquet");
    const rows = await readAllRows(file);
    const a = [...(rows[7]!["action"] as number[])];
    a[5] = NaN;
    rows[7] = { ...rows[7], action: a };
    await writeRows(file, rows, G1_COLUMNS);
    const r = await cli([
      "--dataset",
      ds,
      "--out",
      join(dir, "nan"),
      "--config",
      config,
      "--steps",
      "2",
      "--horizon",
      "8",
      "--val-episodes",
      "8:10",
      "--workers",
      "1",
      "--json",
    ]).done;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/episode_000003\.parquet: column 'action' \(episode 3, frame 7\): NaN at dim 5/);
    expect(r.stdout).toBe("");
  });

  it("refuses bad flags with a message naming the flag", async () => {
    const r = await cli(["--dataset", G1, "--out", join(dir, "bad"), "--arch", "rnn", "--json"]).done;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /option '--arch <arch>' argument 'rnn' is invalid\. Allowed choices are transformer, mlp\./,
    );
    const s = await cli(["--dataset", G1, "--out", join(dir, "bad"), "--config", join(dir, "missing.json")]).done;
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/missing\.json: file missing \(the --config file\)/);
  });
});
