/**
 * Statistics of dataset columns computed from the frames, for any dataset with the episode
 * interface (LeRobot reader, robomimic reader, in-memory): the way to get normalisation stats for a
 * source that stores none (robomimic) or to check stored ones (`actionflow dataset stats`).
 */
import type { FeatureStats } from "../../policy/normalize.ts";
import type { EpisodeDataset } from "../episodes.ts";
import { RunningStats } from "./running.ts";

/** Options of {@link datasetStats}. */
export interface DatasetStatsOptions {
  /** Episode indices to include (default: all). */
  episodes?: readonly number[];
  /** Histogram bins per dimension (default 8192; see `running.ts` for the quantile error). */
  bins?: number;
  /** Called after each episode. */
  onEpisode?: (done: number, total: number) => void;
}

/**
 * Per-dimension statistics (min, max, mean, std, count, q01..q99) of `columns` over the episodes,
 * one streaming pass, one episode in memory at a time. Throws naming episode, column, row and dim on
 * a NaN/infinite value.
 */
export async function datasetStats(
  ds: EpisodeDataset,
  columns: readonly string[],
  opts: DatasetStatsOptions = {},
): Promise<Record<string, FeatureStats>> {
  const acc: Record<string, RunningStats> = {};
  for (const c of columns) {
    const f = ds.features[c];
    if (!f) throw new Error(`datasetStats: no column '${c}' (columns: ${Object.keys(ds.features).join(", ")})`);
    acc[c] = new RunningStats(
      f.shape.reduce((a, b) => a * b, 1),
      { what: `column '${c}'`, ...(opts.bins ? { bins: opts.bins } : {}) },
    );
  }
  const wanted = opts.episodes ?? ds.episodes.map((e) => e.index);
  const lengths = new Map(ds.episodes.map((e) => [e.index, e.length]));
  for (const [k, index] of wanted.entries()) {
    const length = lengths.get(index);
    if (length === undefined) throw new Error(`datasetStats: no episode ${index}`);
    if (length > 0) {
      const cols = await ds.readEpisode(index, columns);
      for (const c of columns) {
        const data = cols[c]!;
        try {
          acc[c]!.update(data instanceof BigInt64Array ? Float64Array.from(data, Number) : data);
        } catch (err) {
          throw new Error(`episode ${index}: ${(err as Error).message}`, { cause: err });
        }
      }
    }
    opts.onEpisode?.(k + 1, wanted.length);
  }
  const out: Record<string, FeatureStats> = {};
  for (const c of columns) if (acc[c]!.count > 0) out[c] = acc[c]!.result();
  return out;
}
