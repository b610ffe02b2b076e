import { describe, expect, it } from "vitest";
import { Rng } from "../../policy/random.ts";
import type { AffineNorm } from "../../policy/normalize.ts";
import { createWindowSource } from "../../training/windows.ts";
import { inMemoryDataset } from "../../datasets/memory.ts";

const identity = (dim: number): AffineNorm => ({ scale: new Float32Array(dim).fill(1), offset: new Float32Array(dim) });
const W = 4;
const H = 3;

/** Pixel (x, y, c) of frame t of episode e: 10t + 3x + y * 20 + c, as uint8. */
function frames(e: number, length: number): Uint8Array {
  const out = new Uint8Array(length * H * W * 3);
  for (let t = 0; t < length; t++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++)
        for (let c = 0; c < 3; c++) out[((t * H + y) * W + x) * 3 + c] = 10 * t + 3 * x + 20 * y + c + 50 * e;
  return out;
}

function source(shift: number) {
  const episode = (length: number) => ({
    columns: {
      action: Float32Array.from({ length }, (_, i) => i),
      state: Float32Array.from({ length }, (_, i) => i),
    },
  });
  const ds = inMemoryDataset({ action: [1], state: [1] }, [episode(3), episode(2)]);
  const asked: string[] = [];
  return {
    asked,
    src: createWindowSource({
      dataset: ds,
      episodes: [0, 1],
      obs: [
        { name: "state", key: "state" },
        { name: "cam", key: "observation.images.cam", image: { width: W, height: H } },
      ],
      action: "action",
      horizon: 2,
      actionDim: 1,
      // per channel: (v / 255) * 2 - 1 on channel 0, identity (of v / 255) on the others
      norms: {
        action: identity(1),
        state: identity(1),
        "observation.images.cam": { scale: Float32Array.of(2, 1, 1), offset: Float32Array.of(-1, 0, 0) },
      },
      images: (episode, key, size) => {
        asked.push(`${episode} ${key} ${size.width}x${size.height}`);
        return Promise.resolve(frames(episode, episode === 0 ? 3 : 2));
      },
      imageShift: shift,
    }),
  };
}

describe("camera windows", () => {
  it("give each window its frame's image, normalised by channel in pixel / 255 units", async () => {
    const { src, asked } = source(0);
    const s = await src;
    expect(asked).toEqual(["0 observation.images.cam 4x3", "1 observation.images.cam 4x3"]);
    expect(s.obsShapes["cam"]).toEqual([H, W, 3]);
    const b = s.batchAt([1, 4]); // episode 0 frame 1, episode 1 frame 1
    const img = b.obs["cam"]!;
    expect(img.length).toBe(2 * H * W * 3);
    const raw0 = frames(0, 3);
    const raw1 = frames(1, 2);
    const per = H * W * 3;
    for (let i = 0; i < per; i++) {
      const c = i % 3;
      const want0 = c === 0 ? (raw0[per + i]! / 255) * 2 - 1 : raw0[per + i]! / 255;
      const want1 = c === 0 ? (raw1[per + i]! / 255) * 2 - 1 : raw1[per + i]! / 255;
      expect(img[i]).toBeCloseTo(want0, 6);
      expect(img[per + i]).toBeCloseTo(want1, 6);
    }
  });

  it("shift images only in training draws, by at most imageShift pixels with the border repeated", async () => {
    const s = await source(1).src;
    const plain = await source(0).src;
    let moved = 0;
    for (let k = 0; k < 20; k++) {
      const b = s.next(1, new Rng(100 + k));
      const pos = new Rng(100 + k).int(s.frames);
      const ref = plain.batchAt([pos]).obs["cam"]!;
      const img = b.obs["cam"]!;
      // channel 1 is v / 255 = (10t + 3x + 20y + 1 + 50e) / 255: the shift is readable from pixel (1, 1)
      const v = Math.round(img[(1 * W + 1) * 3 + 1]! * 255);
      const r = Math.round(ref[(1 * W + 1) * 3 + 1]! * 255);
      const d = v - r;
      expect([-23, -20, -17, -3, 0, 3, 17, 20, 23]).toContain(d);
      if (d !== 0) moved++;
    }
    expect(moved).toBeGreaterThan(5);
    // the validation path is never augmented
    const a = s.batchAt([2]).obs["cam"]!;
    expect(Array.from(a)).toEqual(Array.from(plain.batchAt([2]).obs["cam"]!));
  });

  it("refuse a camera without a frame loader and more than one history frame", async () => {
    const ds = inMemoryDataset({ action: [1] }, [{ columns: { action: Float32Array.of(0, 1) } }]);
    const base = {
      dataset: ds,
      episodes: [0],
      obs: [{ name: "cam", key: "observation.images.cam", image: { width: W, height: H } }],
      action: "action",
      horizon: 1,
      actionDim: 1,
      norms: { action: identity(1), "observation.images.cam": identity(3) },
    };
    await expect(createWindowSource(base)).rejects.toThrow(/camera feature 'cam' needs a frame loader/);
    await expect(
      createWindowSource({ ...base, images: () => Promise.resolve(new Uint8Array(2 * H * W * 3)), historyFrames: 2 }),
    ).rejects.toThrow(/camera features take one observation frame/);
    await expect(createWindowSource({ ...base, images: () => Promise.resolve(new Uint8Array(5)) })).rejects.toThrow(
      /episode 0 camera 'observation.images.cam' has 5 bytes, expected 2 frames x 3x4x3/,
    );
  });
});
