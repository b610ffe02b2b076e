import { describe, expect, it } from "vitest";
import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import { ImageDecoder } from "../../../bridge/ros/image-decoder.ts";
import {
  compressedImage,
  parseCameraMessage,
  parseCompressedImage,
  resizeRgb,
  sensorImage,
  type Parsed,
  type RgbImage,
} from "../../../bridge/ros/protocol.ts";

/** A smooth RGB test image (JPEG keeps it within a few levels). */
function smooth(width: number, height: number): RgbImage {
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      rgb[o] = Math.round((255 * x) / (width - 1));
      rgb[o + 1] = Math.round((255 * y) / (height - 1));
      rgb[o + 2] = 128;
    }
  return { width, height, rgb };
}

function ok(r: Parsed<RgbImage>): RgbImage {
  if (r.kind === "error") throw new Error(r.error);
  return r.value;
}

describe("sensor_msgs/CompressedImage", () => {
  it("round-trips PNG exactly and JPEG within a few levels, data base64 as rosbridge sends uint8[]", () => {
    const img = smooth(40, 30);
    const png = compressedImage(2, img, "png");
    expect(png["format"]).toBe("png");
    expect(typeof png["data"]).toBe("string");
    expect(ok(parseCompressedImage(png, "/cam"))).toEqual(img);
    const j = ok(parseCompressedImage(compressedImage(2, img, "jpeg", 95), "/cam"));
    expect([j.width, j.height]).toEqual([40, 30]);
    let sum = 0;
    for (let i = 0; i < img.rgb.length; i++) sum += Math.abs(img.rgb[i]! - j.rgb[i]!);
    expect(sum / img.rgb.length).toBeLessThan(3);
  });

  it("reads image_transport's format strings and a byte-list data field", () => {
    const img = smooth(8, 6);
    const png = compressedImage(1, img, "png");
    const bytes = Array.from(Buffer.from(png["data"] as string, "base64"));
    expect(ok(parseCompressedImage({ format: "rgb8; png compressed rgb8", data: bytes }, "/cam"))).toEqual(img);
    const jpg = compressedImage(1, img, "jpeg");
    expect(ok(parseCompressedImage({ ...jpg, format: "bgr8; jpeg compressed bgr8" }, "/cam")).width).toBe(8);
    expect(ok(parseCameraMessage(jpg, "compressed", "/cam")).height).toBe(6);
    expect(ok(parseCameraMessage(sensorImage(2, img), "raw", "/cam"))).toEqual(img);
  });

  it("gives a grey image three equal channels", () => {
    const grey = new PNG({ width: 2, height: 1, colorType: 0 });
    grey.data = Buffer.from([10, 10, 10, 255, 200, 200, 200, 255]);
    const png = PNG.sync.write(grey, { colorType: 0, inputColorType: 6 });
    expect(Array.from(ok(parseCompressedImage({ format: "png", data: png.toString("base64") }, "/g")).rgb)).toEqual([
      10, 10, 10, 200, 200, 200,
    ]);
    const gj = jpeg.encode({ width: 8, height: 8, data: new Uint8Array(8 * 8 * 4).fill(90) }, 100).data;
    const j = ok(parseCompressedImage({ format: "jpeg", data: gj.toString("base64") }, "/g"));
    expect(j.rgb.every((v, i) => Math.abs(v - 90) <= 2 && v === j.rgb[i - (i % 3)])).toBe(true);
  });

  it("names the field for an unknown format, bytes that are not what the format says, or a broken file", () => {
    const img = smooth(8, 6);
    const png = compressedImage(2, img, "png");
    const jpg = compressedImage(2, img, "jpeg");
    const cases: Array<[unknown, RegExp]> = [
      [
        { ...png, format: "tiff" },
        /\/cam \(observation\.images\.front\): CompressedImage: format "tiff" is neither jpeg nor png/,
      ],
      [{ ...png, format: "jpeg" }, /format 'jpeg' but the \d+ data bytes are a PNG/],
      [{ ...jpg, format: "png" }, /format 'png' but the \d+ data bytes are a JPEG/],
      [{ format: "png", data: "aGVsbG8gd29ybGQ=" }, /are neither a JPEG nor a PNG/],
      [
        {
          format: "jpeg",
          data: Buffer.from(jpg["data"] as string, "base64")
            .subarray(0, 40)
            .toString("base64"),
        },
        /cannot decode the JPEG/,
      ],
      [
        {
          format: "png",
          data: Buffer.from(png["data"] as string, "base64")
            .subarray(0, 40)
            .toString("base64"),
        },
        /cannot decode the PNG/,
      ],
      [{ format: "png", data: 7 }, /'data' is neither a base64 string nor a byte list/],
      [null, /CompressedImage: not an object/],
    ];
    for (const [msg, re] of cases) {
      const r = parseCompressedImage(msg, "/cam (observation.images.front)");
      expect(r.kind).toBe("error");
      if (r.kind === "error") expect(r.error).toMatch(re);
    }
  });
});

describe("ImageDecoder", () => {
  it("decodes in its worker thread and resizes to the camera's size; errors come back, named", async () => {
    const dec = new ImageDecoder();
    try {
      const img = smooth(64, 48);
      const got = await new Promise<Parsed<RgbImage>>((resolve) =>
        dec.submit(
          "front",
          { msg: compressedImage(2, img, "png"), transport: "compressed", what: "/cam", width: 32, height: 24 },
          resolve,
        ),
      );
      expect(ok(got)).toEqual({ width: 32, height: 24, rgb: resizeRgb(img, 32, 24) });
      const bad = await new Promise<Parsed<RgbImage>>((resolve) =>
        dec.submit(
          "front",
          { msg: { format: "gif", data: "" }, transport: "compressed", what: "/cam (front)", width: 32, height: 24 },
          resolve,
        ),
      );
      expect(bad).toEqual({
        kind: "error",
        error: '/cam (front): CompressedImage: format "gif" is neither jpeg nor png',
      });
      expect(dec.stats()).toEqual({ decoded: 1, failed: 1, superseded: 0 });
    } finally {
      await dec.close();
    }
  });

  it("keeps one message per camera waiting: a newer one replaces it, counted", async () => {
    const dec = new ImageDecoder();
    try {
      const done: number[] = [];
      const all = [1, 2, 3].map(
        (seed) =>
          new Promise<void>((resolve) => {
            const img = smooth(16, 12);
            img.rgb[0] = seed;
            dec.submit(
              "front",
              { msg: compressedImage(2, img, "png"), transport: "compressed", what: "/cam", width: 16, height: 12 },
              (r) => {
                done.push(ok(r).rgb[0]!);
                resolve();
              },
            );
          }),
      );
      await Promise.all([all[0], all[2]]);
      // the first was in flight, the second waited and was replaced by the third
      expect(done).toEqual([1, 3]);
      expect(dec.stats()).toEqual({ decoded: 2, failed: 0, superseded: 1 });
    } finally {
      await dec.close();
    }
  });
});
