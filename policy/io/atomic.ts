/**
 * Atomic file writes: a reader (or a process killed mid-write) sees the old file or the new one,
 * never a torn one. Write to a temporary sibling, fsync, rename over the target, fsync the folder.
 */
import { open, rename, rm, mkdir } from "node:fs/promises";
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
