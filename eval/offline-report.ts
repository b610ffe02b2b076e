/**
 * The report of an offline evaluation (`eval offline --report`): the figures as a table, predicted
 * chunks (several samples) against the demonstration per joint for a few frames, error against
 * horizon step and per joint, the solver sweep (error and latency), and the run's training curves;
 * when the dataset has a camera, a strip of its frames beside each plotted chunk (the image the
 * policy saw, then the frames over the chunk's horizon). Built as a {@link ReportDocument} for
 * `./report.ts`.
 */
import { z } from "zod";
import { resolveCheckpointDir } from "../policy/checkpoint/checkpoint.ts";
import { pathExists } from "../policy/io/files.ts";
import { readJsonFile } from "../policy/io/json.ts";
import { join } from "node:path";
import { openDataset } from "../datasets/open.ts";
import { loadEpisodeFrames } from "../datasets/video/frames.ts";
import { framesStripSvg } from "./frames.ts";
import type { ExampleFrame, OfflineEvalResult, PolicyMetrics } from "./offline.ts";
import { PALETTE, writeReport } from "./report.ts";
import type { ReportChart, ReportDocument, ReportSection } from "./report.ts";

/** One training curve: points (step, value). */
export interface TrainingCurve {
  name: string;
  points: { step: number; value: number }[];
}

/** The training curves a checkpoint's `train_state.json` keeps (older runs lack `trainHistory`). */
const CurvesStateSchema = z.looseObject({
  valHistory: z.array(z.object({ step: z.number(), valLoss: z.number().nullable() })).optional(),
  trainHistory: z.array(z.object({ step: z.number(), trainLoss: z.number().nullable() })).optional(),
});

/**
 * The training curves of a run folder: the training loss and the validation loss by step, as the
 * latest checkpoint's `train_state.json` keeps them. Empty when the folder has no checkpoint.
 */
export async function readTrainingCurves(runDir: string): Promise<TrainingCurve[]> {
  const dir = await resolveCheckpointDir(runDir).catch(() => undefined);
  if (!dir || !(await pathExists(join(dir, "train_state.json")))) return [];
  const state = await readJsonFile(join(dir, "train_state.json"), CurvesStateSchema);
  const curve = (name: string, points: { step: number; value: number | null }[]): TrainingCurve => ({
    name,
    points: points
      .filter((p): p is { step: number; value: number } => p.value !== null && Number.isFinite(p.value))
      .sort((x, y) => x.step - y.step),
  });
  const out = [
    curve(
      "trainLoss",
      (state.trainHistory ?? []).map((p) => ({ step: p.step, value: p.trainLoss })),
    ),
    curve(
      "valLoss",
      (state.valHistory ?? []).map((p) => ({ step: p.step, value: p.valLoss })),
    ),
  ];
  return out.filter((c) => c.points.length > 0);
}

/** Options of {@link offlineReport}. */
export interface OfflineReportOptions {
  /** The training curves to plot (see {@link readTrainingCurves}). */
  curves?: TrainingCurve[];
  /** Joints plotted per example frame (default 4: the ones that move most in the examples). */
  joints?: number;
  /** The command that reproduces the figures, shown in the footer. */
  command?: string;
  /** Camera strips of the plotted chunks (see {@link readExampleStrips}). */
  strips?: ExampleStrips;
}

/** The camera frames shown beside each plotted chunk: uint8 RGB `[H, W, 3]` images by `episode:frame`. */
export interface ExampleStrips {
  key: string;
  width: number;
  height: number;
  /** `${episode}:${frame}` -> the frames and their frame indices (the first is the observation's). */
  byExample: Map<string, { frames: Uint8Array[]; indices: number[] }>;
}

/**
 * Reads, for every example chunk, the frames of the dataset's first camera (or `key`) at the
 * observation and every quarter of the chunk's horizon, decoded to 96 px wide (the camera's aspect).
 * Returns undefined when the dataset has no camera. An example whose episode has no video is left
 * out (with a message) under `missing: "skip"`, and refused under "error" (the default).
 */
