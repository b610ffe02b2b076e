import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PNG } from "pngjs";
import { ffmpegAvailable } from "../../datasets/video/ffmpeg.ts";
import { encodePng, framesStripSvg } from "../../eval/frames.ts";
import type { OfflineEvalResult } from "../../eval/offline.ts";
import { offlineReport, readExampleStrips } from "../../eval/offline-report.ts";

const G1 = "examples/data/g1-pick-bottle-10ep";
const why = ffmpegAvailable() ? undefined : "ffmpeg not on the PATH (test/setup/install-ffmpeg.sh)";
if (why) console.warn(`skipping the offline report's camera strips: ${why}`);

describe("camera frame strips", () => {
  it("encodes RGB as a PNG that decodes to the same pixels", () => {
    const rgb = Uint8Array.from({ length: 6 * 4 * 3 }, (_, i) => (i * 37) % 256);
    const back = PNG.sync.read(Buffer.from(encodePng(rgb, 6, 4)));
    expect([back.width, back.height]).toEqual([6, 4]);
    for (let p = 0; p < 24; p++)
      expect([back.data[4 * p], back.data[4 * p + 1], back.data[4 * p + 2]]).toEqual([
        rgb[3 * p],
        rgb[3 * p + 1],
        rgb[3 * p + 2],
      ]);
    expect(() => encodePng(rgb, 5, 4)).toThrow("is not a 5x4 RGB image");
  });

  it("draws one embedded PNG per frame with its label", () => {
    const f = new Uint8Array(8 * 8 * 3).fill(200);
    const svg = framesStripSvg([f, f, f], { width: 8, height: 8, labels: ["a", "b", "c"], title: "x < y" });
    expect(svg.match(/<image /g)).toHaveLength(3);
    expect(svg).toContain(">c</text>");
    expect(svg).toContain("x &lt; y");
  });

  it.skipIf(why !== undefined)(
    "the offline report shows the G1 camera beside each plotted chunk; an episode without video is skipped with a message",
    async () => {
      const examples = [
        { episode: 1, frame: 30, demo: [[0]], samples: [[[0]]] },
        { episode: 3, frame: 0, demo: [[0]], samples: [[[0]]] },
      ];
      const cacheDir = await mkdtemp(join(tmpdir(), "actionflow-strips-"));
      process.env.ACTIONFLOW_CACHE_DIR = cacheDir; // the decoded frames stay in a temp folder
      const messages: string[] = [];
      const strips = await readExampleStrips(G1, examples, 16, { missing: "skip", log: (m) => messages.push(m) });
      expect(strips!.key).toBe("observation.images.cam_high");
      expect([strips!.width, strips!.height]).toEqual([96, 72]);
      expect(strips!.byExample.get("1:30")!.indices).toEqual([30, 34, 38, 41, 45]);
      expect(strips!.byExample.has("3:0")).toBe(false);
      expect(messages.join("\n")).toContain("episode 3");
      await expect(readExampleStrips(G1, examples, 16)).rejects.toThrow("episode 3 has no video");
      const metrics = {
        policy: "p",
        objective: "flow",
        solver: "euler",
        steps: 10,
        valLoss: 0.3,
        latencyMs: 10,
        threads: 1,
        mse: 0.01,
        l1: 0.05,
        firstActionL1: 0.02,
        bestOfK: { k: 1, mse: 0.01 },
        spread: 0,
        perStepMse: [0.01],
        perJointMse: [0.01],
        perJointL1: [0.05],
        frames: 2,
        sweep: [],
        likelihood: null,
      };
      const result = {
        metrics,
        dataset: G1,
        examples,
        episodes: [1, 3],
        stride: 30,
        frames: 2,
        horizon: 1,
        actionDim: 1,
        jointNames: ["j"],
        runDir: undefined,
        seconds: 1,
      } as unknown as OfflineEvalResult;
      const doc = offlineReport(result, { strips: strips! });
      const section = doc.sections.find((s) => s.title === "Predicted chunks against the demonstration")!;
      expect(section.pictures).toHaveLength(1);
      expect(section.pictures![0]!.caption).toContain("episode 1, frame 30");
      expect(section.pictures![0]!.svg.match(/<image /g)).toHaveLength(5);
      await rm(cacheDir, { recursive: true, force: true });
    },
  );
});
