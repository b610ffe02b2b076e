/**
 * The report of `actionflow demo`: the flow head beside the regression baseline on one simulated
 * task (closed-loop success, rollout pictures, training curves), the real-time loop through a policy
 * server (inference latency histogram), the offline evaluation on held-out demonstrations and the
 * stages that ran. Built as a {@link ReportDocument} for `./report.ts`; the caller gathers the
 * figures (this module reads no files and knows nothing of the simulator).
 */
import type { OfflineEvalResult } from "./offline.ts";
import { offlineReport } from "./offline-report.ts";
import type { TrainingCurve } from "./offline-report.ts";
import { PALETTE } from "./report.ts";
import type { ReportChart, ReportDocument, ReportPicture, ReportSection } from "./report.ts";

/** One trained head's figures. */
export interface DemoPolicyFigures {
  /** "flow" or "regression". */
  objective: string;
  /** Closed-loop success in percent over `episodes` seeded episodes. */
  pcSuccess: number;
  episodes: number;
  /** Share of [first, second] mode among episodes that took one (two-mode tasks), else null. */
  modeShare: [number, number] | null;
  /** Training wall time, seconds. */
  trainS: number;
  trainLoss: number;
  valLoss: number;
  /** Training and validation loss by step. */
  curves: TrainingCurve[];
  /** Rollout pictures (top-down SVGs of evaluated episodes). */
  pictures: ReportPicture[];
}

/** The real-time loop's figures. */
export interface DemoLoopFigures {
  /** "zmq" or "openpi": the policy server the loop talked to. */
  via: string;
  server: string | null;
  /** Seconds of control over all episodes. */
  seconds: number;
  /** Episodes run one after another (each ends once solved), and how many were solved. */
  episodes: number;
  solved: number;
  /** Whether the last episode was stopped by the time limit rather than by its end. */
  lastCutOff: boolean;
  loopHz: number;
  jitterP99Ms: number;
  inferP50Ms: number;
  missedDeadlines: number;
  /** Every chunk request's round trip through the server, ms. */
  latenciesMs: number[];
}

/** Everything the demo report shows. */
export interface DemoReportInput {
  task: string;
  /** Settings shown in the subtitle (episodes, steps, backend, seed, ...). */
  settings: Record<string, string | number>;
  flow: DemoPolicyFigures;
  baseline: DemoPolicyFigures;
  loop: DemoLoopFigures;
  offline: OfflineEvalResult;
  /** The stages, whether they ran now or were reused, and how long they took when they ran. */
  stages: { name: string; status: "ran" | "reused"; seconds: number }[];
  /** The command that reproduces the report. */
  command: string;
}

/** Counts of `xs` in `bins` equal-width bins: bin centres and counts. */
export function histogram(xs: readonly number[], bins: number): { centers: number[]; counts: number[] } {
  if (xs.length === 0) return { centers: [], counts: [] };
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  const n = hi > lo ? bins : 1;
  const w = hi > lo ? (hi - lo) / n : 1;
  const counts = new Array<number>(n).fill(0);
  for (const x of xs) counts[Math.min(n - 1, Math.floor((x - lo) / w))]! += 1;
  return { centers: counts.map((_, i) => (hi > lo ? lo + (i + 0.5) * w : lo)), counts };
}

const pct = (v: number): string => `${v.toFixed(v === Math.round(v) ? 0 : 1)} %`;
const share = (s: [number, number] | null): string | null => (s ? `${s[0].toFixed(2)} / ${s[1].toFixed(2)}` : null);

