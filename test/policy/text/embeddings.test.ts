import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { encodeSafetensors, halfToFloat } from "../../../policy/checkpoint/safetensors.ts";
import { promptTableOf, readPromptTable, tableVectors } from "../../../policy/text/embeddings.ts";
import { findPython, pythonMissing, runPython } from "../../bridge/python.ts";

const root = mkdtempSync(join(tmpdir(), "actionflow-embeddings-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A safetensors file from raw tensors: 8-byte little-endian header length, JSON header, data. */
function rawSafetensors(tensors: { name: string; dtype: string; shape: number[]; bytes: Uint8Array }[]): Uint8Array {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const t of tensors) {
    out.set(t.bytes, at);
    at += t.bytes.length;
  }
  return out;
}

const u16 = (...bits: number[]): Uint8Array => new Uint8Array(Uint16Array.from(bits).buffer);
const f64 = (...xs: number[]): Uint8Array => new Uint8Array(Float64Array.from(xs).buffer);

describe("a prompt embeddings file (safetensors)", () => {
  it("reads one F32 vector per prompt, in the file's order, and finds the dataset's prompts normalised", async () => {
    const file = join(root, "f32.safetensors");
    writeFileSync(
      file,
      encodeSafetensors(
        new Map([
          ["pass through the left gap", { shape: [3], data: Float32Array.of(1, 0, 0.5) }],
          ["pass through the right gap", { shape: [3], data: Float32Array.of(0, 1, -0.5) }],
        ]),
      ),
    );
    const table = await readPromptTable(file);
    expect(table.dim).toBe(3);
    expect(table.prompts).toEqual(["pass through the left gap", "pass through the right gap"]);
    const [right, left] = tableVectors(table, ["Pass through the RIGHT gap.", "pass through the left gap"]);
    expect(Array.from(right!)).toEqual([0, 1, -0.5]);
    expect(Array.from(left!)).toEqual([1, 0, 0.5]);
    expect(() => tableVectors(table, ["go up", "pass through the left gap", "go down"])).toThrow(
      `${file}: no embedding for the dataset tasks "go up", "go down" (the file has "pass through the left gap", "pass through the right gap")`,
    );
  });

  it("converts F16 (subnormals included), BF16 and F64 to float32", () => {
    const table = promptTableOf(
      rawSafetensors([
        // 1, -2, 0.5, 65504 (the largest half), 2^-24 (the smallest subnormal)
        { name: "half", dtype: "F16", shape: [5], bytes: u16(0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001) },
        // 1, -2, 0.5, 3.140625, 1e-3 rounded by the bf16 grid
        { name: "brain", dtype: "BF16", shape: [5], bytes: u16(0x3f80, 0xc000, 0x3f00, 0x4049, 0x3a83) },
        { name: "double", dtype: "F64", shape: [5], bytes: f64(1, -2, 0.5, Math.PI, 1e-3) },
      ]),
      "mixed.safetensors",
    );
    expect(Array.from(table.vectors[0]!)).toEqual([1, -2, 0.5, 65504, 2 ** -24]);
    expect(Array.from(table.vectors[1]!)).toEqual([1, -2, 0.5, 3.140625, Math.fround(0.00099945068359375)]);
    expect(Array.from(table.vectors[2]!)).toEqual([1, -2, 0.5, Math.fround(Math.PI), Math.fround(1e-3)]);
    expect(halfToFloat(0x7c00)).toBe(Infinity);
    expect(halfToFloat(0xfc00)).toBe(-Infinity);
    expect(Number.isNaN(halfToFloat(0x7e00))).toBe(true);
  });

  it("refuses another layout, dtype or size, a bad header and a duplicate prompt, naming the file and tensor", () => {
    const f32 = (...xs: number[]): Uint8Array => new Uint8Array(Float32Array.from(xs).buffer);
    const src = "p.safetensors";
    expect(() =>
      promptTableOf(rawSafetensors([{ name: "a b", dtype: "F32", shape: [2, 2], bytes: f32(1, 2, 3, 4) }]), src),
    ).toThrow(`${src}: tensor "a b" has shape [2, 2]; a prompt's embedding is one 1-D tensor [D] named by the prompt`);
    expect(() =>
      promptTableOf(rawSafetensors([{ name: "ids", dtype: "I64", shape: [1], bytes: new Uint8Array(8) }]), src),
    ).toThrow(`${src}: tensor 'ids' has dtype I64; only F32, F16, BF16, F64 are supported`);
    expect(() =>
      promptTableOf(
        rawSafetensors([
          { name: "left", dtype: "F32", shape: [2], bytes: f32(1, 2) },
          { name: "right", dtype: "F32", shape: [3], bytes: f32(1, 2, 3) },
        ]),
        src,
      ),
    ).toThrow(
      `${src}: tensor "right" has 3 values, the first one "left" 2; every prompt's embedding has the same size`,
    );
    expect(() =>
      promptTableOf(
        rawSafetensors([
          { name: "Left.", dtype: "F32", shape: [1], bytes: f32(1) },
          { name: "left", dtype: "F32", shape: [1], bytes: f32(2) },
        ]),
        src,
      ),
    ).toThrow(`${src}: tensors "Left." and "left" are the same prompt after normalisation`);
    expect(() =>
      promptTableOf(rawSafetensors([{ name: "x", dtype: "F32", shape: [2], bytes: f32(1, NaN) }]), src),
    ).toThrow(`${src}: tensor "x" has a non-finite value at index 1`);
    const bad = rawSafetensors([{ name: "x", dtype: "F32", shape: [1], bytes: f32(1) }]);
    bad[8] = "[".charCodeAt(0); // the JSON header no longer parses
    expect(() => promptTableOf(bad, src)).toThrow(/p\.safetensors: header/);
    const long = rawSafetensors([{ name: "x", dtype: "F32", shape: [1], bytes: f32(1) }]);
    new DataView(long.buffer).setBigUint64(0, 1000n, true);
    expect(() => promptTableOf(long, src)).toThrow(`${src}: header length 1000 exceeds file size ${long.length}`);
    expect(() => promptTableOf(rawSafetensors([]), src)).toThrow(`${src}: holds no tensor`);
  });

  it("names the file it cannot read", async () => {
    await expect(readPromptTable(join(root, "none.safetensors"))).rejects.toThrow(
      /--task-embeddings .*none\.safetensors: cannot read the file/,
    );
  });

  const py = findPython(["numpy"]);
  it.skipIf(!py)("reads F16 and F64 vectors numpy wrote as numpy reads them", () => {
    const file = join(root, "numpy.safetensors");
    const script = `
import json, struct, sys, numpy as np
rng = np.random.default_rng(7)
a = (rng.standard_normal(6) * 3).astype(np.float16)
b = rng.standard_normal(6).astype(np.float64)
data = a.tobytes() + b.tobytes()
header = json.dumps({"go left": {"dtype": "F16", "shape": [6], "data_offsets": [0, 12]},
                     "go right": {"dtype": "F64", "shape": [6], "data_offsets": [12, 60]}}).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(header)) + header + data)
print(json.dumps([a.astype(np.float32).tolist(), b.astype(np.float32).tolist()]))`;
    const want = JSON.parse(runPython(py!, script, undefined, [file]).toString()) as number[][];
    const table = promptTableOf(new Uint8Array(readFileSync(file)), file);
    expect(table.prompts).toEqual(["go left", "go right"]);
    expect(Array.from(table.vectors[0]!)).toEqual(want[0]);
    expect(Array.from(table.vectors[1]!)).toEqual(want[1]);
  });
  it.skipIf(py !== undefined)(pythonMissing(["numpy"]), () => {
    expect(py).toBeUndefined();
  });
});
