/**
 * The stage cache: a stage is reused only with the same settings and all its outputs present; a
 * changed setting, a missing output or record, or `redo` runs it again (removing its old outputs
 * first); a failing stage leaves no record; every stage is accounted for in order.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pathExists } from "../../policy/io/files.ts";
import { Stages } from "../../pipelines/stages.ts";
import type { StageRecord } from "../../pipelines/stages.ts";
import { removeDir, tempDir } from "../datasets/lerobot/helpers.ts";

let dir: string;
beforeAll(async () => {
  dir = await tempDir("stages");
});
afterAll(async () => {
  await removeDir(dir);
});

/** A stage that writes `<out>/thing/value.txt` and counts its runs. */
function thingStage(out: string, runs: { n: number }) {
  const folder = join(out, "thing");
  return {
    folder,
    run: async (): Promise<{ value: number }> => {
      runs.n++;
      await mkdir(folder, { recursive: true });
      await writeFile(join(folder, "value.txt"), String(runs.n));
      return { value: runs.n };
    },
  };
}

describe("Stages", () => {
  it("reuses a stage with the same settings and outputs, reruns it when either changes or with redo", async () => {
    const out = join(dir, "cache");
    const runs = { n: 0 };
    const s = thingStage(out, runs);
    const lines: string[] = [];
    const stages = (mode: "reuse" | "redo" = "reuse"): Stages =>
      new Stages({ out, mode, log: (l) => lines.push(l), label: "t" });

    const first = await stages().run("thing", { a: 1 }, [s.folder], s.run);
    expect(first).toMatchObject({ status: "ran", result: { value: 1 } });
    const rec = JSON.parse(await readFile(join(out, "stages", "thing.json"), "utf8")) as StageRecord<unknown>;
    expect(rec).toMatchObject({ stage: "thing", settings: { a: 1 }, stamp: first.stamp, result: { value: 1 } });
    expect(lines).toEqual(["t: thing ...", expect.stringMatching(/^t: thing: done in \d+\.\d s$/)]);

    const same = await stages().run("thing", { a: 1 }, [s.folder], s.run);
    expect(same).toEqual({ stamp: first.stamp, seconds: first.seconds, status: "reused", result: { value: 1 } });
    expect(runs.n).toBe(1);
    expect(lines[2]).toMatch(/^t: thing: reused \(finished .*; --fresh redoes it\)$/);

    const changed = await stages().run("thing", { a: 2 }, [s.folder], s.run);
    expect(changed.status).toBe("ran");
    expect(changed.stamp).not.toBe(first.stamp);
    expect(await readFile(join(s.folder, "value.txt"), "utf8")).toBe("2");

    await removeDir(s.folder);
    const missing = await stages().run("thing", { a: 2 }, [s.folder], s.run);
    expect(missing).toMatchObject({ status: "ran", result: { value: 3 } });

    const redo = await stages("redo").run("thing", { a: 2 }, [s.folder], s.run);
    expect(redo).toMatchObject({ status: "ran", result: { value: 4 } });
  });

  it("removes a stage's old outputs before it runs again, and a failing stage leaves no record", async () => {
    const out = join(dir, "failing");
    const folder = join(out, "thing");
    const st = new Stages({ out });
    await st.run("thing", { v: 1 }, [folder], async () => {
      await mkdir(folder, { recursive: true });
      await writeFile(join(folder, "old.txt"), "old");
      return 1;
    });
    let sawOld = true;
    const boom = new Error("stage failed");
    await expect(
      new Stages({ out }).run("thing", { v: 2 }, [folder], async () => {
        sawOld = await pathExists(join(folder, "old.txt"));
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(sawOld).toBe(false);
    expect(await pathExists(join(out, "stages", "thing.json"))).toBe(false);
  });

  it("an unreadable record counts as none; `done` lists every stage in order with its status", async () => {
    const out = join(dir, "order");
    await mkdir(join(out, "stages"), { recursive: true });
    await writeFile(join(out, "stages", "a.json"), "{ half");
    const st = new Stages({ out });
    await st.run("a", {}, [], async () => "a");
    await st.run("b", {}, [], async () => "b");
    const again = new Stages({ out });
    await again.run("a", {}, [], async () => "a2");
    await again.run("b", { changed: true }, [], async () => "b2");
    expect(st.done.map((d) => [d.name, d.status])).toEqual([
      ["a", "ran"],
      ["b", "ran"],
    ]);
    expect(again.done.map((d) => [d.name, d.status])).toEqual([
      ["a", "reused"],
      ["b", "ran"],
    ]);
  });
});
