import { describe, expect, it } from "vitest";
import { parseHeadConfig } from "../../../policy/net/config.ts";
import { buildHead } from "../../../policy/net/network.ts";
import { headFlops } from "../../../policy/net/flops.ts";

describe("FLOP counting over a description", () => {
  it("counts the mlp head's products by hand", () => {
    const cfg = parseHeadConfig({
      arch: "mlp",
      horizon: 4,
      actionDim: 3,
      obs: [{ name: "state", key: "s", shape: [5] }],
      mlp: { width: 8, depth: 2, timeEmbedDim: 2 },
    });
    const head = buildHead(cfg);
    const B = 3;
    const W = 8;
    const encode = 2 * B * (5 * W + W * W);
    // action.in, time.0 (H*Dt -> W), time.1, per block film (W -> 3W) + fc1 + fc2, final.film (W -> 2W), action.out.
    const velocity = 2 * B * (12 * W + 8 * W + W * W + 2 * (3 * W * W + 2 * W * W) + 2 * W * W + W * 12);
    expect(headFlops(head, B)).toEqual({ encode, velocity });
  });

  it("leaves out the time path when time is a constant (folded by onnxruntime)", () => {
    const cfg = parseHeadConfig({
      arch: "transformer",
      horizon: 6,
      actionDim: 2,
      obs: [{ name: "state", key: "s", shape: [4] }],
      transformer: { width: 8, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 4 },
    });
    const head = buildHead(cfg);
    const dyn = headFlops(head, 2, { time: "input" });
    const folded = headFlops(head, 2, { time: "constant" });
    expect(folded.encode).toBe(dyn.encode);
    // time.0 (4 -> 8), time.1, ada (8 -> 72), final.ada (8 -> 16), one time token per sample.
    expect(dyn.velocity - folded.velocity).toBe(2 * 2 * (4 * 8 + 8 * 8 + 8 * 72 + 8 * 16));
  });
});
