/**
 * safetensors encoding (huggingface/safetensors): 8-byte little-endian header length, a JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}}`, then the raw bytes.
 * Only F32 is written; F32, F16, BF16 and F64 are read (converted to float32), other dtypes refused
 * naming the tensor.
 */
import type { NamedArray } from "../net/ops.ts";
import { z } from "zod";
import { parseJson, parseValue } from "../io/json.ts";

/** Encodes named float32 arrays (sorted by name) into one safetensors buffer. */
export function encodeSafetensors(tensors: Map<string, NamedArray>, metadata: Record<string, string> = {}): Uint8Array {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length)
      throw new Error(
        `tensor '${name}': shape [${t.shape.join(", ")}] has ${n} elements but data has ${t.data.length}`,
      );
    header[name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + 4 * n] };
    offset += 4 * n;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8 !== 0) json += " ";
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  const base = 8 + headerBytes.length;
  for (const name of names) {
    const t = tensors.get(name)!;
    const [begin] = (header[name] as { data_offsets: [number, number] }).data_offsets;
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), base + begin);
  }
  return out;
}

/** A header entry: dtype, shape and the byte range of the tensor after the header. */
const TensorEntrySchema = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
});
/** The header's `__metadata__`: strings only (safetensors' rule). */
const MetadataSchema = z.record(z.string(), z.string());

/** Decodes a safetensors buffer; `source` names the file in errors. */
export function decodeSafetensors(
  bytes: Uint8Array,
  source = "safetensors",
): { tensors: Map<string, NamedArray>; metadata: Record<string, string> } {
  if (bytes.length < 8) throw new Error(`${source}: truncated (${bytes.length} bytes)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (8 + headerLen > bytes.length)
    throw new Error(`${source}: header length ${headerLen} exceeds file size ${bytes.length}`);
  const header = parseJson(
    new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)),
    z.record(z.string(), z.unknown()),
    `${source}: header`,
  );
  const base = 8 + headerLen;
  const tensors = new Map<string, NamedArray>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = parseValue(entry ?? {}, MetadataSchema, `${source}: __metadata__`);
      continue;
    }
    const e = parseValue(entry, TensorEntrySchema, `${source}: tensor '${name}'`);
    const width = FLOAT_WIDTHS[e.dtype];
    if (width === undefined)
      throw new Error(
        `${source}: tensor '${name}' has dtype ${e.dtype}; only ${Object.keys(FLOAT_WIDTHS).join(", ")} are supported`,
      );
    const [begin, end] = e.data_offsets;
    const n = e.shape.reduce((a, b) => a * b, 1);
    if (end - begin !== width * n || base + end > bytes.length) {
      throw new Error(
        `${source}: tensor '${name}' offsets [${begin}, ${end}] do not fit shape [${e.shape.join(", ")}] of ${e.dtype} or the file (${bytes.length} bytes)`,
      );
    }
    tensors.set(name, { shape: e.shape, data: toFloat32(bytes.subarray(base + begin, base + end), e.dtype, n) });
  }
  return { tensors, metadata };
}

/** Bytes per element of the float dtypes the reader converts to float32. */
const FLOAT_WIDTHS: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8 };

/** `n` little-endian values of `dtype` (a key of {@link FLOAT_WIDTHS}) as float32. */
function toFloat32(raw: Uint8Array, dtype: string, n: number): Float32Array {
  const out = new Float32Array(n);
  if (dtype === "F32") {
    new Uint8Array(out.buffer).set(raw);
    return out;
  }
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  for (let i = 0; i < n; i++) {
    if (dtype === "F64") out[i] = view.getFloat64(8 * i, true);
    else if (dtype === "BF16") out[i] = bf16ToFloat(view.getUint16(2 * i, true));
    else out[i] = halfToFloat(view.getUint16(2 * i, true));
  }
  return out;
}

/** IEEE 754 binary16 bits -> its value (subnormals, infinities and NaN included). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** bfloat16 bits -> its value (the upper half of a float32). */
function bf16ToFloat(b: number): number {
  const f = new Float32Array(1);
  new Uint32Array(f.buffer)[0] = b << 16;
  return f[0]!;
}