export async function readExampleStrips(
  datasetPath: string,
  examples: readonly ExampleFrame[],
  horizon: number,
  opts: { key?: string; missing?: "error" | "skip"; log?: (m: string) => void } = {},
): Promise<ExampleStrips | undefined> {
  const ds = await openDataset(datasetPath);
  try {
    if (ds.format !== "lerobot") return undefined;
    const key = opts.key ?? ds.dataset.cameraKeys[0];
    if (!key) return undefined;
    const shape = ds.dataset.features[key]!.shape;
    const width = 96;
    const height = Math.max(2, 2 * Math.round((96 * (shape[0] ?? 96)) / (shape[1] ?? 96) / 2));
    const byExample = new Map<string, { frames: Uint8Array[]; indices: number[] }>();
    const fb = width * height * 3;
    for (const e of examples) {
      const f = await loadEpisodeFrames(
        ds,
        e.episode,
        key,
        { width, height },
        {
          ...(opts.missing ? { missing: opts.missing } : {}),
          ...(opts.log ? { log: opts.log } : {}),
        },
      );
      if (!f) continue;
      const indices = [0, 1, 2, 3, 4]
        .map((q) => Math.min(f.count - 1, e.frame + Math.round((q * (horizon - 1)) / 4)))
        .filter((v, i, a) => a.indexOf(v) === i);
      byExample.set(`${e.episode}:${e.frame}`, {
        frames: indices.map((i) => f.data.slice(i * fb, (i + 1) * fb)),
        indices,
      });
    }
    return { key, width, height, byExample };
  } finally {
    ds.dataset.close();
  }
}

/**
 * Writes the HTML report of `r` to `file`, with the training curves of the policy's run (when it has
 * a run folder) and `command` in the footer.
 */
export async function writeOfflineReport(
  file: string,
  r: OfflineEvalResult,
  opts: {
    command?: string;
    /** The dataset evaluated: its first camera's frames are shown beside each plotted chunk. */
    dataset?: string;
    /** An example whose episode has no video: refused (default) or left out with a message. */
    missingVideo?: "error" | "skip";
    log?: (m: string) => void;
  } = {},
): Promise<void> {
  const curves = r.runDir ? await readTrainingCurves(r.runDir) : [];
  const strips =
    opts.dataset !== undefined
      ? await readExampleStrips(opts.dataset, r.examples, r.horizon, {
          ...(opts.missingVideo ? { missing: opts.missingVideo } : {}),
          ...(opts.log ? { log: opts.log } : {}),
        })
      : undefined;
  await writeReport(
    file,
    offlineReport(r, {
      curves,
      ...(opts.command !== undefined ? { command: opts.command } : {}),
      ...(strips ? { strips } : {}),
    }),
  );
}

