import { describe, expect, it } from "vitest";
import { encode } from "@msgpack/msgpack";
import {
  MsgpackNumpyError,
  NdArray,
  NpScalar,
  decodeMsgpackNumpy,
  encodeMsgpackNumpy,
  type MsgMap,
} from "../../../bridge/codec/msgpack-numpy.ts";
import { OPENPI_MSGPACK_NUMPY, findPython, pythonMissing, runPython } from "../python.ts";

const py = findPython(["msgpack", "numpy"]);

/** An array map with str keys (as some clients write it). */
function strKeyArray(dtype: string, shape: number[], data: Uint8Array): Uint8Array {
  return encode({ x: { __ndarray__: true, data, dtype, shape } });
}

describe("msgpack-numpy codec", () => {
  it("round-trips nested maps, lists, strings, arrays of every dtype and numpy scalars", () => {
    const value: MsgMap = {
      prompt: "pick up the cube",
      n: 3,
      big: 2 ** 40,
      neg: -70000,
      f: 1.25,
      ok: true,
      none: null,
      raw: Uint8Array.of(1, 2, 3),
      nested: { list: [1, "two", [3.5, { deep: NdArray.float32(Float32Array.of(1, -2, 3.5), [3, 1]) }]] },
      f8: new NdArray("<f8", [2, 2], Float64Array.of(1e-300, -2, 3, 4)),
      i8: new NdArray("<i8", [2], BigInt64Array.of(-5n, 2n ** 40n)),
      u2: new NdArray("<u2", [3], Uint16Array.of(0, 1, 65535)),
      i1: new NdArray("|i1", [2], Int8Array.of(-128, 127)),
      b1: new NdArray("|b1", [3], Uint8Array.of(1, 0, 1)),
      img: new NdArray(
        "|u1",
        [2, 2, 3],
        Uint8Array.from({ length: 12 }, (_, i) => i * 20),
      ),
      empty: new NdArray("<f4", [0, 7], new Float32Array(0)),
      s32: new NpScalar("<f4", 1.5),
      si: new NpScalar("<i8", 42),
      sb: new NpScalar("|b1", true),
    };
    const back = decodeMsgpackNumpy(encodeMsgpackNumpy(value)) as MsgMap;
    expect(back).toEqual(value);
    const deep = ((back["nested"] as MsgMap)["list"] as unknown[])[2] as unknown[];
    expect((deep[1] as { deep: NdArray }).deep.shape).toEqual([3, 1]);
  });

  it("writes array and scalar keys as msgpack bin, as openpi's decoder requires", () => {
    const bytes = encodeMsgpackNumpy({ a: NdArray.float32(Float32Array.of(1)) });
    // fixmap(1), fixstr "a", fixmap(4), bin8(11) "__ndarray__"
    expect(Array.from(bytes.subarray(0, 6))).toEqual([0x81, 0xa1, 0x61, 0x84, 0xc4, 11]);
    expect(new TextDecoder().decode(bytes.subarray(6, 17))).toBe("__ndarray__");
  });

  it("accepts str keys and big-endian arrays", () => {
    const be = new Uint8Array(8);
    new DataView(be.buffer).setFloat32(0, 1.5, false);
    new DataView(be.buffer).setFloat32(4, -7.25, false);
    const x = (decodeMsgpackNumpy(strKeyArray(">f4", [2], be)) as MsgMap)["x"] as NdArray;
    expect(x.dtype).toBe("<f4");
    expect(Array.from(x.data as Float32Array)).toEqual([1.5, -7.25]);
    const le16 = Uint8Array.of(0x00, 0x3c, 0x00, 0xc0); // float16 1.0, -2.0
    const h = (decodeMsgpackNumpy(strKeyArray("<f2", [2], le16)) as MsgMap)["x"] as NdArray;
    expect(Array.from(h.toFloat32())).toEqual([1, -2]);
  });

  it("refuses structured, object, complex and malformed arrays, naming the key", () => {
    const refuse = (dtype: string, re: RegExp, shape = [1], bytes = 8): void => {
      expect(() => decodeMsgpackNumpy(strKeyArray(dtype, shape, new Uint8Array(bytes)))).toThrow(re);
    };
    refuse("|V8", /'x': dtype '\|V8' \(structured\) is refused/);
    refuse("|O8", /'x': dtype '\|O8' \(object\) is refused/);
    refuse("<c8", /'x': dtype '<c8' \(complex\) is refused/);
    refuse("<U2", /'x': dtype '<U2' \(unicode string\) is refused/);
    refuse("<f3", /'x': dtype '<f3' is not supported/);
    refuse("float32", /'x': dtype 'float32' is not a numpy dtype.str/);
    refuse("|f4", /no byte order/, [2]);
    refuse("<f4", /'x': 8 data bytes, shape \[3\] of '<f4' needs 12/, [3]);
    expect(() =>
      decodeMsgpackNumpy(encode({ obs: { s: { __ndarray__: true, data: "no", dtype: "<f4", shape: [0] } } })),
    ).toThrow(/'obs\/s': data must be bin/);
    expect(() =>
      decodeMsgpackNumpy(encode({ a: { __ndarray__: true, data: new Uint8Array(4), dtype: "<f4", shape: [-1] } })),
    ).toThrow(/'a': shape must be a list of non-negative integers/);
    expect(() => decodeMsgpackNumpy(encode({ s: { __npgeneric__: true, data: "x", dtype: "<f4" } }))).toThrow(
      /'s': a numpy scalar's data must be a number/,
    );
    expect(() => decodeMsgpackNumpy(encode({ s: { __npgeneric__: true, data: 1, dtype: "<c16" } }))).toThrow(
      /'s': dtype '<c16' \(complex\) is refused/,
    );
    expect(() => encodeMsgpackNumpy({ z: new NdArray("<c8", [1], new Float32Array(1)) })).toThrow(/'z'.*complex/);
  });

  it("refuses garbage, truncated payloads, __proto__ keys and limit breaches with MsgpackNumpyError", () => {
    expect(() => decodeMsgpackNumpy(Uint8Array.of(0xc1))).toThrow(MsgpackNumpyError);
    const good = encodeMsgpackNumpy({ a: NdArray.float32(new Float32Array(10)) });
    expect(() => decodeMsgpackNumpy(good.subarray(0, good.length - 3))).toThrow(MsgpackNumpyError);
    // {"__proto__": 1} with a bin key
    const proto = Uint8Array.of(0x81, 0xc4, 9, ...new TextEncoder().encode("__proto__"), 1);
    expect(() => decodeMsgpackNumpy(proto)).toThrow(/__proto__/);
    expect(() => decodeMsgpackNumpy(good, { maxBinBytes: 16 })).toThrow(MsgpackNumpyError);
    let nested: unknown = 1;
    for (let i = 0; i < 40; i++) nested = [nested];
    expect(() => decodeMsgpackNumpy(encode(nested))).toThrow(/nested deeper than 32/);
  });

  it.skipIf(!py)("decodes what Python's msgpack + numpy (openpi's packer) writes", () => {
    const out = runPython(
      py!,
      `${OPENPI_MSGPACK_NUMPY}
import sys
obs = {
  "observation/state": np.arange(8, dtype=np.float64) / 4 - 1,
  "observation/image": np.arange(24, dtype=np.uint8).reshape(2, 4, 3),
  "be": np.array([1.5, -2.25, 3e10], dtype=">f4"),
  "i": np.array([[-1, 2], [3, 2**40]], dtype=np.int64),
  "b": np.array([True, False]),
  "s": np.float32(0.5), "n": np.int32(-3),
  "prompt": "stack the blocks", "nested": {"list": [1, 2.5, None]},
}
sys.stdout.buffer.write(packb(obs))`,
    );
    const m = decodeMsgpackNumpy(new Uint8Array(out)) as MsgMap;
    const state = m["observation/state"] as NdArray;
    expect(state.dtype).toBe("<f8");
    expect(Array.from(state.toFloat32())).toEqual([-1, -0.75, -0.5, -0.25, 0, 0.25, 0.5, 0.75]);
    const img = m["observation/image"] as NdArray;
    expect([img.dtype, img.shape, img.data[23]]).toEqual(["|u1", [2, 4, 3], 23]);
    expect(Array.from((m["be"] as NdArray).data as Float32Array)).toEqual([1.5, -2.25, Math.fround(3e10)]);
    expect((m["i"] as NdArray).data[3]).toBe(2n ** 40n);
    expect(Array.from((m["b"] as NdArray).data as Uint8Array)).toEqual([1, 0]);
    expect(m["s"]).toEqual(new NpScalar("<f4", 0.5));
    expect(m["n"]).toEqual(new NpScalar("<i4", -3));
    expect(m["prompt"]).toBe("stack the blocks");
    expect(m["nested"]).toEqual({ list: [1, 2.5, null] });
  });

  it.skipIf(!py)("writes what Python's msgpack + numpy (openpi's unpacker) reads", () => {
    const bytes = encodeMsgpackNumpy({
      actions: NdArray.float32(Float32Array.of(0.5, -1, 2, 4.25, 1e-3, 7), [3, 2]),
      ids: new NdArray("<i8", [2], BigInt64Array.of(-1n, 2n ** 35n)),
      scalar: new NpScalar("<f8", 0.25),
      policy_timing: { infer_ms: 3.5 },
    });
    const out = runPython(
      py!,
      `${OPENPI_MSGPACK_NUMPY}
import sys, json
m = unpackb(sys.stdin.buffer.read())
a = m["actions"]
print(json.dumps({"type": type(a).__name__, "dtype": a.dtype.str, "shape": list(a.shape), "sum": float(a.sum()),
  "a10": float(a[1, 0]), "ids": m["ids"].tolist(), "scalar": [type(m["scalar"]).__name__, float(m["scalar"])],
  "timing": m["policy_timing"]}))`,
      bytes,
    );
    expect(JSON.parse(out.toString())).toEqual({
      type: "ndarray",
      dtype: "<f4",
      shape: [3, 2],
      sum: expect.closeTo(0.5 - 1 + 2 + 4.25 + 1e-3 + 7, 5),
      a10: 2,
      ids: [-1, 2 ** 35],
      scalar: ["float64", 0.25],
      timing: { infer_ms: 3.5 },
    });
  });

  it.skipIf(py !== undefined)(pythonMissing(["msgpack", "numpy"]), () => {
    expect(py).toBeUndefined();
  });
});
