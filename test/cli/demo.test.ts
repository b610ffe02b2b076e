/**
 * `actionflow demo` at tiny sizes (4 demonstrations, a tiny head trained 20 steps, 2 evaluation
 * episodes, a 1 s real-time loop through the ZeroMQ server): the result carries the keys `--json`
 * prints, the report is one self-contained HTML file, a re-run reuses every finished stage and redoes
 * one whose record is missing (as after a Ctrl-C, with a half-written `.partial` folder beside it),
 * and `--fresh` redoes them all. Runs in process (`runDemo`, what the command calls) to keep it fast.
 */
import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runDemo } from "../../cli/commands/demo.ts";
import type { DemoResult } from "../../cli/commands/demo.ts";
import { pathExists } from "../../policy/io/files.ts";

let dir: string;
let config: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "actionflow-demo-"));
  config = join(dir, "tiny.json");
  await writeFile(
    config,
    JSON.stringify({
      transformer: { width: 32, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 16 },
      horizon: 16,
      batch: 8,
    }),
  );
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const STAGES = [
  "collect",
  "train-flow",
  "train-regression",
  "export",
  "eval-flow",
  "eval-regression",
  "loop",
  "offline",
  "report",
];

describe("actionflow demo", () => {
  it("runs every stage, writes the report, reuses finished stages and redoes them with --fresh", async () => {
    const out = join(dir, "demo");
    const demo = (fresh: boolean): Promise<DemoResult> =>
      runDemo({
        task: "avoid",
        episodes: 4,
        steps: 20,
        evalEpisodes: 2,
        seconds: 1,
        out,
        backend: "ort",
        provider: "cpu",
        via: "zmq",
        config,
        pictures: 2,
        sweepSteps: [2],
        fresh,
        seed: 0,
        json: true,
      });

    const first = await demo(false);
    for (const key of ["pcSuccess", "baselinePcSuccess", "trainS", "inferP50Ms", "jitterP99Ms", "report"])
      expect(first, key).toHaveProperty(key);
    expect(first.pcSuccess).toBeGreaterThanOrEqual(0);
    expect(first.pcSuccess).toBeLessThanOrEqual(100);
    expect(first.trainS).toBeGreaterThan(0);
    expect(first.inferP50Ms).toBeGreaterThan(0);
    expect(first.loopHz).toBeGreaterThan(0);
    expect(Object.keys(first.stages)).toEqual(STAGES);
    expect(Object.values(first.stages).every((s) => s === "ran")).toBe(true);
    expect(JSON.parse(JSON.stringify(first))).toEqual(first); // one JSON object, as --json prints it

    const html = await readFile(first.report, "utf8");
    expect(html.startsWith("<!doctype html>")).toBe(true);
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href=/); // self-contained
    expect(html).toContain("regression baseline");
    expect(html).toContain("data:image/svg+xml;base64,"); // rollout pictures
    expect(html).toContain("Inference latency through the policy server");
    expect(JSON.parse(await readFile(join(out, "summary.json"), "utf8"))).toEqual(first);

    // as if Ctrl-C hit the flow evaluation: its record gone, a half-written folder beside it
    await rm(join(out, "stages", "eval-flow.json"));
    await mkdir(join(out, "eval", "flow.partial"), { recursive: true });
    await writeFile(join(out, "eval", "flow.partial", "eval_info.json"), "{ half");
    const second = await demo(false);
    expect(second.stages).toEqual({
      ...Object.fromEntries(STAGES.map((s) => [s, "reused"])),
      "eval-flow": "ran",
      report: "ran",
    });
    expect(second.trainS).toBe(first.trainS); // the training record, not a new run
    expect(await pathExists(join(out, "eval", "flow.partial"))).toBe(false);

    const third = await demo(true);
    expect(Object.values(third.stages).every((s) => s === "ran")).toBe(true);
    expect(third.trainS).not.toBe(first.trainS);
  });
});
