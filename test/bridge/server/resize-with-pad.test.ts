import { describe, expect, it } from "vitest";
import { resizeBilinear, resizeWithPad } from "../../../bridge/server/resize-with-pad.ts";
import { findPython, pythonMissing, runPython } from "../python.ts";
import { testImage } from "./camera-fixture.ts";

/** A grey image `[height, width, 3]` whose row `y` holds `values[x]` in every channel. */
function grey(height: number, values: number[]): Uint8Array {
  const out = new Uint8Array(height * values.length * 3);
  for (let y = 0; y < height; y++)
    values.forEach((v, x) => out.fill(v, (y * values.length + x) * 3, (y * values.length + x + 1) * 3));
  return out;
}

const channel0 = (img: Uint8Array): number[] => Array.from(img.filter((_, i) => i % 3 === 0));

describe("Pillow's bilinear resize, by hand", () => {
  it("halves 4 pixels with the widened triangle filter (3/7, 3/7, 1/7), not a 2-pixel mean", () => {
    // output 0: centre 1, support 2 -> inputs 0..2 at |x + 0.5 - 1| / 2 = 0.25, 0.25, 0.75 -> 0.75, 0.75, 0.25
    // (10*3 + 20*3 + 30) / 7 = 17.14 -> 17; output 1: (20 + 30*3 + 40*3) / 7 = 32.86 -> 33
    expect(channel0(resizeBilinear(grey(1, [10, 20, 30, 40]), 1, 4, 1, 2))).toEqual([17, 33]);
  });

  it("doubles 2 pixels with weights 0.75/0.25 and keeps the edges", () => {
    expect(channel0(resizeBilinear(grey(1, [0, 100]), 1, 2, 1, 4))).toEqual([0, 25, 75, 100]);
  });

  it("runs the vertical pass like the horizontal one", () => {
    const col = new Uint8Array([10, 20, 30, 40].flatMap((v) => [v, v, v]));
    expect(channel0(resizeBilinear(col, 4, 1, 2, 1))).toEqual([17, 33]);
  });
});

describe("openpi's resize_with_pad, by hand", () => {
  it("returns the image itself at the right size", () => {
    const img = testImage(4, 6, 1);
    expect(resizeWithPad(img, 4, 6, 4, 6)).toBe(img);
  });

  it("pads a wide image with zero rows, centred (int((H - h) / 2) on top, the rest below)", () => {
    const img = grey(2, [100, 100, 100, 100]);
    const out = resizeWithPad(img, 2, 4, 5, 4);
    const rows = Array.from({ length: 5 }, (_, y) => channel0(out.subarray(y * 12, (y + 1) * 12)));
    expect(rows).toEqual([
      [0, 0, 0, 0],
      [100, 100, 100, 100],
      [100, 100, 100, 100],
      [0, 0, 0, 0],
      [0, 0, 0, 0],
    ]);
  });

  it("scales a 2:1 image into a square by its long side and pads above and below", () => {
    // 2x4 -> 4x4... ratio max(4/4, 2/4) = 1 keeps it; 2x8 -> 4x4: ratio 2, resized to 1x4, top int(3/2) = 1
    const out = resizeWithPad(grey(2, [10, 20, 30, 40, 50, 60, 70, 80]), 2, 8, 4, 4);
    const rows = Array.from({ length: 4 }, (_, y) => channel0(out.subarray(y * 12, (y + 1) * 12)));
    expect(rows[0]).toEqual([0, 0, 0, 0]);
    expect(rows[2]).toEqual([0, 0, 0, 0]);
    expect(rows[3]).toEqual([0, 0, 0, 0]);
    // horizontal: halving [10..80] pairwise with the 3/7,3/7,1/7 kernel at the edges, 1/8,3/8,3/8,1/8 inside
    expect(rows[1]).toEqual([17, 35, 55, 73]);
  });
});

const py = findPython(["numpy", "PIL"]);

describe("against openpi's image_tools.resize_with_pad (Python, PIL)", () => {
  it.skipIf(!py)("gives the same bytes on down-, up- and mixed resizes", () => {
    const script = `
import sys, json, numpy as np
from PIL import Image
# openpi-client image_tools._resize_with_pad_pil, as published
def resize_with_pad_pil(image, height, width, method):
    cur_width, cur_height = image.size
    if cur_width == width and cur_height == height:
        return image
    ratio = max(cur_width / width, cur_height / height)
    resized_height = int(cur_height / ratio)
    resized_width = int(cur_width / ratio)
    resized_image = image.resize((resized_width, resized_height), resample=method)
    zero_image = Image.new(resized_image.mode, (width, height), 0)
    pad_height = max(0, int((height - resized_height) / 2))
    pad_width = max(0, int((width - resized_width) / 2))
    zero_image.paste(resized_image, (pad_width, pad_height))
    return zero_image
cases = json.loads(sys.argv[1])
data = sys.stdin.buffer.read()
off = 0
for h, w, oh, ow in cases:
    a = np.frombuffer(data[off:off + h * w * 3], dtype=np.uint8).reshape(h, w, 3)
    off += h * w * 3
    sys.stdout.buffer.write(np.asarray(resize_with_pad_pil(Image.fromarray(a), oh, ow, Image.BILINEAR)).tobytes())
`;
    const cases: Array<[number, number, number, number]> = [
      [480, 640, 224, 224],
      [7, 5, 4, 4],
      [3, 3, 8, 6],
      [100, 37, 31, 64],
      [2, 9, 5, 5],
      [64, 48, 96, 96],
    ];
    const inputs = cases.map(([h, w], i) => testImage(h, w, i + 3));
    const ref = runPython(py!, script, Buffer.concat(inputs), [JSON.stringify(cases)]);
    let off = 0;
    cases.forEach(([h, w, oh, ow], i) => {
      const mine = resizeWithPad(inputs[i]!, h, w, oh, ow);
      const theirs = new Uint8Array(ref.subarray(off, off + oh * ow * 3));
      off += oh * ow * 3;
      expect(mine.length).toBe(theirs.length);
      let differ = 0;
      for (let j = 0; j < mine.length; j++) if (mine[j] !== theirs[j]) differ++;
      expect({ case: [h, w, oh, ow], differ }).toEqual({ case: [h, w, oh, ow], differ: 0 });
    });
    expect(off).toBe(ref.length);
  });

  it.skipIf(py !== undefined)(pythonMissing(["numpy", "PIL"]), () => {
    expect(py).toBeUndefined();
  });
});
