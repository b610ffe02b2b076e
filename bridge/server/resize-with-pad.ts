/**
 * openpi's `image_tools.resize_with_pad` (openpi-client, PIL underneath), in TypeScript: an RGB
 * image is scaled to fit the target size keeping its aspect ratio, with Pillow's bilinear
 * resampling, and pasted onto a zero (black) canvas, centred. The policy servers apply it to a
 * camera image of another size than the policy's, as openpi's own clients do before sending.
 *
 * The arithmetic follows Pillow's `Resample.c` for 8-bit images, so the bytes agree with the Python
 * original: the triangle filter's support grows with the reduction factor (an antialiased
 * downscale, not a 2x2 interpolation), weights are normalised then rounded to 22-bit fixed point,
 * the horizontal pass runs first and its result is rounded to bytes before the vertical pass.
 */

/** Fixed-point bits of Pillow's 8-bit resampling coefficients (`PRECISION_BITS = 32 - 8 - 2`). */
const PRECISION_BITS = 22;

/** Per output pixel: the first input index, the number of inputs, and their fixed-point weights. */
interface Coefficients {
  first: Int32Array;
  count: Int32Array;
  /** `[outSize * ksize]`, row `o` holds the weights of output `o`. */
  weights: Int32Array;
  ksize: number;
}

/** Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear (triangle) filter. */
function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 1 * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let sum = 0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) / filterScale);
      w[x] = t < 1 ? 1 - t : 0;
      sum += w[x]!;
    }
    for (let x = 0; x < xmax; x++) {
      const k = sum !== 0 ? w[x]! / sum : w[x]!;
      weights[o * ksize + x] = Math.trunc(k < 0 ? -0.5 + k * (1 << PRECISION_BITS) : 0.5 + k * (1 << PRECISION_BITS));
    }
    first[o] = xmin;
    count[o] = xmax;
  }
  return { first, count, weights, ksize };
}

function clip8(v: number): number {
  const x = v >> PRECISION_BITS;
  return x < 0 ? 0 : x > 255 ? 255 : x;
}

/**
 * Resizes uint8 RGB `[height, width, 3]` (row-major) to `[outHeight, outWidth, 3]` as Pillow's
 * `Image.resize((outWidth, outHeight), Image.BILINEAR)` does; returns `rgb` itself when the size
 * is already right.
 */
export function resizeBilinear(
  rgb: Uint8Array,
  height: number,
  width: number,
  outHeight: number,
  outWidth: number,
): Uint8Array {
  if (rgb.length !== height * width * 3)
    throw new RangeError(`resizeBilinear: ${rgb.length} bytes for a ${height}x${width} RGB image`);
  if (height === outHeight && width === outWidth) return rgb;
  const half = 1 << (PRECISION_BITS - 1);
  // horizontal pass: [height, outWidth, 3], rounded to bytes
  let mid = rgb;
  if (width !== outWidth) {
    const c = coefficients(width, outWidth);
    mid = new Uint8Array(height * outWidth * 3);
    for (let y = 0; y < height; y++) {
      const row = y * width * 3;
      for (let o = 0; o < outWidth; o++) {
        const x0 = c.first[o]!;
        const n = c.count[o]!;
        const k0 = o * c.ksize;
        let r = half;
        let g = half;
        let b = half;
        for (let x = 0; x < n; x++) {
          const k = c.weights[k0 + x]!;
          const i = row + (x0 + x) * 3;
          r += rgb[i]! * k;
          g += rgb[i + 1]! * k;
          b += rgb[i + 2]! * k;
        }
        const out = (y * outWidth + o) * 3;
        mid[out] = clip8(r);
        mid[out + 1] = clip8(g);
        mid[out + 2] = clip8(b);
      }
    }
  }
  if (height === outHeight) return mid;
  // vertical pass over the horizontally resized rows
  const c = coefficients(height, outHeight);
  const out = new Uint8Array(outHeight * outWidth * 3);
  const stride = outWidth * 3;
  for (let o = 0; o < outHeight; o++) {
    const y0 = c.first[o]!;
    const n = c.count[o]!;
    const k0 = o * c.ksize;
    for (let i = 0; i < stride; i++) {
      let s = half;
      for (let y = 0; y < n; y++) s += mid[(y0 + y) * stride + i]! * c.weights[k0 + y]!;
      out[o * stride + i] = clip8(s);
    }
  }
  return out;
}

/**
 * openpi's `resize_with_pad(image, outHeight, outWidth)` for one uint8 RGB `[height, width, 3]`
 * image: scaled by `1 / max(width / outWidth, height / outHeight)` (sizes truncated to integers),
 * bilinear, then pasted at `(int((outWidth - w) / 2), int((outHeight - h) / 2))` on zeros. Returns
 * `rgb` itself when the size is already right.
 */
export function resizeWithPad(
  rgb: Uint8Array,
  height: number,
  width: number,
  outHeight: number,
  outWidth: number,
): Uint8Array {
  if (height === outHeight && width === outWidth) return rgb;
  const ratio = Math.max(width / outWidth, height / outHeight);
  const h = Math.max(1, Math.trunc(height / ratio));
  const w = Math.max(1, Math.trunc(width / ratio));
  const resized = resizeBilinear(rgb, height, width, h, w);
  const out = new Uint8Array(outHeight * outWidth * 3);
  const top = Math.max(0, Math.trunc((outHeight - h) / 2));
  const left = Math.max(0, Math.trunc((outWidth - w) / 2));
  for (let y = 0; y < h; y++) out.set(resized.subarray(y * w * 3, (y + 1) * w * 3), ((top + y) * outWidth + left) * 3);
  return out;
}
