/**
 * Normalisation as LeRobot does it, reduced to one per-dimension affine map:
 * `normalised = x * scale + offset`, and back `x = (normalised - offset) / scale`.
 *
 * - `mean_std`:  (x - mean) / (std + eps)
 * - `min_max`:   2 (x - min) / (max - min + eps) - 1
 * - `quantiles`: 2 (x - q01) / (q99 - q01 + eps) - 1
 * - `identity`:  x
 *
 * The map lives with the checkpoint (`stats.json`) and is applied by the trainer, by the tfjs
 * sampler and inside the exported ONNX graph, so the same numbers are used everywhere.
 */
import { z } from "zod";

const STAT_VECTORS = ["min", "max", "mean", "std", "q01", "q10", "q50", "q90", "q99"] as const;

/**
 * Per-dimension statistics of one feature, as LeRobot stores them: every vector finite and as long
 * as `mean` (a stats file with a NaN, written as `null`, a missing field or a wrong length is refused).
 */
export const FeatureStatsSchema = z
  .object({
    min: z.array(z.number()),
    max: z.array(z.number()),
    mean: z.array(z.number()),
    std: z.array(z.number()),
    count: z.number().nonnegative(),
    q01: z.array(z.number()).optional(),
    q10: z.array(z.number()).optional(),
    q50: z.array(z.number()).optional(),
    q90: z.array(z.number()).optional(),
    q99: z.array(z.number()).optional(),
  })
  .superRefine((s, ctx) => {
    const dim = s.mean.length;
    for (const key of STAT_VECTORS) {
      const v = s[key];
      if (v !== undefined && v.length !== dim)
        ctx.addIssue({ code: "custom", path: [key], message: `has length ${v.length}, mean has ${dim}` });
    }
  });
/** Per-dimension statistics of one feature (see {@link FeatureStatsSchema}). */
export type FeatureStats = z.infer<typeof FeatureStatsSchema>;

/** The normalisation modes in the field. */
export const NormModeSchema = z.enum(["mean_std", "min_max", "quantiles", "identity"]);
/** A normalisation mode: `mean_std`, `min_max`, `quantiles` or `identity`. */
export type NormMode = z.infer<typeof NormModeSchema>;
/** Every normalisation mode, for option parsers and messages. */
export const NORM_MODES: readonly NormMode[] = NormModeSchema.options;

/** normalised = x * scale + offset, per dimension. */
export interface AffineNorm {
  scale: Float32Array;
  offset: Float32Array;
}

const EPS = 1e-8;

/** Builds the affine map for `stats` under `mode`; `feature` names the feature in errors. */
export function affineFor(stats: FeatureStats, mode: NormMode, feature = "feature"): AffineNorm {
  const dim = stats.mean.length;
  const scale = new Float32Array(dim);
  const offset = new Float32Array(dim);
  const need = (key: keyof FeatureStats): number[] => {
    const v = stats[key];
    if (!Array.isArray(v) || v.length !== dim) {
      throw new Error(
        `stats for ${feature}: mode ${mode} needs '${key}' of length ${dim}, got ${Array.isArray(v) ? `length ${v.length}` : "none"}`,
      );
    }
    return v;
  };
  for (let i = 0; i < dim; i++) {
    let a = 1;
    let b = 0;
    switch (mode) {
      case "identity":
        break;
      case "mean_std": {
        a = 1 / (need("std")[i]! + EPS);
        b = -need("mean")[i]! * a;
        break;
      }
      case "min_max":
      case "quantiles": {
        const lo = mode === "min_max" ? need("min")[i]! : need("q01")[i]!;
        const hi = mode === "min_max" ? need("max")[i]! : need("q99")[i]!;
        a = 2 / (hi - lo + EPS);
        b = -lo * a - 1;
        break;
      }
      default: {
        const never: never = mode;
        throw new TypeError(`unknown normalisation mode ${String(never)}`);
      }
    }
    if (!Number.isFinite(a) || !Number.isFinite(b)) {
      throw new Error(
        `stats for ${feature} dim ${i} give a non-finite ${mode} normalisation (scale ${a}, offset ${b})`,
      );
    }
    scale[i] = a;
    offset[i] = b;
  }
  return { scale, offset };
}

/** Pads (with identity-zero dims: scale 0, offset 0) or checks an affine map to `dim` dimensions. */
export function padAffine(norm: AffineNorm, dim: number): AffineNorm {
  if (norm.scale.length > dim) throw new Error(`cannot pad a ${norm.scale.length}-dim normalisation down to ${dim}`);
  const scale = new Float32Array(dim);
  const offset = new Float32Array(dim);
  scale.set(norm.scale);
  offset.set(norm.offset);
  return { scale, offset };
}

/** Normalises `x` (`[..., dim]`, last axis is the feature) into a new array. */
export function normalize(x: ArrayLike<number>, norm: AffineNorm): Float32Array {
  const dim = norm.scale.length;
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i]! * norm.scale[i % dim]! + norm.offset[i % dim]!;
  return out;
}

/** Inverts the map on `y` (`[..., dim]`); dims with scale 0 (padding) come back as 0. */
export function denormalize(y: ArrayLike<number>, norm: AffineNorm): Float32Array {
  const dim = norm.scale.length;
  const out = new Float32Array(y.length);
  for (let i = 0; i < y.length; i++) {
    const a = norm.scale[i % dim]!;
    out[i] = a === 0 ? 0 : (y[i]! - norm.offset[i % dim]!) / a;
  }
  return out;
}

/**
 * A camera's normalisation in pixel units: its stats are of pixel / 255 (LeRobot's convention for
 * image features), so the scale takes the 1/255 in.
 */
export function imageNorm(norm: AffineNorm): AffineNorm {
  return { scale: norm.scale.map((s) => s / 255), offset: norm.offset.slice() };
}
