/**
 * msgpack with numpy arrays, as openpi's `msgpack_numpy` writes them: the payload format of both
 * policy servers (`bridge/server/`).
 *
 * An array is a map `{"__ndarray__": true, "data": <bin>, "dtype": <numpy dtype.str>, "shape": [..]}`,
 * a numpy scalar a map `{"__npgeneric__": true, "data": <value>, "dtype": <dtype.str>}`. openpi writes
 * these keys as msgpack **bin** (Python `b"..."`) and its decoder only recognises bin keys, so
 * {@link encodeMsgpackNumpy} writes them as bin; {@link decodeMsgpackNumpy} accepts str or bin keys.
 * `dtype.str` is a byte order (`<` little, `>` big, `|` not applicable) and a kind + item size:
 * `b1`, `i1..i8`, `u1..u8`, `f2`, `f4`, `f8`. Structured (`V`), object (`O`) and complex (`c`)
 * dtypes are refused as openpi refuses them; so are strings (`U`, `S`) and dates (`M`, `m`), which
 * no policy input needs. Every error names the key path of the offending value.
 *
 * Decoding uses `@msgpack/msgpack`; encoding is written here because that library cannot write
 * bin map keys.
 */
import { Decoder } from "@msgpack/msgpack";

/** A numeric typed array of one of the supported dtypes (bool arrays are `Uint8Array` of 0/1). */
export type NumericArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

/**
 * A numpy array: `data` in the host's (little-endian) byte order, row-major over `shape`. `dtype` is
 * the little-endian (or `|`) numpy `dtype.str` of `data`, e.g. `<f4`, `|u1`, `|b1` (a decoded `>f4`
 * array is byte-swapped and reported as `<f4`).
 */
export class NdArray {
  constructor(
    readonly dtype: string,
    readonly shape: readonly number[],
    readonly data: NumericArray,
  ) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (n !== data.length)
      throw new Error(`NdArray: shape [${shape.join(", ")}] holds ${n} values, data has ${data.length}`);
  }

  /** A float32 array `<f4` of `shape` (defaults to 1-D). */
  static float32(data: Float32Array, shape: readonly number[] = [data.length]): NdArray {
    return new NdArray("<f4", shape, data);
  }

  /** The values as float32 (ints, bools and float64 converted; int64 beyond 2^53 rounds). */
  toFloat32(): Float32Array {
    if (this.data instanceof Float32Array) return this.data;
    const out = new Float32Array(this.data.length);
    for (let i = 0; i < out.length; i++) out[i] = Number(this.data[i]!);
    return out;
  }
}

/** A numpy scalar (`np.float32(1.5)`, `np.int64(3)`, `np.bool_(True)`): its value and `dtype.str`. */
export class NpScalar {
  constructor(
    readonly dtype: string,
    readonly value: number | boolean | bigint,
  ) {}
}

/** A value msgpack-numpy carries: msgpack's own types plus arrays and numpy scalars. */
export type MsgValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | NdArray
  | NpScalar
  | MsgValue[]
  | { [key: string]: MsgValue };

/** A map of msgpack-numpy values (what a request or reply is). */
export type MsgMap = { [key: string]: MsgValue };

/** True when a decoded value is a map (not an array, bytes, an array or a numpy scalar). */
export function isMsgMap(m: MsgValue): m is MsgMap {
  return (
    typeof m === "object" &&
    m !== null &&
    !Array.isArray(m) &&
    !(m instanceof Uint8Array) &&
    !(m instanceof NdArray) &&
    !(m instanceof NpScalar)
  );
}

/** An error in a msgpack-numpy payload; the message names the key path. */
export class MsgpackNumpyError extends Error {
  override readonly name = "MsgpackNumpyError";
}

/** Limits of {@link decodeMsgpackNumpy}. */
export interface DecodeLimits {
  /** Longest bin (array data) accepted, bytes (default 64 MiB). */
  maxBinBytes?: number;
  /** Longest string, bytes (default 1 MiB). */
  maxStrBytes?: number;
  /** Most elements of one msgpack array or map (default 65536). */
  maxItems?: number;
  /** Deepest nesting of maps and lists (default 32). */
  maxDepth?: number;
}

const MAX_DEPTH = 32;

