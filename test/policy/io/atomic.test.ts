/**
 * writeDirAtomic: a folder appears complete or not at all; the old one survives a failed build; no
 * temporary is left behind; the leftovers of a killed process are cleared, a running one's are not.
 * saveCheckpoint writes its folders through it.
 */
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeDirAtomic, writeFileAtomic } from "../../../policy/io/atomic.ts";
import { pathExists } from "../../../policy/io/files.ts";
import { loadCheckpoint } from "../../../policy/checkpoint/checkpoint.ts";
import { removeDir, tempDir } from "../../datasets/lerobot/helpers.ts";
import { tinyModel, writeTinyCheckpoint } from "../onnx/fixture.ts";

/** Above Linux's largest possible process id (2^22): no process has it. */
const DEAD_PID = 4_194_305;

let dir: string;
beforeAll(async () => {
  dir = await tempDir("atomic");
});
afterAll(async () => {
  await removeDir(dir);
});

/** The folder's entries and their text, sorted (a folder's files are one level deep here). */
async function contents(path: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const n of (await readdir(path)).sort()) out[n] = await readFile(join(path, n), "utf8");
  return out;
}

/** What the parent holds besides the target: temporaries, aside folders. */
async function siblings(parent: string, name: string): Promise<string[]> {
  return (await readdir(parent)).filter((n) => n !== name).sort();
}

describe("writeDirAtomic", () => {
  it("builds a new folder (parents created) from an empty temporary sibling and returns build's value", async () => {
    const parent = join(dir, "new", "deep");
    const target = join(parent, "out");
    let seen: { tmp: string; entries: string[]; targetExists: boolean } | undefined;
    const r = await writeDirAtomic(target, async (tmp) => {
      seen = { tmp, entries: await readdir(tmp), targetExists: await pathExists(target) };
      await writeFile(join(tmp, "a.txt"), "A");
      await mkdir(join(tmp, "sub"));
      await writeFile(join(tmp, "sub", "b.txt"), "B");
      return 42;
    });
    expect(r).toBe(42);
    expect(seen!.entries).toEqual([]);
    expect(seen!.targetExists).toBe(false);
    expect(dirname(seen!.tmp)).toBe(parent);
    expect(basename(seen!.tmp)).toMatch(new RegExp(`^\\.out\\.${process.pid}\\.\\d+\\.tmp$`));
    expect(await readFile(join(target, "a.txt"), "utf8")).toBe("A");
    expect(await readFile(join(target, "sub", "b.txt"), "utf8")).toBe("B");
    expect(await siblings(parent, "out")).toEqual([]);
  });

  it("replaces an old folder whole: its files gone, the new ones in; the old one stays readable while building", async () => {
    const target = join(dir, "replace");
    await mkdir(target);
    await writeFile(join(target, "old.txt"), "old");
    await writeFile(join(target, "both.txt"), "old");
    let duringBuild: Record<string, string> | undefined;
    await writeDirAtomic(target, async (tmp) => {
      await writeFile(join(tmp, "both.txt"), "new");
      duringBuild = await contents(target);
    });
    expect(duringBuild).toEqual({ "both.txt": "old", "old.txt": "old" });
    expect(await contents(target)).toEqual({ "both.txt": "new" });
    expect(await siblings(dir, "replace").then((s) => s.filter((n) => n.startsWith(".replace.")))).toEqual([]);
  });

  it("a failure mid-build rethrows the build's error, leaves the old folder intact and no temporary behind", async () => {
    const parent = join(dir, "fail");
    const target = join(parent, "out");
    await mkdir(target, { recursive: true });
    await writeFile(join(target, "keep.txt"), "precious");
    const boom = new Error("disk full at file 2");
    let tmpSeen = "";
    const err = await writeDirAtomic(target, async (tmp) => {
      tmpSeen = tmp;
      await writeFile(join(tmp, "1.txt"), "half");
      await mkdir(join(tmp, "nested"));
      await writeFile(join(tmp, "nested", "2.txt"), "half");
      throw boom;
    }).catch((e: unknown) => e);
    expect(err).toBe(boom);
    expect(await contents(target)).toEqual({ "keep.txt": "precious" });
    expect(await pathExists(tmpSeen)).toBe(false);
    expect(await siblings(parent, "out")).toEqual([]);
  });

  it("a failure before any old folder existed leaves nothing at all", async () => {
    const parent = join(dir, "fail-new");
    await expect(
      writeDirAtomic(join(parent, "out"), async (tmp) => {
        await writeFile(join(tmp, "x"), "x");
        throw new Error("no");
      }),
    ).rejects.toThrow("no");
    expect(await readdir(parent)).toEqual([]);
  });

  it("clears the leftovers of a killed process, keeps a running process's and other names' files", async () => {
    const parent = join(dir, "leftovers");
    await mkdir(parent);
    const dead = [`.out.${DEAD_PID}.0.tmp`, `.out.${DEAD_PID}.3.old`];
    const alive = `.out.${process.ppid}.0.tmp`; // the parent process is running
    const unrelated = [`.other.${DEAD_PID}.0.tmp`, ".out.notes", "out.txt"];
    for (const n of [...dead, alive, ...unrelated]) {
      await mkdir(join(parent, n));
      await writeFile(join(parent, n, "half.json"), "{ half");
    }
    await writeDirAtomic(join(parent, "out"), async (tmp) => writeFile(join(tmp, "done"), "yes"));
    expect(await siblings(parent, "out")).toEqual([alive, ...unrelated].sort());
    expect(await readFile(join(parent, "out", "done"), "utf8")).toBe("yes");
  });
});

describe("writeFileAtomic", () => {
  it("replaces a file and leaves no temporary", async () => {
    const parent = join(dir, "file");
    await writeFileAtomic(join(parent, "f.txt"), "one");
    await writeFileAtomic(join(parent, "f.txt"), "two");
    expect(await readdir(parent)).toEqual(["f.txt"]);
    expect(await readFile(join(parent, "f.txt"), "utf8")).toBe("two");
  });
});

describe("saveCheckpoint writes its folder atomically", () => {
  it("re-saving a step replaces it whole; a killed writer's half checkpoint is cleared", async () => {
    const run = join(dir, "run");
    const m = tinyModel("mlp", { features: "state" });
    const first = await writeTinyCheckpoint(run, m, 3);
    await writeFile(join(first, "stray.txt"), "not part of a checkpoint");
    const root = join(run, "checkpoints");
    await mkdir(join(root, `.step-000003.${DEAD_PID}.0.tmp`));
    const again = await writeTinyCheckpoint(run, m, 3);
    expect(again).toBe(first);
    expect((await readdir(again)).sort()).toEqual(["config.json", "model.safetensors", "stats.json"]);
    expect((await readdir(root)).sort()).toEqual(["latest.json", "step-000003"]);
    expect((await loadCheckpoint(run)).config).toEqual(m.config);
  });
});
