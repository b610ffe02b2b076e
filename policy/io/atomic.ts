/**
 * Atomic writes: a reader (or a process killed mid-write) sees the old file or folder or the new
 * one, never a torn one. Write to a temporary sibling, fsync, rename over the target, fsync the
 * parent folder.
 */
import { open, readdir, rename, rm, mkdir } from "node:fs/promises";
import { dirname, basename, join } from "node:path";

let counter = 0;

/** Writes `data` to `path` atomically, creating parent folders as needed. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${counter++}.tmp`);
  const handle = await open(tmp, "w");
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(tmp, { force: true });
    throw new Error(`could not write ${path}`, { cause: err });
  }
  await handle.close();
  await rename(tmp, path);
  await syncDir(dir);
}

/** Writes `value` as pretty JSON to `path` atomically. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n");
}

/**
 * Makes the folder `dir` atomically and returns what `build` returns. `build` fills an empty
 * temporary sibling folder, `.<name>.<pid>.<n>.tmp`, whose path it is given; once it resolves,
 * every file and folder in it is fsynced, an existing `dir` is renamed aside (`.<name>.<pid>.<n>.old`),
 * the temporary folder is renamed to `dir`, the parent folder is fsynced, and the old folder is
 * removed. Parent folders are created as needed.
 *
 * A reader sees the old folder or the complete new one, never a partial one (while an old folder
 * is replaced, for the instant between the two renames, no folder). If `build` throws (or the
 * tree cannot be fsynced), the temporary folder is removed, `dir` is left as it was and the error is
 * rethrown unchanged. The leftovers of a process killed mid-build (temporary and aside folders of
 * `dir` whose process is no longer running) are removed before building. One writer per folder at
 * a time.
 */
export async function writeDirAtomic<R>(dir: string, build: (tmp: string) => Promise<R>): Promise<R> {
  const parent = dirname(dir);
  const name = basename(dir);
  await mkdir(parent, { recursive: true });
  await removeLeftovers(parent, name);
  const stem = join(parent, `.${name}.${process.pid}.${counter++}`);
  const tmp = `${stem}.tmp`;
  const aside = `${stem}.old`;
  await mkdir(tmp);
  let result: R;
  try {
    result = await build(tmp);
    await syncTree(tmp);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  let replaced = false;
  try {
    await rename(dir, aside);
    replaced = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      await rm(tmp, { recursive: true, force: true });
      throw new Error(`could not replace ${dir}: moving the old folder aside failed`, { cause: err });
    }
  }
  try {
    await rename(tmp, dir);
  } catch (err) {
    if (replaced) await rename(aside, dir);
    await rm(tmp, { recursive: true, force: true });
    throw new Error(`could not move the new ${dir} into place`, { cause: err });
  }
  await syncDir(parent);
  if (replaced) await rm(aside, { recursive: true, force: true });
  return result;
}

/** Removes `.<name>.<pid>.<n>.tmp|old` siblings in `parent` left by processes no longer running. */
async function removeLeftovers(parent: string, name: string): Promise<void> {
  const prefix = `.${name}.`;
  for (const entry of await readdir(parent)) {
    if (!entry.startsWith(prefix)) continue;
    const m = /^(\d+)\.\d+\.(tmp|old)$/.exec(entry.slice(prefix.length));
    if (m && !processRunning(Number(m[1]))) await rm(join(parent, entry), { recursive: true, force: true });
  }
}

/** Whether a process with id `pid` exists (one of another user counts). */
function processRunning(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Fsyncs every file below `dir`, then every folder (deepest first), then `dir` itself. */
async function syncTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await syncTree(path);
    else if (entry.isFile()) {
      const h = await open(path, "r");
      try {
        await h.sync();
      } finally {
        await h.close();
      }
    }
  }
  await syncDir(dir);
}

async function syncDir(dir: string): Promise<void> {
  try {
    const h = await open(dir, "r");
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename itself is still atomic.
  }
}