/** Decodes one msgpack-numpy payload; throws {@link MsgpackNumpyError} naming the bad key. */
export function decodeMsgpackNumpy(bytes: Uint8Array, limits: DecodeLimits = {}): MsgValue {
  const decoder = new Decoder({
    maxBinLength: limits.maxBinBytes ?? 64 * 1024 * 1024,
    maxStrLength: limits.maxStrBytes ?? 1024 * 1024,
    maxArrayLength: limits.maxItems ?? 65536,
    maxMapLength: limits.maxItems ?? 65536,
    maxExtLength: 0,
    mapKeyConverter: mapKey,
  });
  let raw: unknown;
  try {
    raw = decoder.decode(bytes);
  } catch (err) {
    throw new MsgpackNumpyError(`msgpack: ${(err as Error).message}`, { cause: err });
  }
  return convert(raw, "", 0, limits.maxDepth ?? MAX_DEPTH);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function mapKey(key: unknown): string | number {
  let k: string | number;
  if (typeof key === "string" || typeof key === "number") k = key;
  else if (key instanceof Uint8Array) {
    try {
      k = utf8.decode(key);
    } catch {
      throw new MsgpackNumpyError(`msgpack: a bin map key is not UTF-8`);
    }
  } else throw new MsgpackNumpyError(`msgpack: a map key must be str, bin or an integer, got ${typeof key}`);
  if (k === "__proto__") throw new MsgpackNumpyError(`msgpack: the map key __proto__ is not allowed`);
  return k;
}

function where(path: string): string {
  return path === "" ? "the payload" : `'${path}'`;
}

function convert(x: unknown, path: string, depth: number, maxDepth: number): MsgValue {
  if (x === null || typeof x === "boolean" || typeof x === "number" || typeof x === "bigint" || typeof x === "string")
    return x;
  if (x instanceof Uint8Array) return x;
  if (x === undefined) return null;
  if (depth >= maxDepth) throw new MsgpackNumpyError(`${where(path)} is nested deeper than ${maxDepth} levels`);
  if (Array.isArray(x)) return x.map((v, i) => convert(v, `${path}[${i}]`, depth + 1, maxDepth));
  if (typeof x === "object") {
    const o = x as Record<string, unknown>;
    if (o["__ndarray__"] === true) return decodeArray(o, path);
    if (o["__npgeneric__"] === true) return decodeScalar(o, path);
    const out: MsgMap = {};
    for (const [k, v] of Object.entries(o)) out[k] = convert(v, path === "" ? k : `${path}/${k}`, depth + 1, maxDepth);
    return out;
  }
  throw new MsgpackNumpyError(`${where(path)}: unsupported msgpack value (${typeof x})`);
}

interface DtypeInfo {
  order: "<" | ">" | "|";
  kind: "b" | "i" | "u" | "f";
  size: number;
}

const REFUSED: Record<string, string> = {
  V: "structured",
  O: "object",
  c: "complex",
  U: "unicode string",
  S: "byte string",
  M: "datetime",
  m: "timedelta",
};

/** Parses a numpy `dtype.str` (`<f4`, `>i8`, `|u1`); throws naming `path`. */
export function parseDtype(dtype: unknown, path: string): DtypeInfo {
  if (typeof dtype !== "string")
    throw new MsgpackNumpyError(`${where(path)}: dtype must be a numpy dtype.str string, got ${typeof dtype}`);
  const m = /^([<>|=])([a-zA-Z])(\d+)$/.exec(dtype);
  if (!m) throw new MsgpackNumpyError(`${where(path)}: dtype '${dtype}' is not a numpy dtype.str like '<f4'`);
  const [, orderRaw, kind, sizeStr] = m as unknown as [string, string, string, string];
  if (REFUSED[kind]) throw new MsgpackNumpyError(`${where(path)}: dtype '${dtype}' (${REFUSED[kind]}) is refused`);
  const size = Number(sizeStr);
  const ok =
    (kind === "b" && size === 1) ||
    ((kind === "i" || kind === "u") && [1, 2, 4, 8].includes(size)) ||
    (kind === "f" && [2, 4, 8].includes(size));
  if (!ok) throw new MsgpackNumpyError(`${where(path)}: dtype '${dtype}' is not supported`);
  if (orderRaw === "=") throw new MsgpackNumpyError(`${where(path)}: dtype '${dtype}': byte order '=' is ambiguous`);
  const order = orderRaw as "<" | ">" | "|";
  if (size > 1 && order === "|")
    throw new MsgpackNumpyError(`${where(path)}: dtype '${dtype}' has no byte order for ${size}-byte items`);
  return { order, kind: kind as DtypeInfo["kind"], size };
}

function decodeArray(o: Record<string, unknown>, path: string): NdArray {
  const info = parseDtype(o["dtype"], path);
  const shape = o["shape"];
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === "number" && Number.isInteger(d) && d >= 0))
    throw new MsgpackNumpyError(`${where(path)}: shape must be a list of non-negative integers`);
  const data = o["data"];
  if (!(data instanceof Uint8Array)) throw new MsgpackNumpyError(`${where(path)}: data must be bin (bytes)`);
  const n = (shape as number[]).reduce((a, b) => a * b, 1);
  if (data.byteLength !== n * info.size)
    throw new MsgpackNumpyError(
      `${where(path)}: ${data.byteLength} data bytes, shape [${shape.join(", ")}] of '${String(o["dtype"])}' needs ${n * info.size}`,
    );
  // Copy into an aligned buffer in host (little-endian) order.
  const buf = new Uint8Array(data.byteLength);
  buf.set(data);
  if (info.order === ">" && info.size > 1) {
    for (let i = 0; i < buf.length; i += info.size) buf.subarray(i, i + info.size).reverse();
  }
  const typed = typedFrom(buf.buffer, info);
  return new NdArray(canonicalDtype(info), shape as number[], typed);
}

