/**
 * Reading LeRobot parquet files with hyparquet: metadata once per file, only the asked columns and
 * rows, and values checked and packed into flat typed arrays. Every error names the file.
 */
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from "hyparquet";
import type { AsyncBuffer, FileMetaData } from "hyparquet";
import type { ColumnArray, FeatureInfo } from "./layout.ts";
import { frameSize } from "./layout.ts";

/** An opened parquet file: its metadata and a reader of column subsets. */
export class ParquetFile {
  /** The file path (as given), used in every error. */
  readonly path: string;
  /** Rows in the file. */
  readonly numRows: number;
  /** Top-level column names. */
  readonly columns: string[];
  private readonly buffer: AsyncBuffer;
  private readonly metadata: FileMetaData;

  private constructor(path: string, buffer: AsyncBuffer, metadata: FileMetaData) {
    this.path = path;
    this.buffer = buffer;
    this.metadata = metadata;
    this.numRows = Number(metadata.num_rows);
    this.columns = parquetSchema(metadata).children.map((c) => c.element.name);
  }

  /** Opens `path` and parses its footer; `context` (e.g. "episode 3") is added to errors. */
  static async open(path: string, context?: string): Promise<ParquetFile> {
    const where = context ? `${path} (${context})` : path;
    let buffer: AsyncBuffer;
    try {
      buffer = await asyncBufferFromFile(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(code === "ENOENT" ? `${where}: file missing` : `${where}: cannot open`, { cause: err });
    }
    try {
      const metadata = await parquetMetadataAsync(buffer);
      return new ParquetFile(path, buffer, metadata);
    } catch (err) {
      throw new Error(`${where}: not a readable parquet file (truncated or corrupt?): ${(err as Error).message}`, { cause: err });
    }
  }

  /** Key-value metadata entry of the footer (e.g. "huggingface", "pandas"), if present. */
  keyValue(key: string): string | undefined {
    return this.metadata.key_value_metadata?.find((kv) => kv.key === key)?.value ?? undefined;
  }

  /**
   * Reads rows `[rowStart, rowEnd)` of `columns` as objects (hyparquet decoding: INT64 -> BigInt,
   * lists -> arrays). Throws naming the file and the first missing column.
   */
  async readRows(columns: readonly string[], rowStart = 0, rowEnd = this.numRows, context?: string): Promise<Record<string, unknown>[]> {
    const where = context ? `${this.path} (${context})` : this.path;
    for (const c of columns) {
      if (!this.columns.includes(c)) throw new Error(`${where}: column '${c}' missing (file has: ${this.columns.join(", ")})`);
    }
    if (rowStart < 0 || rowEnd > this.numRows || rowStart > rowEnd) {
      throw new RangeError(`${where}: rows [${rowStart}, ${rowEnd}) outside the file's ${this.numRows} rows`);
    }
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({ file: this.buffer, metadata: this.metadata, columns: [...columns], rowStart, rowEnd });
    } catch (err) {
      throw new Error(`${where}: cannot decode columns ${columns.join(", ")} (truncated or corrupt?): ${(err as Error).message}`, { cause: err });
    }
    if (rows.length !== rowEnd - rowStart) {
      throw new Error(`${where}: expected ${rowEnd - rowStart} rows, decoded ${rows.length} (truncated or corrupt?)`);
    }
    return rows;
  }
}

/** Where a column's rows come from, for error messages. */
export interface ColumnContext {
  file: string;
  column: string;
  episode: number;
}

/** The typed array kind a feature dtype is read into. */
export function arrayKindFor(dtype: string): "f32" | "f64" | "i64" {
  switch (dtype) {
    case "float64":
    case "int32":
    case "uint32":
      return "f64";
    case "int64":
    case "uint64":
      return "i64";
    default:
      return "f32";
  }
}

/**
 * Packs the `column` values of decoded rows into one flat typed array `[rows, ...feature.shape]`.
 * float32/float16 and small ints/bool -> Float32Array, float64/int32/uint32 -> Float64Array,
 * int64 -> BigInt64Array. Throws naming file, episode, column and frame on a null, a length that does
 * not match `feature.shape`, or a NaN/infinite float (with the dim and value).
 */
export function packColumn(rows: readonly Record<string, unknown>[], feature: FeatureInfo, ctx: ColumnContext): ColumnArray {
  const per = frameSize(feature.shape);
  const kind = arrayKindFor(feature.dtype);
  const n = rows.length;
  const out: ColumnArray = kind === "f32" ? new Float32Array(n * per) : kind === "f64" ? new Float64Array(n * per) : new BigInt64Array(n * per);
  const isFloat = feature.dtype.startsWith("float");
  const where = (frame: number): string => `${ctx.file}: column '${ctx.column}' (episode ${ctx.episode}, frame ${frame})`;
  const flat: unknown[] = [];
  const flatten = (v: unknown): void => {
    if (Array.isArray(v)) for (const x of v) flatten(x);
    else if (ArrayBuffer.isView(v) && !(v instanceof DataView)) for (const x of Array.from(v as unknown as ArrayLike<unknown>)) flat.push(x);
    else flat.push(v);
  };
  for (let r = 0; r < n; r++) {
    flat.length = 0;
    flatten(rows[r]![ctx.column]);
    if (flat.length !== per) {
      throw new Error(`${where(r)}: has ${flat.length} values, meta/info.json shape [${feature.shape.join(", ")}] needs ${per}`);
    }
    for (let d = 0; d < per; d++) {
      const v = flat[d];
      if (v === null || v === undefined) throw new Error(`${where(r)}: null value at dim ${d}`);
      const i = r * per + d;
      if (kind === "i64") {
        if (typeof v === "bigint") (out as BigInt64Array)[i] = v;
        else if (typeof v === "number" && Number.isInteger(v)) (out as BigInt64Array)[i] = BigInt(v);
        else throw new Error(`${where(r)}: value ${String(v)} at dim ${d} is not an integer (dtype ${feature.dtype})`);
      } else {
        const x = typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : typeof v === "boolean" ? (v ? 1 : 0) : NaN;
        if (typeof v !== "number" && typeof v !== "bigint" && typeof v !== "boolean") {
          throw new Error(`${where(r)}: value ${String(v)} at dim ${d} is not numeric (dtype ${feature.dtype})`);
        }
        if (isFloat && !Number.isFinite(x)) throw new Error(`${where(r)}: ${x} at dim ${d}`);
        (out as Float32Array | Float64Array)[i] = x;
      }
    }
  }
  return out;
}
