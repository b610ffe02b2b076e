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
});
