/** A dataset held in memory: test fixtures and data made by code (toy problems, generated demos). */
import type { EpisodeDataset } from "./episodes.ts";

/** One in-memory episode for {@link inMemoryDataset}: flat `[length, ...shape]` columns. */
export interface MemoryEpisode {
  index?: number;
  columns: Record<string, Float32Array | Float64Array | BigInt64Array>;
}

/**
 * An {@link EpisodeDataset} held in memory (the fake that ships with the interface, for tests and
 * toy problems): `features` gives each column's per-frame shape; lengths come from the columns.
 */
export function inMemoryDataset(
  features: Record<string, readonly number[]>,
  episodes: readonly MemoryEpisode[],
): EpisodeDataset {
  const feats: Record<string, { dtype: string; shape: readonly number[] }> = {};
  for (const [name, shape] of Object.entries(features)) feats[name] = { dtype: "float32", shape };
  const per = (name: string): number => feats[name]!.shape.reduce((a, b) => a * b, 1);
  const eps = episodes.map((e, k) => {
    const index = e.index ?? k;
    let length: number | undefined;
    for (const [name, data] of Object.entries(e.columns)) {
      if (!feats[name]) throw new Error(`inMemoryDataset: episode ${index} has undeclared column '${name}'`);
      const n = data.length / per(name);
      if (!Number.isInteger(n) || (length !== undefined && n !== length)) {
        throw new Error(
          `inMemoryDataset: episode ${index} column '${name}' has ${data.length} values, not ${length ?? "a whole number of"} frames`,
        );
      }
      length = n;
    }
    return { index, length: length ?? 0, columns: e.columns };
  });
  const byIndex = new Map(eps.map((e) => [e.index, e]));
  return {
    features: feats,
    episodes: eps.map((e) => ({ index: e.index, length: e.length })),
    close() {},
    readEpisode(index, columns) {
      const e = byIndex.get(index);
      if (!e) return Promise.reject(new RangeError(`inMemoryDataset: no episode ${index}`));
      const out: Record<string, Float32Array | Float64Array | BigInt64Array> = {};
      for (const c of columns) {
        const data = e.columns[c];
        if (!data) return Promise.reject(new Error(`inMemoryDataset: episode ${index} has no column '${c}'`));
        out[c] = data;
      }
      return Promise.resolve(out);
    },
  };
}
