import { describe, expect, it } from "vitest";
import { benchAdamW } from "../../bench/adamw.ts";

describe("bench adamw", () => {
  it("the ONNX optimizer graph tracks the Float32Array AdamW (clipping, decay, EMA) step for step", async () => {
    // Strong settings so clipping (the gradients' norm is ~1), weight decay and the EMA all matter.
    const optim = { lr: 0.05, weightDecay: 0.5, clipNorm: 0.1, emaDecay: 0.5 };
    const r = await benchAdamW({ arch: "mlp", steps: 2, threads: 1, optim });
    expect(r["tensors"] as number).toBeGreaterThan(1);
    const change = r["maxValueChange"] as number;
    expect(change).toBeGreaterThan(0.05);
    // float32 graph arithmetic against the loop's float64-per-element arithmetic, after 4 updates.
    const diff = r["maxAbsDiffAfterSteps"] as Record<string, number>;
    for (const k of ["value", "m", "v", "ema"]) expect(diff[k], k).toBeLessThan(1e-5 * Math.max(1, change));
    expect(r).toHaveProperty("onnxPreallocatedMs");
  });
});
