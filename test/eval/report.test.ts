import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { OfflineEvalResult, PolicyMetrics } from "../../eval/offline.ts";
import { offlineReport, readTrainingCurves } from "../../eval/offline-report.ts";
import { renderReport, writeReport } from "../../eval/report.ts";
import { Rng } from "../../policy/random.ts";

const CHROMIUM = "/usr/bin/chromium";
if (!existsSync(CHROMIUM))
  console.warn(
    `eval/report: the browser test is skipped, ${CHROMIUM} is absent (test/setup/install-chromium.sh installs it where apt is available)`,
  );
const H = 16;
const A = 5;

/** A plausible evaluation result (no model needed): sine-like demonstrations, noisy samples. */
function fakeResult(): OfflineEvalResult {
  const rng = new Rng(4);
  const chunk = (phase: number, noise: number): number[][] =>
    Array.from({ length: H }, (_, h) =>
      Array.from({ length: A }, (_, j) => Math.sin(phase + h / 5 + j) * (j + 1) * 0.2 + noise * rng.normal()),
    );
  const metrics = (policy: string, objective: string, sweep: boolean): PolicyMetrics => ({
    policy,
    objective,
    solver: objective === "flow" ? "euler" : "none",
    steps: objective === "flow" ? 10 : 1,
    valLoss: 0.31,
    latencyMs: 12.5,
    threads: 1,
    mse: 0.012,
    l1: 0.07,
    firstActionL1: 0.03,
    bestOfK: { k: objective === "flow" ? 4 : 1, mse: 0.006 },
    spread: 0.05,
    perStepMse: Array.from({ length: H }, (_, h) => 0.002 + 0.001 * h),
    perJointMse: Array.from({ length: A }, (_, j) => 0.004 * (j + 1)),
    perJointL1: Array.from({ length: A }, (_, j) => 0.05 * (j + 1)),
    frames: 40,
    sweep: sweep
      ? (["euler", "midpoint", "heun", "rk4"] as const).flatMap((solver, i) =>
          [1, 2, 4, 10, 20].map((steps) => ({
            solver,
            steps,
            nfe: steps * [1, 2, 2, 4][i]!,
            mse: 0.01 + 0.01 / steps,
            latencyMs: 2.5 * steps * [1, 2, 2, 4][i]!,
          })),
        )
      : [],
    likelihood:
      objective === "flow"
        ? { perDim: 1.2, perDimNormalized: 0.3, stdErr: 0.02, method: "hutchinson", dims: H * A, frames: 8 }
        : null,
  });
  return {
    metrics: metrics("runs/flow", "flow", true),
    baseline: metrics("runs/regression", "regression", false),
    dataset: "examples/data/g1",
    episodes: [8, 9],
    stride: 5,
    frames: 40,
    horizon: H,
    actionDim: A,
    jointNames: ["shoulder", "elbow", "wrist", "finger </script>", "gripper"],
    examples: [0, 1].map((e) => ({
      episode: 8 + e,
      frame: 10 * e,
      demo: chunk(e, 0),
      samples: [0, 1, 2, 3].map(() => chunk(e, 0.05)),
      baseline: chunk(e, 0.02),
    })),
    runDir: undefined,
    seconds: 42,
  };
}

/**
 * Runs in the page (a string: the tests compile without the DOM types): per canvas, the pixels with
 * any ink and the coloured ones (data series; axes, grid and text are grey).
 */