/** The report document of an offline evaluation. */
export function offlineReport(r: OfflineEvalResult, opts: OfflineReportOptions = {}): ReportDocument {
  const m = r.metrics;
  const b = r.baseline;
  const sections: ReportSection[] = [
    {
      title: "Figures",
      text:
        `${r.frames} frames (every ${r.stride}th of episodes ${r.episodes.join(", ")}), chunks of ${r.horizon} steps x ${r.actionDim} action dims. ` +
        `Errors are in the dataset's units; best-of-K takes the closest of K sampled chunks per frame, so a policy that picked another valid mode is not counted as wrong. ` +
        `The validation loss is the training objective on the velocity graph (normalised units, fixed seeds).`,
      table: {
        columns: ["metric", label(m), ...(b ? [label(b)] : [])],
        rows: metricRows(m, b),
      },
    },
  ];

  const examples = r.examples.filter((e) => e.samples.length > 0);
  if (examples.length > 0) {
    const joints = movingJoints(r, opts.joints ?? 4);
    const charts: ReportChart[] = [];
    for (const e of examples) {
      for (const j of joints) {
        const steps = e.demo.map((_, h) => h);
        const datasets: Record<string, unknown>[] = e.samples.map((s, k) => ({
          label: k === 0 ? `samples (${e.samples.length})` : "",
          data: s.map((row) => row[j]),
          borderColor: withAlpha(PALETTE[0]!, 0.55),
          borderWidth: 1.5,
          pointRadius: 0,
        }));
        datasets.push({
          label: "demonstration",
          data: e.demo.map((row) => row[j]),
          borderColor: "#111111",
          borderWidth: 3,
          pointRadius: 0,
        });
        if (e.baseline)
          datasets.push({
            label: "baseline",
            data: e.baseline.map((row) => row[j]),
            borderColor: PALETTE[3],
            borderDash: [6, 4],
            borderWidth: 2,
            pointRadius: 0,
          });
        charts.push({
          title: `episode ${e.episode}, frame ${e.frame}: ${r.jointNames[j] ?? `a${j}`}`,
          height: 220,
          chart: {
            type: "line",
            data: { labels: steps, datasets },
            options: {
              plugins: { legend: { labels: { boxWidth: 12 } } },
              scales: {
                x: { title: { display: true, text: "horizon step" } },
                y: { title: { display: true, text: "action" } },
              },
            },
          },
        });
      }
    }
    const st = opts.strips;
    const pictures = st
      ? examples.flatMap((e) => {
          const s = st.byExample.get(`${e.episode}:${e.frame}`);
          if (!s) return [];
          return [
            {
              svg: framesStripSvg(s.frames, {
                width: st.width,
                height: st.height,
                labels: s.indices.map((i) => `frame ${i}`),
              }),
              caption: `episode ${e.episode}, frame ${e.frame}: ${st.key}, the image the policy saw (left) and the frames over its chunk`,
            },
          ];
        })
      : [];
    sections.push({
      title: "Predicted chunks against the demonstration",
      text: `Each plot is one joint at one frame: ${examples[0]!.samples.length} sampled chunks of the policy (blue), the demonstrated chunk (black)${b ? " and the baseline (red, dashed)" : ""}. The joints shown are the ones that move most in these frames.${pictures.length > 0 ? " Below, the camera frames of each plotted chunk." : ""}`,
      charts,
      columns: Math.min(4, joints.length),
      ...(pictures.length > 0 ? { pictures } : {}),
    });
  }

  const stepLabels = m.perStepMse.map((_, h) => h);
  sections.push({
    title: "Error along the chunk",
    charts: [
      {
        title: "MSE against horizon step",
        caption: "Later steps are further from the observation the chunk was conditioned on.",
        chart: {
          type: "line",
          data: {
            labels: stepLabels,
            datasets: [
              series(label(m), m.perStepMse, PALETTE[0]!),
              ...(b ? [series(label(b), b.perStepMse, PALETTE[3]!)] : []),
            ],
          },
          options: axes("horizon step", "MSE (dataset units²)"),
        },
      },
      {
        title: "MSE per joint",
        chart: {
          type: "bar",
          data: {
            labels: r.jointNames,
            datasets: [
              { label: label(m), data: m.perJointMse, backgroundColor: PALETTE[0] },
              ...(b ? [{ label: label(b), data: b.perJointMse, backgroundColor: PALETTE[3] }] : []),
            ],
          },
          options: axes("joint", "MSE (dataset units²)"),
        },
      },
    ],
  });

  if (m.sweep.length > 0) {
    const solvers = [...new Set(m.sweep.map((p) => p.solver))];
    const point = (key: "mse" | "latencyMs") =>
      solvers.map((s, i) => ({
        label: s,
        data: m.sweep.filter((p) => p.solver === s).map((p) => ({ x: p.steps, y: p[key] })),
        borderColor: PALETTE[i % PALETTE.length],
        backgroundColor: PALETTE[i % PALETTE.length],
        pointRadius: 3,
      }));
    const scales = (y: string, log: boolean): Record<string, unknown> => ({
      scales: {
        x: { type: "logarithmic", title: { display: true, text: "solver steps" } },
        y: { type: log ? "logarithmic" : "linear", title: { display: true, text: y } },
      },
    });
    sections.push({
      title: "Solver sweep",
      text: `Every solver and step count exported to ONNX in memory and run on the same frames with the same noise (one sample per frame). Latency is the median time of one chunk at batch 1 on ${m.threads} onnxruntime thread(s); on a machine busy with other work it is noisy.`,
      charts: [
        {
          title: "Chunk MSE against solver steps",
          chart: { type: "line", data: { datasets: point("mse") }, options: scales("MSE (dataset units²)", false) },
        },
        {
          title: "ONNX latency against solver steps",
          chart: { type: "line", data: { datasets: point("latencyMs") }, options: scales("ms per chunk", true) },
        },
      ],
    });
  }

  const curves = opts.curves ?? [];
  if (curves.length > 0) {
    sections.push({
      title: "Training",
      charts: [
        {
          title: "Training curves",
          caption: "From the run folder (metrics log, or the validation history of the latest checkpoint).",
          chart: {
            type: "line",
            data: {
              datasets: curves.map((c, i) => ({
                label: c.name,
                data: c.points.map((p) => ({ x: p.step, y: p.value })),
                borderColor: PALETTE[i % PALETTE.length],
                backgroundColor: PALETTE[i % PALETTE.length],
                pointRadius: 2,
              })),
            },
            options: {
              scales: {
                x: { type: "linear", title: { display: true, text: "step" } },
                y: { type: "logarithmic", title: { display: true, text: "loss" } },
              },
            },
          },
        },
      ],
      columns: 1,
    });
  }

  return {
    title: `Offline evaluation: ${m.policy}`,
    subtitle: `${r.dataset}, episodes ${r.episodes.join(", ")}; ${m.objective} head, ${m.solver}${m.solver !== "none" ? ` ${m.steps} steps` : ""}${b ? `; baseline ${b.policy}` : ""}; ${r.seconds.toFixed(0)} s`,
    sections,
    ...(opts.command ? { footer: opts.command } : {}),
  };
}

