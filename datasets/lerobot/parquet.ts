/**
 * LeRobot parquet files: reading with hyparquet (metadata once per file, only the asked columns and
 * rows, values checked and packed into flat typed arrays; every error names the file) and encoding
 * with hyparquet-writer in pyarrow's layout.
 */
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from "hyparquet";
import type { AsyncBuffer, DecodedArray, FileMetaData, SchemaElement } from "hyparquet";
import { ByteWriter, ParquetWriter } from "hyparquet-writer";
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
      throw new Error(`${where}: not a readable parquet file (truncated or corrupt?): ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /** Key-value metadata entry of the footer (e.g. "huggingface", "pandas"), if present. */
  keyValue(key: string): string | undefined {
    return this.metadata.key_value_metadata?.find((kv) => kv.key === key)?.value ?? undefined;
  }

  /**
   * Reads rows `[rowStart, rowEnd)` of `columns` as objects (hyparquet decoding: INT64 -> BigInt,
   * lists -> arrays). Byte arrays without a UTF8 annotation become strings unless
   * `opts.binary` is "bytes" (then Uint8Array: encoded images). Throws naming the file and the
   * first missing column.
   */
  async readRows(
    columns: readonly string[],
    rowStart = 0,
    rowEnd = this.numRows,
    context?: string,
    opts: { binary?: "string" | "bytes" } = {},
  ): Promise<Record<string, unknown>[]> {
    const where = context ? `${this.path} (${context})` : this.path;
    for (const c of columns) {
      if (!this.columns.includes(c))
        throw new Error(`${where}: column '${c}' missing (file has: ${this.columns.join(", ")})`);
    }
    if (rowStart < 0 || rowEnd > this.numRows || rowStart > rowEnd) {
      throw new RangeError(`${where}: rows [${rowStart}, ${rowEnd}) outside the file's ${this.numRows} rows`);
    }
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({
        file: this.buffer,
        metadata: this.metadata,
        columns: [...columns],
        rowStart,
        rowEnd,
        ...(opts.binary === "bytes" ? { utf8: false } : {}),
      });
    } catch (err) {
      throw new Error(
        `${where}: cannot decode columns ${columns.join(", ")} (truncated or corrupt?): ${(err as Error).message}`,
        { cause: err },
      );
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
export function packColumn(
  rows: readonly Record<string, unknown>[],
  feature: FeatureInfo,
  ctx: ColumnContext,
): ColumnArray {
  const per = frameSize(feature.shape);
  const kind = arrayKindFor(feature.dtype);
  const n = rows.length;
  const out: ColumnArray =
    kind === "f32"
      ? new Float32Array(n * per)
      : kind === "f64"
        ? new Float64Array(n * per)
        : new BigInt64Array(n * per);
  const isFloat = feature.dtype.startsWith("float");
  const where = (frame: number): string =>
    `${ctx.file}: column '${ctx.column}' (episode ${ctx.episode}, frame ${frame})`;
  const flat: unknown[] = [];
  const flatten = (v: unknown): void => {
    if (Array.isArray(v)) for (const x of v) flatten(x);
    else if (ArrayBuffer.isView(v) && !(v instanceof DataView))
      for (const x of Array.from(v as unknown as ArrayLike<unknown>)) flat.push(x);
    else flat.push(v);
  };
  for (let r = 0; r < n; r++) {
    flat.length = 0;
    flatten(rows[r]![ctx.column]);
    if (flat.length !== per) {
      throw new Error(
        `${where(r)}: has ${flat.length} values, meta/info.json shape [${feature.shape.join(", ")}] needs ${per}`,
      );
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
        const x =
          typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : typeof v === "boolean" ? (v ? 1 : 0) : NaN;
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

/** Physical type of a written column's leaf values. */
export type LeafType = "FLOAT" | "DOUBLE" | "INT64" | "STRING";

/** A column to write: `depth` 0 is a scalar per row, 1 a list, 2 a list of lists (pyarrow's layout). */
export interface OutColumn {
  name: string;
  type: LeafType;
  depth: number;
  /** The column's values for rows `[start, end)`: a typed array or an array (nested arrays for lists). */
  slice(start: number, end: number): ArrayLike<unknown>;
}

/**
 * Encodes a parquet file in memory (snappy, nullable columns and 3-level lists as pyarrow writes
 * them), one row group per `rowGroupRows` rows (default 10000) so only that slice is ever expanded
 * to JS arrays. `keyValue` goes to the footer (e.g. the "huggingface" features or "pandas" index).
 */
export function encodeParquet(
  columns: readonly OutColumn[],
  rows: number,
  opts: { keyValue?: Record<string, string>; rowGroupRows?: number } = {},
): Uint8Array {
  const schema: SchemaElement[] = [{ name: "schema", num_children: columns.length }];
  for (const c of columns) {
    let name = c.name;
    for (let d = 0; d < c.depth; d++) {
      schema.push({ name, repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 });
      schema.push({ name: "list", repetition_type: "REPEATED", num_children: 1 });
      name = "element";
    }
    if (c.type === "STRING")
      schema.push({ name, type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" });
    else schema.push({ name, type: c.type, repetition_type: "OPTIONAL" });
  }
  const writer = new ByteWriter();
  const kv = opts.keyValue ? Object.entries(opts.keyValue).map(([key, value]) => ({ key, value })) : undefined;
  const pq = new ParquetWriter({ writer, schema, kvMetadata: kv, createdBy: "actionflow" });
  const step = opts.rowGroupRows ?? 10_000;
  for (let start = 0; start < rows; start += step) {
    const end = Math.min(rows, start + step);
    const columnData = columns.map((c) => ({ name: c.name, data: c.slice(start, end) as DecodedArray }));
    void pq.write({ columnData, rowGroupSize: end - start });
  }
  void pq.finish();
  return new Uint8Array(writer.getBuffer());
}

/** Splits a flat `[rows, ...shape]` array into per-row nested JS arrays for rows `[start, end)`. */
export function nestedRows(
  data: ArrayLike<number | bigint>,
  shape: readonly number[],
  start: number,
  end: number,
): unknown[] {
  const per = frameSize(shape);
  const out: unknown[] = new Array(end - start);
  const build = (offset: number, dims: readonly number[]): unknown[] => {
    const [n, ...rest] = dims;
    const arr: unknown[] = new Array(n);
    const stride = frameSize(rest);
    for (let i = 0; i < n!; i++) arr[i] = rest.length === 0 ? data[offset + i] : build(offset + i * stride, rest);
    return arr;
  };
  for (let r = start; r < end; r++) out[r - start] = build(r * per, shape);
  return out;
}
