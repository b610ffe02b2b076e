/**
 * The one way JSON enters the program: read the file (or take the text), parse it, validate it with a
 * zod schema, and on any failure throw an `Error` naming the file and the field path, e.g.
 * `.../stats.json: action.stats.std[3]: expected number, got null`, with the underlying error as
 * `cause`. Writing is `writeJsonAtomic` in `./atomic.ts`.
 *
 * JSON has no NaN or Infinity (`JSON.stringify` writes them as `null`, and `1e999` parses to
 * Infinity, which `z.number()` refuses), so a schema of plain `z.number()` fields already refuses
 * every non-finite value.
 */
import { readFile } from "node:fs/promises";
import type { z } from "zod";

/** Hints appended to the messages of {@link readJsonFile} (what the user should do about it). */
export interface JsonHints {
  /** Appended in parentheses when the file does not exist (`nothing to resume? start without --resume`). */
  missing?: string;
  /** Appended after `; ` when the text is not JSON or does not fit the schema. */
  invalid?: string;
}

/** A short rendering of a value for an error message (`null`, `"abc"`, `array`, `object`, `3`). */
function show(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return `array of ${v.length}`;
  if (typeof v === "object") return "object";
  if (typeof v === "bigint") return `${v}n`;
  const s = typeof v === "string" ? JSON.stringify(v) : String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** A zod issue path as one would write it in code: `obs.state.stats.std[3]`; `(root)` for the top level. */
export function formatFieldPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const k of path) {
    if (typeof k === "number") out += `[${k}]`;
    else out += out === "" ? String(k) : `.${String(k)}`;
  }
  return out === "" ? "(root)" : out;
}

/**
 * Zod issues as one line, each prefixed by its field path: `transformer.width: expected number, got "big"; obs:
 * missing (expected array)`. Inputs are shown only when the parse was run with `reportInput: true`.
 */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => {
      const where = formatFieldPath(i.path);
      const hasInput = "input" in i;
      if (i.code === "invalid_type") {
        if (hasInput && i.input === undefined) return `${where}: missing (expected ${i.expected})`;
        if (hasInput) return `${where}: expected ${i.expected}, got ${show(i.input)}`;
      }
      if (i.code === "invalid_value" && hasInput) {
        const values = i.values.map((v) => JSON.stringify(v));
        const expected = values.length === 1 ? values[0]! : `one of ${values.join(", ")}`;
        if (i.input === undefined) return `${where}: missing (expected ${expected})`;
        return `${where}: expected ${expected}, got ${show(i.input)}`;
      }
      if ((i.code === "too_small" || i.code === "too_big") && hasInput)
        return `${where}: ${i.message}, got ${show(i.input)}`;
      return `${where}: ${i.message}`;
    })
    .join("; ");
}

/**
 * Validates an already parsed value (e.g. a config object given in code) against `schema`; throws
 * `Error("<where>: <field>: <problem>[; <hint>]")` on a mismatch, with the `ZodError` as `cause`.
 */
export function parseValue<S extends z.ZodType>(value: unknown, schema: S, where: string, hint?: string): z.output<S> {
  const r = schema.safeParse(value, { reportInput: true });
  if (!r.success) throw new Error(`${where}: ${describeIssues(r.error)}${hint ? `; ${hint}` : ""}`, { cause: r.error });
  return r.data;
}

/**
 * Parses JSON `text` and validates it against `schema`; `where` names the source in errors (a file,
 * `model.onnx: metadata 'actionflow.features'`, `episodes.jsonl: line 3`).
 */
export function parseJson<S extends z.ZodType>(text: string, schema: S, where: string, hint?: string): z.output<S> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${where}: not valid JSON (${(err as Error).message})${hint ? `; ${hint}` : ""}`, { cause: err });
  }
  return parseValue(raw, schema, where, hint);
}

async function readText(path: string, hints: JsonHints): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const msg =
      code === "ENOENT"
        ? `${path}: file missing${hints.missing ? ` (${hints.missing})` : ""}`
        : `${path}: cannot read (${code ?? (err as Error).message})`;
    throw new Error(msg, { cause: err });
  }
}

/**
 * Reads a JSON file and validates it against `schema`. Throws an `Error` naming `path` when the file
 * is missing or unreadable, is not JSON, or a field does not fit (the field path and the value found).
 */
export async function readJsonFile<S extends z.ZodType>(
  path: string,
  schema: S,
  hints: JsonHints = {},
): Promise<z.output<S>> {
  return parseJson(await readText(path, hints), schema, path, hints.invalid);
}

/**
 * Reads a JSON Lines file (one value per non-blank line) and validates every line against `schema`;
 * errors name the file and the 1-based line (`episodes.jsonl: line 3: length: missing (expected number)`).
 */
export async function readJsonLinesFile<S extends z.ZodType>(
  path: string,
  schema: S,
  hints: JsonHints = {},
): Promise<z.output<S>[]> {
  const text = await readText(path, hints);
  const out: z.output<S>[] = [];
  for (const [i, line] of text.split("\n").entries()) {
    if (line.trim() === "") continue;
    out.push(parseJson(line, schema, `${path}: line ${i + 1}`, hints.invalid));
  }
  return out;
}
