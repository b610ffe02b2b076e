/** Small filesystem queries shared across the project. */
import { access } from "node:fs/promises";

/** Whether `path` exists (any kind of entry). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
