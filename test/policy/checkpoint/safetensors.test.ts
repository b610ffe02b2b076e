import { describe, expect, it } from "vitest";
import { decodeSafetensors, encodeSafetensors } from "../../../policy/checkpoint/safetensors.ts";

describe("safetensors", () => {
  it("round-trips named float32 tensors bit-exactly with metadata", () => {
    const tensors = new Map([
      ["b.weight", { shape: [2, 3], data: new Float32Array([1, -2, 3.5, Number.MIN_VALUE, -0, 6]) }],
      ["a.bias", { shape: [3], data: new Float32Array([0.1, 0.2, 0.3]) }],
    ]);
    const bytes = encodeSafetensors(tensors, { step: "5" });
    const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + headerLen) % 8).toBe(0);
    const { tensors: back, metadata } = decodeSafetensors(bytes);
    expect(metadata).toEqual({ step: "5" });
    expect([...back.keys()].sort()).toEqual(["a.bias", "b.weight"]);
    for (const [k, v] of tensors) {
      expect(back.get(k)!.shape).toEqual(v.shape);
      expect(new Uint8Array(back.get(k)!.data.buffer)).toEqual(new Uint8Array(v.data.buffer));
    }
  });

  it("rejects truncated files and wrong shapes with the source named", () => {
    const bytes = encodeSafetensors(new Map([["w", { shape: [4], data: new Float32Array(4) }]]));
    expect(() => decodeSafetensors(bytes.subarray(0, bytes.length - 4), "model.safetensors")).toThrow(
      /model.safetensors: tensor 'w'/,
    );
    expect(() => decodeSafetensors(bytes.subarray(0, 4), "x.safetensors")).toThrow(/x.safetensors: truncated/);
    expect(() => encodeSafetensors(new Map([["w", { shape: [3], data: new Float32Array(4) }]]))).toThrow(/'w'/);
  });

  it("names the tensor and field of a malformed header entry, and a header that is not JSON", () => {
    const file = (header: string): Uint8Array => {
      const h = new TextEncoder().encode(header);
      const out = new Uint8Array(8 + h.length + 4);
      new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
      out.set(h, 8);
      return out;
    };
    expect(() => decodeSafetensors(file('{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}'), "x.st")).toThrow(
      "x.st: tensor 'w': shape[0]: Too small: expected number to be >=0, got -1",
    );
    expect(() => decodeSafetensors(file('{"__metadata__":{"step":5}}'), "x.st")).toThrow(
      "x.st: __metadata__: step: expected string, got 5",
    );
    expect(() => decodeSafetensors(file('{"w":'), "x.st")).toThrow(/^x\.st: header: not valid JSON/);
  });
});