function canonicalDtype(info: DtypeInfo): string {
  const kindSize = info.kind === "f" && info.size === 2 ? "f4" : `${info.kind}${info.size}`;
  return `${info.size === 1 ? "|" : "<"}${kindSize}`;
}

function typedFrom(buf: ArrayBuffer, info: DtypeInfo): NumericArray {
  switch (info.kind) {
    case "b": {
      const u = new Uint8Array(buf);
      for (let i = 0; i < u.length; i++) u[i] = u[i] ? 1 : 0;
      return u;
    }
    case "f":
      if (info.size === 2) return halfToFloat(new Uint16Array(buf));
      return info.size === 4 ? new Float32Array(buf) : new Float64Array(buf);
    case "i":
      return info.size === 1
        ? new Int8Array(buf)
        : info.size === 2
          ? new Int16Array(buf)
          : info.size === 4
            ? new Int32Array(buf)
            : new BigInt64Array(buf);
    case "u":
      return info.size === 1
        ? new Uint8Array(buf)
        : info.size === 2
          ? new Uint16Array(buf)
          : info.size === 4
            ? new Uint32Array(buf)
            : new BigUint64Array(buf);
    default: {
      const never: never = info.kind;
      throw new Error(`unhandled dtype kind ${String(never)}`);
    }
  }
}

function halfToFloat(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) {
    const v = h[i]!;
    const sign = v & 0x8000 ? -1 : 1;
    const exp = (v >> 10) & 0x1f;
    const frac = v & 0x3ff;
    out[i] =
      exp === 0
        ? sign * 2 ** -14 * (frac / 1024)
        : exp === 31
          ? frac
            ? Number.NaN
            : sign * Infinity
          : sign * 2 ** (exp - 15) * (1 + frac / 1024);
  }
  return out;
}

