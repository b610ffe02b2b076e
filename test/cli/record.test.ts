/**
 * `actionflow record` as a process: killed with SIGKILL at a seeded random moment while the scripted
 * teleoperator (`runTeleop`) records through the test rosbridge, it leaves a dataset in which every
 * episode it reported saved reads back, with our reader and with DuckDB's (an independent parquet
 * reader); `record --resume` then appends the next episodes.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { loadRobotProfile } from "../../bridge/profile.ts";
import { openLeRobot } from "../../datasets/lerobot/reader.ts";
import { Rng } from "../../policy/random.ts";
import { runTeleop } from "../../sim/teleop.ts";
import { TestRosbridge } from "../bridge/rosbridge-server.ts";

const ROBOT = "examples/robots/sim-arm-teleop.json";
const dir = mkdtempSync(join(tmpdir(), "actionflow-record-cli-"));
const servers: TestRosbridge[] = [];
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
  for (const s of servers.splice(0)) await s.stop();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Starts `actionflow record`; resolves once it is connected. */
async function startRecord(
  args: string[],
): Promise<{ child: ChildProcess; err: () => string; out: () => string; closed: Promise<number | null> }> {
  // node itself (not npx), so SIGKILL reaches the recorder
  const child = spawn(process.execPath, ["cli/bin.js", "record", "--robot", ROBOT, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => (out += String(d)));
  child.stderr!.on("data", (d: Buffer) => (err += String(d)));
  // exit code (null when killed by a signal) once the process ended and its output was read
  const closed = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const t = setInterval(() => {
      if (/connected to/.test(err)) {
        clearInterval(t);
        resolve();
      }
      if (child.exitCode !== null) {
        clearInterval(t);
        reject(new Error(`record exited: ${err}`));
      }
    }, 50);
  });
  return { child, err: () => err, out: () => out, closed };
}

/** Rows per episode as DuckDB reads the episode metadata and the data files it lists. */
async function duckCounts(ds: string): Promise<Map<number, { listed: number; rows: number }>> {
  const db = await DuckDBInstance.create(":memory:");
  const c = await db.connect();
  const meta = await c.runAndReadAll(
    `SELECT episode_index, length, "data/chunk_index", "data/file_index" FROM read_parquet('${ds}/meta/episodes/*/*.parquet') ORDER BY episode_index`,
  );
  const out = new Map<number, { listed: number; rows: number }>();
  for (const [ep, length, chunk, file] of meta.getRows()) {
    const path = `${ds}/data/chunk-${String(chunk).padStart(3, "0")}/file-${String(file).padStart(3, "0")}.parquet`;
    const n = await c.runAndReadAll(`SELECT count(*) FROM read_parquet('${path}') WHERE episode_index = ${Number(ep)}`);
    out.set(Number(ep), { listed: Number(length), rows: Number(n.getRows()[0]![0]) });
  }
  c.closeSync();
  return out;
}

describe("actionflow record", () => {
  it("keeps every saved episode through a kill -9, then --resume appends", async () => {
    const server = await TestRosbridge.create({ dialect: 2 });
    servers.push(server);
    const profile = await loadRobotProfile(ROBOT);
    const out = join(dir, "killed");
    const first = await startRecord(["--ros", server.url, "--out", out]);
    // kill after a seeded number of episodes plus a seeded fraction of the next one
    const rng = new Rng(2026);
    const afterEpisodes = 2 + rng.int(2);
    const delayMs = Math.round(rng.uniform() * 1200);
    let killedAt = -1;
    const t0 = performance.now();
    await runTeleop({
      task: "reach",
      profile,
      profilePath: ROBOT,
      url: server.url,
      episodes: afterEpisodes + 2,
      seed: 0,
      quit: false,
      onEpisode: (e) => {
        if (e.episode === afterEpisodes - 1)
          setTimeout(() => {
            killedAt = (performance.now() - t0) / 1000;
            first.child.kill("SIGKILL");
          }, delayMs);
      },
    });
    await first.closed;
    console.log(
      `record killed (SIGKILL) at ${killedAt.toFixed(2)} s, ${delayMs} ms after episode ${afterEpisodes - 1} ended`,
    );
    expect(first.child.signalCode).toBe("SIGKILL");
    const saved = [...first.err().matchAll(/episode (\d+) saved: (\d+) frames/g)].map((m) => ({
      index: Number(m[1]),
      frames: Number(m[2]),
    }));
    expect(saved.length).toBeGreaterThanOrEqual(afterEpisodes - 1);

    const ds = await openLeRobot(out);
    // every episode reported saved is there (one more may have been written just before the kill)
    expect(ds.episodes.length).toBeGreaterThanOrEqual(saved.length);
    expect(ds.episodes.length).toBeLessThanOrEqual(saved.length + 1);
    for (const s of saved) {
      expect(ds.episode(s.index).length).toBe(s.frames);
      const c = await ds.readEpisode(s.index, ["observation.state", "action"]);
      expect(c.action!.length).toBe(s.frames * 6);
    }
    const duck = await duckCounts(out);
    expect([...duck.keys()]).toEqual(ds.episodes.map((e) => e.index));
    for (const e of ds.episodes) expect(duck.get(e.index)).toEqual({ listed: e.length, rows: e.length });
    const before = ds.episodes.length;
    ds.close();

    // resume: two more episodes
    const second = await startRecord(["--ros", server.url, "--out", out, "--resume", "--episodes", "2", "--json"]);
    const tele = await runTeleop({
      task: "reach",
      profile,
      profilePath: ROBOT,
      url: server.url,
      episodes: 2,
      seed: 100,
    });
    expect(tele.successes).toBe(2);
    const code = await second.closed;
    expect(code, second.err()).toBe(0);
    const lines = second.out().trim().split("\n");
    const res = JSON.parse(lines[lines.length - 1]!) as Record<string, unknown>;
    expect(res).toMatchObject({ resumedEpisodes: before, kept: 2, episodes: before + 2 });
    const ds2 = await openLeRobot(out);
    expect(ds2.episodes.map((e) => e.index)).toEqual(Array.from({ length: before + 2 }, (_, i) => i));
    const duck2 = await duckCounts(out);
    for (const e of ds2.episodes) expect(duck2.get(e.index)).toEqual({ listed: e.length, rows: e.length });
  }, 120_000);

  it("refuses a non-empty --out without --resume, naming the folder", async () => {
    const out = join(dir, "killed");
    const child = spawn(
      process.execPath,
      ["cli/bin.js", "record", "--robot", ROBOT, "--out", out, "--ros", "ws://127.0.0.1:9"],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += String(d)));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(code).toBe(1);
    expect(err).toContain(out);
    expect(err).toMatch(/not empty \(pass --resume to append to it\)/);
  }, 60_000);
});