/** The report document of a demo run; write it with `writeReport`. */
export function demoReport(d: DemoReportInput): ReportDocument {
  const { flow, baseline: base, loop, offline } = d;
  const m = offline.metrics;
  const b = offline.baseline;
  const curves: ReportChart = {
    title: "Training curves",
    caption: "Training loss (thin) and validation loss on the held-out episodes (thick), normalised units.",
    chart: {
      type: "line",
      data: {
        datasets: [flow, base].flatMap((p, i) =>
          p.curves.map((c) => ({
            label: `${p.objective} ${c.name}`,
            data: c.points.map((q) => ({ x: q.step, y: q.value })),
            borderColor: PALETTE[i === 0 ? 0 : 3],
            backgroundColor: PALETTE[i === 0 ? 0 : 3],
            borderWidth: c.name === "valLoss" ? 3 : 1,
            pointRadius: c.name === "valLoss" ? 2 : 0,
          })),
        ),
      },
      options: {
        scales: {
          x: { type: "linear", title: { display: true, text: "step" } },
          y: { type: "logarithmic", title: { display: true, text: "loss" } },
        },
      },
    },
  };
  const success: ReportChart = {
    title: `Closed-loop success over ${flow.episodes} seeded episodes`,
    caption: "The same scenes (seeds) for both heads.",
    chart: {
      type: "bar",
      data: {
        labels: ["flow head", "regression baseline"],
        datasets: [
          { label: "success %", data: [flow.pcSuccess, base.pcSuccess], backgroundColor: [PALETTE[0], PALETTE[3]] },
        ],
      },
      options: {
        plugins: { legend: { display: false } },
        scales: { y: { min: 0, max: 100, title: { display: true, text: "success %" } } },
      },
    },
  };
  const h = histogram(loop.latenciesMs, 20);
  const latency: ReportChart = {
    title: "Inference latency through the policy server",
    caption: `${loop.latenciesMs.length} chunk requests from the loop to the ${loop.via} server on 127.0.0.1 (round trip, ms).`,
    chart: {
      type: "bar",
      data: {
        labels: h.centers.map((c) => c.toFixed(1)),
        datasets: [{ label: "requests", data: h.counts, backgroundColor: PALETTE[0] }],
      },
      options: {
        plugins: { legend: { display: false } },
        scales: {
          x: { title: { display: true, text: "ms per chunk" } },
          y: { beginAtZero: true, title: { display: true, text: "requests" } },
        },
      },
    },
  };
  const sections: ReportSection[] = [
    {
      title: "Flow head against the regression baseline",
      text:
        `Both heads were trained on the same expert demonstrations of '${d.task}' with the same settings; only the objective differs. ` +
        `A regression head predicts the mean chunk, so where the demonstrations split into two modes it averages them; the flow head samples one mode.`,
      table: {
        columns: ["figure", "flow head", "regression baseline"],
        rows: [
          ["closed-loop success", pct(flow.pcSuccess), pct(base.pcSuccess)],
          ["mode share (of episodes taking one)", share(flow.modeShare), share(base.modeShare)],
          ["training s", flow.trainS, base.trainS],
          ["final train loss", flow.trainLoss, base.trainLoss],
          ["final validation loss", flow.valLoss, base.valLoss],
          ["offline chunk MSE (held-out)", m.mse, b?.mse ?? null],
          [`offline best-of-${m.bestOfK.k} MSE`, m.bestOfK.mse, b?.bestOfK.mse ?? null],
        ],
      },
      charts: [success, curves],
    },
    {
      title: "Rollouts: flow head",
      text: "Top-down view of evaluated episodes (blue path: success, red: failure; dot: start, square: end).",
      pictures: flow.pictures,
      columns: 4,
    },
    {
      title: "Rollouts: regression baseline",
      pictures: base.pictures,
      columns: 4,
    },
    {
      title: "Real-time loop",
      text: `The control loop drove the simulated robot in real time, one seeded episode after another, with the flow head behind the ${loop.via} policy server (${loop.server ?? "in process"}). Each episode starts a fresh server and inference worker.`,
      table: {
        columns: ["figure", "value"],
        rows: [
          [
            "episodes solved",
            `${loop.solved} of ${loop.episodes}${loop.lastCutOff ? " (the last stopped at the time limit)" : ""}`,
          ],
          ["seconds of control", loop.seconds],
          ["loop rate (Hz)", loop.loopHz],
          ["jitter p99 (ms, worst episode)", loop.jitterP99Ms],
          ["missed deadlines", loop.missedDeadlines],
          ["inference p50 (ms)", loop.inferP50Ms],
        ],
      },
      charts: [latency],
    },
  ];
  for (const s of offlineReport(offline).sections)
    sections.push({ ...s, title: `Offline, held-out demonstrations: ${s.title.toLowerCase()}` });
  sections.push({
    title: "Stages",
    text: "A stage is reused when a previous run finished it with the same settings (--fresh redoes every stage).",
    table: {
      columns: ["stage", "this run", "seconds"],
      rows: d.stages.map((s) => [s.name, s.status, s.seconds]),
    },
  });
  return {
    title: `actionflow demo: ${d.task}`,
    subtitle: Object.entries(d.settings)
      .map(([k, v]) => `${k} ${v}`)
      .join(", "),
    sections,
    footer: d.command,
  };
}