function decodeScalar(o: Record<string, unknown>, path: string): NpScalar {
  const info = parseDtype(o["dtype"], path);
  const v = o["data"];
  if (typeof v !== "number" && typeof v !== "boolean" && typeof v !== "bigint")
    throw new MsgpackNumpyError(`${where(path)}: a numpy scalar's data must be a number or bool, got ${typeof v}`);
  return new NpScalar(canonicalDtype(info), v);
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** Encodes a value as msgpack-numpy (arrays and scalars with bin keys, as openpi writes them). */
export function encodeMsgpackNumpy(value: MsgValue): Uint8Array {
  const w = new Writer();
  w.value(value, "", 0);
  return w.finish();
}

const enc = new TextEncoder();
const BIN_KEYS = {
  ndarray: enc.encode("__ndarray__"),
  npgeneric: enc.encode("__npgeneric__"),
  data: enc.encode("data"),
  dtype: enc.encode("dtype"),
  shape: enc.encode("shape"),
};

class Writer {
  private buf = new Uint8Array(1024);
  private view = new DataView(this.buf.buffer);
  private pos = 0;

  finish(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  private u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  private head(small: number, smallMax: number, codes: [number, number, number], n: number): void {
    this.ensure(5);
    if (n < smallMax && small >= 0) this.buf[this.pos++] = small + n;
    else if (n < 0x100 && codes[0] !== 0) {
      this.buf[this.pos++] = codes[0];
      this.buf[this.pos++] = n;
    } else if (n < 0x10000) {
      this.buf[this.pos++] = codes[1];
      this.view.setUint16(this.pos, n);
      this.pos += 2;
    } else {
      this.buf[this.pos++] = codes[2];
      this.view.setUint32(this.pos, n);
      this.pos += 4;
    }
  }

  private str(s: string): void {
    const b = enc.encode(s);
    this.head(0xa0, 32, [0xd9, 0xda, 0xdb], b.length);
    this.raw(b);
  }

  private bin(b: Uint8Array): void {
    this.head(-1, 0, [0xc4, 0xc5, 0xc6], b.length);
    this.raw(b);
  }

  private raw(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  private mapHead(n: number): void {
    this.head(0x80, 16, [0, 0xde, 0xdf], n);
  }

  private arrayHead(n: number): void {
    this.head(0x90, 16, [0, 0xdc, 0xdd], n);
  }

  private number(v: number): void {
    if (Number.isInteger(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER) {
      this.int(BigInt(v));
      return;
    }
    this.ensure(9);
    this.buf[this.pos++] = 0xcb;
    this.view.setFloat64(this.pos, v);
    this.pos += 8;
  }

  private int(v: bigint): void {
    this.ensure(9);
    if (v >= 0n && v < 128n) this.buf[this.pos++] = Number(v);
    else if (v < 0n && v >= -32n) this.buf[this.pos++] = 0x100 + Number(v);
    else if (v >= 0n && v <= 0xffffffffn) {
      this.buf[this.pos++] = 0xce;
      this.view.setUint32(this.pos, Number(v));
      this.pos += 4;
    } else if (v >= 0n && v <= 0xffffffffffffffffn) {
      this.buf[this.pos++] = 0xcf;
      this.view.setBigUint64(this.pos, v);
      this.pos += 8;
    } else if (v >= -(2n ** 31n)) {
      this.buf[this.pos++] = 0xd2;
      this.view.setInt32(this.pos, Number(v));
      this.pos += 4;
    } else if (v >= -(2n ** 63n)) {
      this.buf[this.pos++] = 0xd3;
      this.view.setBigInt64(this.pos, v);
      this.pos += 8;
    } else throw new MsgpackNumpyError(`integer ${v} does not fit msgpack's 64 bits`);
  }

  value(x: MsgValue, path: string, depth: number): void {
    if (depth > MAX_DEPTH) throw new MsgpackNumpyError(`${where(path)} is nested deeper than ${MAX_DEPTH} levels`);
    if (x === null || x === undefined) this.u8(0xc0);
    else if (typeof x === "boolean") this.u8(x ? 0xc3 : 0xc2);
    else if (typeof x === "number") this.number(x);
    else if (typeof x === "bigint") this.int(x);
    else if (typeof x === "string") this.str(x);
    else if (x instanceof NdArray) this.ndarray(x, path);
    else if (x instanceof NpScalar) this.scalar(x, path);
    else if (x instanceof Uint8Array) this.bin(x);
    else if (Array.isArray(x)) {
      this.arrayHead(x.length);
      x.forEach((v, i) => this.value(v, `${path}[${i}]`, depth + 1));
    } else if (typeof x === "object") {
      const entries = Object.entries(x).filter(([, v]) => v !== undefined);
      this.mapHead(entries.length);
      for (const [k, v] of entries) {
        this.str(k);
        this.value(v, path === "" ? k : `${path}/${k}`, depth + 1);
      }
    } else throw new MsgpackNumpyError(`${where(path)}: cannot encode a ${typeof x}`);
  }

  private ndarray(a: NdArray, path: string): void {
    const info = parseDtype(a.dtype, path);
    if (info.order === ">") throw new MsgpackNumpyError(`${where(path)}: NdArray data is host order, not '${a.dtype}'`);
    this.mapHead(4);
    this.bin(BIN_KEYS.ndarray);
    this.u8(0xc3);
    this.bin(BIN_KEYS.data);
    this.bin(new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength));
    this.bin(BIN_KEYS.dtype);
    this.str(a.dtype);
    this.bin(BIN_KEYS.shape);
    this.arrayHead(a.shape.length);
    for (const d of a.shape) this.int(BigInt(d));
  }

  private scalar(s: NpScalar, path: string): void {
    parseDtype(s.dtype, path);
    this.mapHead(3);
    this.bin(BIN_KEYS.npgeneric);
    this.u8(0xc3);
    this.bin(BIN_KEYS.data);
    if (typeof s.value === "boolean") this.u8(s.value ? 0xc3 : 0xc2);
    else if (typeof s.value === "bigint") this.int(s.value);
    else this.number(s.value);
    this.bin(BIN_KEYS.dtype);
    this.str(s.dtype);
  }
}