function label(m: PolicyMetrics): string {
  return `${m.objective} (${m.policy.split("/").filter(Boolean).pop() ?? m.policy})`;
}

function metricRows(m: PolicyMetrics, b: PolicyMetrics | undefined): (string | number | null)[][] {
  const row = (name: string, f: (x: PolicyMetrics) => number | null): (string | number | null)[] => [
    name,
    f(m),
    ...(b ? [f(b)] : []),
  ];
  return [
    row("validation loss (normalised)", (x) => x.valLoss),
    row("MSE", (x) => x.mse),
    row("L1", (x) => x.l1),
    row("first-action L1", (x) => x.firstActionL1),
    row(`best-of-${m.bestOfK.k} MSE`, (x) => x.bestOfK.mse),
    row("spread between samples (RMS)", (x) => x.spread),
    row("log-likelihood (nats/dim)", (x) => x.likelihood?.perDim ?? null),
    row("  its standard error", (x) => x.likelihood?.stdErr ?? null),
    row("log-likelihood, normalised units", (x) => x.likelihood?.perDimNormalized ?? null),
    row("latency per chunk (ms)", (x) => x.latencyMs),
  ];
}

/** The `count` action dims that move most (range of the demonstrations) over the example frames. */
function movingJoints(r: OfflineEvalResult, count: number): number[] {
  const range = Array.from({ length: r.actionDim }, (_, j) => {
    let lo = Infinity;
    let hi = -Infinity;
    for (const e of r.examples)
      for (const row of e.demo) {
        lo = Math.min(lo, row[j]!);
        hi = Math.max(hi, row[j]!);
      }
    return hi - lo;
  });
  return range
    .map((v, j) => [v, j] as const)
    .sort((a, b) => b[0] - a[0])
    .slice(0, Math.max(1, Math.min(count, r.actionDim)))
    .map(([, j]) => j)
    .sort((a, b) => a - b);
}

function series(name: string, data: number[], color: string): Record<string, unknown> {
  return { label: name, data, borderColor: color, backgroundColor: color, pointRadius: 0, borderWidth: 2 };
}

function axes(x: string, y: string): Record<string, unknown> {
  return {
    scales: { x: { title: { display: true, text: x } }, y: { title: { display: true, text: y }, beginAtZero: true } },
  };
}

function withAlpha(hex: string, alpha: number): string {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}
