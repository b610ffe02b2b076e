/**
 * The episode interface every demonstration dataset reader has: the LeRobot reader
 * (`datasets/lerobot/reader.ts`) and the robomimic reader (`datasets/robomimic/reader.ts`).
 * Training windows, statistics and evaluation work on this shape, never on a format.
 */

/** Flat `[length, ...shape]` columns of one episode, as a reader returns them. */
export type EpisodeColumns = Record<string, Float32Array | Float64Array | BigInt64Array>;

/** A demonstration dataset opened for reading; call `close()` when done with it. */
export interface EpisodeDataset {
  /** Column descriptions: per-frame `shape` (`[D]`, `[N, D]`, scalars `[1]`). */
  readonly features: Readonly<Record<string, { dtype: string; shape: readonly number[] }>>;
  /** The recording rate, Hz, when the dataset says it (LeRobot `fps`, robomimic `control_freq`). */
  readonly fps?: number | null;
  /** Episodes with their index and frame count. */
  readonly episodes: readonly { index: number; length: number }[];
  /** Flat `[length, ...shape]` arrays of the asked columns of the episode with this index. */
  readEpisode(index: number, columns: readonly string[]): Promise<EpisodeColumns>;
  /** Releases the files the dataset holds open; reads after it fail. Calling it twice is harmless. */
  close(): void;
}
