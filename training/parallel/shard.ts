/**
 * Splitting a batch's loss inputs into shards by sample, one per gradient thread.
 */
import type { HeadConfig } from "../../policy/net/config.ts";
import { featureSize } from "../../policy/net/head.ts";
import type { LossInputs } from "../loss.ts";
import { timeTokensOfInputs } from "../loss.ts";

/** Samples per shard when `size` samples go to `parts` shards: earlier shards take the remainder. */
export function shardSizes(size: number, parts: number): number[] {
  if (!Number.isInteger(parts) || parts < 1) throw new Error(`shardSizes: parts must be an integer >= 1, got ${parts}`);
  const base = Math.floor(size / parts);
  const extra = size % parts;
  return Array.from({ length: parts }, (_, i) => base + (i < extra ? 1 : 0));
}

/**
 * Splits `x` into `parts` consecutive shards of samples (sizes from `shardSizes`; a shard may be
 * empty when the batch has fewer samples than parts). Shards own copies of their arrays, so they
 * can be posted to a worker without dragging the whole batch's buffers along.
 */
export function splitInputs(
  x: LossInputs,
  parts: number,
  config: Pick<HeadConfig, "horizon" | "actionDim" | "obs">,
): LossInputs[] {
  const { horizon: H, actionDim: A } = config;
  const cut = <T extends Float32Array | Uint8Array>(a: T, per: number, from: number, n: number, what: string): T => {
    if (a.length !== x.size * per)
      throw new Error(`splitInputs: ${what} has ${a.length} values, expected ${x.size} x ${per}`);
    return a.slice(from * per, (from + n) * per) as T;
  };
  const timeTokens = timeTokensOfInputs(x, H);
  const out: LossInputs[] = [];
  let from = 0;
  for (const n of shardSizes(x.size, parts)) {
    const obs: Record<string, Float32Array> = {};
    for (const f of config.obs) {
      const data = x.obs[f.name];
      if (!data) throw new Error(`splitInputs: batch has no observation feature '${f.name}'`);
      obs[f.name] = cut(data, featureSize(f.shape), from, n, `observation feature '${f.name}'`);
    }
    out.push({
      size: n,
      obs,
      xt: cut(x.xt, H * A, from, n, "xt"),
      t: cut(x.t, timeTokens, from, n, "t"),
      ...(x.interval ? { interval: cut(x.interval, timeTokens, from, n, "interval") } : {}),
      target: cut(x.target, H * A, from, n, "target"),
      isPad: cut(x.isPad, H, from, n, "isPad"),
      ...(x.weight ? { weight: cut(x.weight, 1, from, n, "weight") } : {}),
    });
    from += n;
  }
  return out;
}
