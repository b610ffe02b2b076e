import { describe, expect, it } from "vitest";
import { Rng } from "../../../policy/random.ts";
import { energyDistance } from "../../../training/toy/metrics.ts";
import { sampleMoons } from "../../../training/toy/moons.ts";
import { bimodalModes, bimodalSeparation, bimodalSource, distance } from "../../../training/toy/bimodal.ts";

describe("toy problems", () => {
  it("energy distance is ~0 for one law, positive, and grows with a shift", () => {
    const x = sampleMoons(400, new Rng(1));
    const y = sampleMoons(400, new Rng(2));
    const shifted = sampleMoons(400, new Rng(3)).map((v, i) => (i % 2 === 0 ? v + 0.5 : v));
    const same = energyDistance(x, y, 2);
    expect(same).toBeGreaterThan(0);
    expect(same).toBeLessThan(0.02);
    expect(energyDistance(x, shifted, 2)).toBeGreaterThan(5 * same);
    // One point each at distance d: 2d - 0 - 0 (V-statistic: the within-set means are over the diagonal only).
    expect(energyDistance(new Float32Array([0, 0]), new Float32Array([3, 4]), 2)).toBeCloseTo(10, 10);
  });

  it("bimodal chunks sit on one of two modes, half and half", () => {
    const H = 8;
    const b = bimodalSource(H, 0).next(2000, new Rng(5));
    let upper = 0;
    for (let i = 0; i < b.size; i++) {
      const [m0, m1] = bimodalModes(b.obs["state"]![i]!, H);
      const d0 = distance(m0, b.actions, i * H * 2);
      const d1 = distance(m1, b.actions, i * H * 2);
      expect(Math.min(d0, d1)).toBeLessThan(1e-5);
      if (d1 < d0) upper++;
    }
    expect(upper / b.size).toBeGreaterThan(0.45);
    expect(upper / b.size).toBeLessThan(0.55);
    expect(bimodalSeparation(H)).toBeGreaterThan(3);
  });
});
