/**
 * Test helpers: copies of the shared v2.1 dataset in a temp folder, and rewriting one of its parquet
 * files with changed rows (to make broken inputs).
 */
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parquetReadObjects, asyncBufferFromFile } from "hyparquet";
import { parquetWriteBuffer } from "hyparquet-writer";
import type { SchemaElement } from "hyparquet";

/** The shared real v2.1 dataset (10 episodes, 4236 frames, 30 fps, 26-dim state and action). */
export const G1 = "examples/data/g1-pick-bottle-10ep";

/** A fresh temp folder; remove it with `rm(dir, {recursive: true})`. */
export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `actionflow-${prefix}-`));
}

/** Copies the shared dataset into a temp folder and returns the copy's path. */
export async function copyG1(): Promise<string> {
  const dir = await tempDir("g1");
  await cp(G1, dir, { recursive: true });
  return dir;
}

/** Removes a temp folder. */
export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Reads every row of a parquet file as objects. */
export async function readAllRows(path: string): Promise<Record<string, unknown>[]> {
  return parquetReadObjects({ file: await asyncBufferFromFile(path) });
}

type Kind = "list<float>" | "float" | "int64" | "string";

/** Writes rows to a parquet file with LeRobot-like column types (lists as 3-level LIST of FLOAT). */
export async function writeRows(
  path: string,
  rows: Record<string, unknown>[],
  columns: { name: string; kind: Kind }[],
): Promise<void> {
  const schema: SchemaElement[] = [{ name: "schema", num_children: columns.length }];
  for (const c of columns) {
    if (c.kind === "list<float>") {
      schema.push(
        { name: c.name, repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 },
        { name: "list", repetition_type: "REPEATED", num_children: 1 },
        { name: "element", type: "FLOAT", repetition_type: "OPTIONAL" },
      );
    } else if (c.kind === "float") schema.push({ name: c.name, type: "FLOAT", repetition_type: "OPTIONAL" });
    else if (c.kind === "int64") schema.push({ name: c.name, type: "INT64", repetition_type: "OPTIONAL" });
    else schema.push({ name: c.name, type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" });
  }
  const buf = parquetWriteBuffer({
    schema,
    columnData: columns.map((c) => ({ name: c.name, data: rows.map((r) => r[c.name] as never) })),
  });
  await writeFile(path, new Uint8Array(buf));
}

/** The columns of a v2.1 episode file of the shared dataset. */
export const G1_COLUMNS: { name: string; kind: Kind }[] = [
  { name: "observation.state", kind: "list<float>" },
  { name: "action", kind: "list<float>" },
  { name: "timestamp", kind: "float" },
  { name: "frame_index", kind: "int64" },
  { name: "episode_index", kind: "int64" },
  { name: "index", kind: "int64" },
  { name: "task_index", kind: "int64" },
];
