/**
 * A stage cache for a pipeline of long steps under one output folder (the demo's): each stage
 * records its completion in `<out>/stages/<stage>.json` (written atomically, last) with the settings
 * it ran with, and a fresh stamp that later stages put in their own settings. A re-run reuses a stage
 * whose record has the same settings and whose outputs all exist, and otherwise removes the record
 * and the outputs and runs it again (and so everything whose settings hold its stamp). A stage that
 * writes a folder builds it with `writeDirAtomic`, so a run interrupted anywhere leaves nothing a
 * re-run trusts.
 */
import { randomUUID } from "node:crypto";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { writeJsonAtomic } from "../policy/io/atomic.ts";
import { pathExists } from "../policy/io/files.ts";

/** What a stage's record (`<out>/stages/<stage>.json`) holds. */
export interface StageRecord<R> {
  stage: string;
  /** The settings it ran with (compared as JSON). */
  settings: unknown;
  /** A new id each time the stage runs: later stages record the stamps they were built from. */
  stamp: string;
  /** Wall time of the run, seconds. */
  seconds: number;
  /** ISO 8601 time it finished. */
  finishedAt: string;
  result: R;
}

/** A finished stage, run now or reused. */
export interface StageDone<R> {
  stamp: string;
  /** Wall time of the run that made it, seconds. */
  seconds: number;
  status: "ran" | "reused";
  result: R;
}

/** One line of the stages' account: what ran or was reused, in order. */
export interface StageOutcome {
  name: string;
  status: "ran" | "reused";
  /** Wall time of the run that made it, seconds. */
  seconds: number;
}

/** Options of {@link Stages}. */
export interface StagesOptions {
  /** The pipeline's output folder; records go to `<out>/stages/`. */
  out: string;
  /** `redo`: run every stage, whatever its record says (`--fresh`); default `reuse`. */
  mode?: "reuse" | "redo";
  /** One line per stage start, reuse and finish; default: none. */
  log?: (line: string) => void;
  /** The prefix of log lines (default `stages`). */
  label?: string;
}

/** Runs or reuses the stages of one pipeline run (see the module comment). Call `run` one stage at a time. */
export class Stages {
  /** Every stage so far, in order. */
  readonly done: StageOutcome[] = [];
  private readonly log: (line: string) => void;
  private readonly label: string;

  constructor(private readonly opts: StagesOptions) {
    this.log = opts.log ?? ((): void => {});
    this.label = opts.label ?? "stages";
  }

  /**
   * Reuses stage `name` when its record has exactly `settings` and every path in `outputs` exists;
   * else removes the record and the outputs, calls `run` and records its result (atomically, last).
   * `run`'s result must be JSON (it is stored and returned as read back on a reuse).
   */
  async run<R>(name: string, settings: unknown, outputs: string[], run: () => Promise<R>): Promise<StageDone<R>> {
    const recordPath = join(this.opts.out, "stages", `${name}.json`);
    if (this.opts.mode !== "redo") {
      const rec = await readRecord<R>(recordPath);
      if (rec && JSON.stringify(rec.settings) === JSON.stringify(settings)) {
        let complete = true;
        for (const p of outputs) complete &&= await pathExists(p);
        if (complete) {
          this.log(`${this.label}: ${name}: reused (finished ${rec.finishedAt}; --fresh redoes it)`);
          this.done.push({ name, status: "reused", seconds: rec.seconds });
          return { stamp: rec.stamp, seconds: rec.seconds, status: "reused", result: rec.result };
        }
      }
    }
    await rm(recordPath, { force: true });
    for (const p of outputs) await rm(p, { recursive: true, force: true });
    this.log(`${this.label}: ${name} ...`);
    const t0 = performance.now();
    const result = await run();
    const seconds = (performance.now() - t0) / 1000;
    const rec: StageRecord<R> = {
      stage: name,
      settings,
      stamp: randomUUID(),
      seconds,
      finishedAt: new Date().toISOString(),
      result,
    };
    await writeJsonAtomic(recordPath, rec);
    this.log(`${this.label}: ${name}: done in ${seconds.toFixed(1)} s`);
    this.done.push({ name, status: "ran", seconds });
    return { stamp: rec.stamp, seconds, status: "ran", result };
  }
}

/** A stage record, or undefined when it is missing or unreadable (the stage then runs again). */
async function readRecord<R>(path: string): Promise<StageRecord<R> | undefined> {
  try {
    const v = JSON.parse(await readFile(path, "utf8")) as StageRecord<R>;
    return typeof v === "object" && v !== null && typeof v.stamp === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}