const INK = `Array.from(document.querySelectorAll("canvas[data-chart]")).map((canvas) => {
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let inked = 0;
  let coloured = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] > 0) inked++;
    const r = data[i], g = data[i + 1], b = data[i + 2];
    if (data[i + 3] > 100 && Math.max(r, g, b) - Math.min(r, g, b) > 60) coloured++;
  }
  return { chart: canvas.dataset.chart, pixels: data.length / 4, inked, coloured };
})`;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "actionflow-report-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("eval/report", () => {
  it("is one self-contained file: Chart.js inlined, no network URL, text escaped", async () => {
    const html = await renderReport(offlineReport(fakeResult(), { command: "actionflow eval offline <x>" }));
    expect(html).toContain("Chart.js v4");
    expect(html).not.toMatch(/\b(src|href)\s*=\s*["']?(https?:)?\/\//i);
    expect(html).not.toMatch(/@import|url\(\s*["']?https?:/i);
    // The joint name with a closing tag is escaped in the chart data, not ending the script early.
    expect(html.match(/<\/script>/g)?.length).toBe(3);
    expect(html).toContain("actionflow eval offline &#60;x&#62;");
  });

  it("reads the training and validation curves kept in the latest checkpoint's train_state.json", async () => {
    const run = join(dir, "run");
    const ckpt = join(run, "checkpoints", "step-000010");
    await mkdir(ckpt, { recursive: true });
    await writeFile(join(run, "checkpoints", "latest.json"), JSON.stringify({ checkpoint: "step-000010" }));
    await writeFile(join(ckpt, "config.json"), "{}");
    const state = {
      step: 10,
      valHistory: [
        { step: 0, valLoss: 2 },
        { step: 10, valLoss: 1 },
      ],
    };
    await writeFile(join(ckpt, "train_state.json"), JSON.stringify(state));
    const val = {
      name: "valLoss",
      points: [
        { step: 0, value: 2 },
        { step: 10, value: 1 },
      ],
    };
    // A run saved before the training curve was kept: validation only.
    expect(await readTrainingCurves(run)).toEqual([val]);
    const trainHistory = [
      { step: 10, trainLoss: 1.1 },
      { step: 5, trainLoss: null },
      { step: 0, trainLoss: 1.5 },
    ];
    await writeFile(join(ckpt, "train_state.json"), JSON.stringify({ ...state, trainHistory }));
    expect(await readTrainingCurves(run)).toEqual([
      {
        name: "trainLoss",
        points: [
          { step: 0, value: 1.5 },
          { step: 10, value: 1.1 },
        ],
      },
      val,
    ]);
    expect(await readTrainingCurves(join(dir, "nowhere"))).toEqual([]);
    await writeFile(join(ckpt, "train_state.json"), JSON.stringify({ ...state, valHistory: "no" }));
    await expect(readTrainingCurves(run)).rejects.toThrow(/train_state\.json: valHistory: expected array/);
  });

  it.skipIf(!existsSync(CHROMIUM))(
    "renders every chart in headless Chromium from file:// with no console error and no network request",
    async () => {
      const file = join(dir, "report.html");
      const curves = [
        { name: "valLoss", points: [0, 50, 100, 150].map((step, i) => ({ step, value: 1.5 / (i + 1) })) },
      ];
      await writeReport(file, offlineReport(fakeResult(), { curves, joints: 3 }));
      const browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
          "--no-first-run",
        ],
      });
      try {
        const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
        const problems: string[] = [];
        const requests: string[] = [];
        page.on("console", (m) => {
          if (m.type() === "error" || m.type() === "warning") problems.push(`${m.type()}: ${m.text()}`);
        });
        page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
        page.on("request", (r) => requests.push(r.url()));
        await page.goto(pathToFileURL(file).href);
        await page.waitForFunction("typeof window.reportCharts === 'number'", null, { timeout: 20_000 });
        const made = (await page.evaluate("window.reportCharts")) as number;
        // 2 example frames x 3 joints, error per step, per joint, sweep x 2, training curves.
        expect(made).toBe(2 * 3 + 2 + 2 + 1);
        const drawn = (await page.evaluate(INK)) as {
          chart: string;
          pixels: number;
          inked: number;
          coloured: number;
        }[];
        expect(drawn).toHaveLength(made);
        for (const d of drawn) {
          // Axes and labels alone ink a few percent; the data series are the coloured pixels.
          expect(d.inked / d.pixels, `chart ${d.chart}`).toBeGreaterThan(0.01);
          expect(d.coloured, `chart ${d.chart} has no coloured (data) pixels`).toBeGreaterThan(200);
        }
        expect(problems).toEqual([]);
        expect(requests.filter((u) => !u.startsWith("file:") && !u.startsWith("data:"))).toEqual([]);
      } finally {
        await browser.close();
      }
    },
    60_000,
  );
});
