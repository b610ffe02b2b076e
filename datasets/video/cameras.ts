/**
 * Camera frames for training and evaluation: each episode's camera decoded once to a size (through the
 * per-dataset frame cache of `datasets/video/`), kept in memory as uint8 RGB, and
 * the per-channel statistics of pixel / 255 (LeRobot's image statistics) when the dataset's metadata
 * has none.
 */
import type { OpenedDataset } from "../open.ts";
import { episodesWithVideo, loadEpisodeFrames } from "./frames.ts";
import type { FeatureStats } from "../../policy/normalize.ts";

/** What a run does with an episode whose camera video is missing. */
export type MissingVideo = "error" | "skip";

/** A camera of a run: its dataset key and the size it is decoded to. */
export interface CameraColumn {
  key: string;
  width: number;
  height: number;
}

/** Decoded camera frames of a dataset, by episode and key, loaded once. */
export class CameraFrames {
  private readonly frames = new Map<string, Uint8Array>();

  constructor(private readonly opened: OpenedDataset) {}

  /**
   * Episodes (of `episodes`) whose every camera has its video. A missing one is refused naming the
   * episode and camera, or with `missing: "skip"` left out after a message on `log`.
   */
  async usable(
    episodes: readonly number[],
    cameras: readonly CameraColumn[],
    missing: MissingVideo,
    log: (message: string) => void = (m) => process.stderr.write(`${m}\n`),
  ): Promise<number[]> {
    if (cameras.length === 0) return [...episodes];
    if (this.opened.format !== "lerobot")
      throw new Error(
        `camera '${cameras[0]!.key}': camera frames are read from LeRobot datasets, not ${this.opened.format}`,
      );
    const without = new Map<number, string[]>();
    for (const c of cameras) {
      const { missing: lack } = await episodesWithVideo(this.opened.dataset, c.key);
      for (const e of lack) without.set(e, [...(without.get(e) ?? []), c.key]);
    }
    const bad = episodes.filter((e) => without.has(e));
    if (bad.length === 0) return [...episodes];
    const list = bad.map((e) => `${e} (${without.get(e)!.join(", ")})`).join(", ");
    if (missing === "error")
      throw new Error(
        `${this.opened.dataset.dir}: episodes ${list} have no video; train without them with --missing-video skip`,
      );
    log(`skipping episodes without video: ${list}`);
    return episodes.filter((e) => !without.has(e));
  }

  /** uint8 RGB `[length, height, width, 3]` of camera `key` of `episode` at `size` (decoded once). */
  async load(episode: number, key: string, size: { width: number; height: number }): Promise<Uint8Array> {
    const id = `${episode}|${key}|${size.width}x${size.height}`;
    const hit = this.frames.get(id);
    if (hit) return hit;
    const f = await loadEpisodeFrames(this.opened, episode, key, size);
    if (!f) throw new Error(`episode ${episode} has no frames of '${key}'`);
    this.frames.set(id, f.data);
    return f.data;
  }

  /** Per-channel statistics of pixel / 255 of camera `c` over `episodes` (every 4th pixel). */
  async stats(c: CameraColumn, episodes: readonly number[]): Promise<FeatureStats> {
    const sum = [0, 0, 0];
    const sq = [0, 0, 0];
    const min = [Infinity, Infinity, Infinity];
    const max = [-Infinity, -Infinity, -Infinity];
    let n = 0;
    for (const e of episodes) {
      const rgb = await this.load(e, c.key, c);
      for (let i = 0; i + 2 < rgb.length; i += 12) {
        for (let ch = 0; ch < 3; ch++) {
          const v = rgb[i + ch]! / 255;
          sum[ch]! += v;
          sq[ch]! += v * v;
          if (v < min[ch]!) min[ch] = v;
          if (v > max[ch]!) max[ch] = v;
        }
        n++;
      }
    }
    if (n === 0) throw new Error(`camera '${c.key}': no frames to compute its statistics from`);
    const mean = sum.map((s) => s / n);
    const std = sq.map((s, ch) => Math.sqrt(Math.max(0, s / n - mean[ch]! ** 2)));
    return { mean, std, min, max, count: n };
  }
}
