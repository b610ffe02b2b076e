/**
 * `bench video`: decoding a real camera episode and rendering the simulated camera.
 *
 * - decode: episode 1 of the G1 dataset in `examples/data` (AV1, 640x480, 393 frames) decoded by
 *   ffmpeg to `size` (default 96x72) through `loadEpisodeFrames` without the cache, `runs` times;
 *   the target is <= 3 s. Also the cached read of the same episode.
 * - render: the reach task's 96x96 `front` camera (two `mj_multiRay` calls per frame: the image
 *   and its shadows), frames per second over `frames` renders.
 *
 * Seconds are nearest-rank quantiles (`policy/stats/quantiles.ts`). The load average is printed
 * with the figures: on a busy machine they are upper bounds.
 */
import { loadavg } from "node:os";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDataset } from "../datasets/open.ts";
import { loadEpisodeFrames } from "../datasets/video/frames.ts";
import { median, quantile } from "../policy/stats/quantiles.ts";
import { createTask } from "../sim/tasks/index.ts";

/** Options of {@link benchVideo}. */
export interface BenchVideoOptions {
  /** Timed decodes of the episode (default 3). */
  runs?: number;
  /** Decode size, default 96x72 (the G1 camera's 4:3 at 96 px wide). */
  width?: number;
  height?: number;
  /** Timed camera renders (default 200). */
  frames?: number;
}

/** Runs the video benchmark; see the module comment. */
export async function benchVideo(o: BenchVideoOptions = {}): Promise<Record<string, unknown>> {
  const runs = o.runs ?? 3;
  const size = { width: o.width ?? 96, height: o.height ?? 72 };
  const dataset = "examples/data/g1-pick-bottle-10ep";
  const key = "observation.images.cam_high";
  const ds = await openDataset(dataset);
  const cacheDir = await mkdtemp(join(tmpdir(), "actionflow-bench-video-"));
  const decodeS: number[] = [];
  let count = 0;
  try {
    for (let r = 0; r < runs; r++) {
      const t0 = performance.now();
      const f = await loadEpisodeFrames(ds, 1, key, size, { cache: false });
      decodeS.push((performance.now() - t0) / 1000);
      count = f!.count;
    }
    await loadEpisodeFrames(ds, 1, key, size, { cacheDir });
    const t1 = performance.now();
    await loadEpisodeFrames(ds, 1, key, size, { cacheDir });
    const cachedS = (performance.now() - t1) / 1000;

    const frames = o.frames ?? 200;
    const task = await createTask("reach", { camera: { name: "front", width: 96, height: 96 } });
    const renderMs: number[] = [];
    try {
      task.reset(0);
      task.observe();
      for (let k = 0; k < frames; k++) {
        const t = performance.now();
        task.observe();
        renderMs.push(performance.now() - t);
      }
    } finally {
      task.dispose();
    }
    const p50 = median(renderMs);
    return {
      bench: "video",
      loadavg1: loadavg()[0],
      decode: {
        dataset,
        episode: 1,
        key,
        source: "AV1 640x480",
        size: `${size.width}x${size.height}`,
        frames: count,
        runs,
        p50_s: median(decodeS),
        max_s: quantile(decodeS, 1),
        target_s: 3,
        cached_read_s: cachedS,
      },
      render: {
        task: "reach",
        camera: "front 96x96, shadows",
        frames,
        p50_ms: p50,
        p90_ms: quantile(renderMs, 0.9),
        frames_per_s: 1000 / p50,
      },
    };
  } finally {
    ds.dataset.close();
    await rm(cacheDir, { recursive: true, force: true });
  }
}
