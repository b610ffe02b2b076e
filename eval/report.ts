/**
 * The HTML report every result uses (`eval offline`, `sim eval`, the demo): one self-contained file,
 * no network assets, that works from a `file://` URL. Plots are drawn by Chart.js, whose UMD build
 * is inlined; each chart is a plain JSON Chart.js configuration (no functions), so a caller
 * describes its plots as data and this module owns the page.
 *
 * Datasets labelled "" are left out of the legends (e.g. the 2nd..Kth of K sampled chunks).
 * The page sets `window.reportCharts` to the number of charts it created once they are drawn
 * (animation is off), which tests and screenshots wait for; every canvas carries `data-chart`.
 */
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { writeFileAtomic } from "../policy/io/atomic.ts";

/** One plot: a Chart.js configuration as JSON (`type`, `data`, `options`; no callbacks). */
export interface ReportChart {
  title: string;
  /** A line under the plot saying what to read from it. */
  caption?: string;
  chart: { type: string; data: unknown; options?: Record<string, unknown> };
  /** Canvas height in CSS pixels (default 260). */
  height?: number;
}

/** A table of figures; numbers are shown with 4 significant digits, null as a dash. */
export interface ReportTable {
  columns: string[];
  rows: (string | number | null)[][];
}

/** A section of the report: a heading, optional text, an optional table, charts in a grid. */
export interface ReportSection {
  title: string;
  /** Paragraphs (plain text; blank lines separate paragraphs). */
  text?: string;
  table?: ReportTable;
  charts?: ReportChart[];
  /** Charts per row (default 2); pictures too. */
  columns?: number;
  /** Pictures (SVG documents, embedded as data URLs), in a grid after the charts. */
  pictures?: ReportPicture[];
}

/** A picture in a section: an SVG document and a line under it. */
export interface ReportPicture {
  svg: string;
  caption?: string;
}

/** A whole report. */
export interface ReportDocument {
  title: string;
  /** A line under the title (what was evaluated, when). */
  subtitle?: string;
  sections: ReportSection[];
  /** Small print at the end (the command that reproduces the figures). */
  footer?: string;
}

/** A palette that stays readable on white, for callers colouring their own datasets. */
export const PALETTE: readonly string[] = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#17becf",
  "#bcbd22",
  "#7f7f7f",
];

let chartJs: Promise<string> | undefined;

/** The Chart.js UMD build from node_modules (read once). */
function chartJsSource(): Promise<string> {
  chartJs ??= (async () => {
    const main = createRequire(import.meta.url).resolve("chart.js");
    const file = join(dirname(main), "chart.umd.min.js");
    try {
      return await readFile(file, "utf8");
    } catch (err) {
      throw new Error(`${file}: cannot read Chart.js (is the chart.js package installed?)`, { cause: err });
    }
  })();
  return chartJs;
}

/** Renders the report to one HTML string. */
export async function renderReport(doc: ReportDocument): Promise<string> {
  const lib = await chartJsSource();
  const charts: ReportChart["chart"][] = [];
  const sections = doc.sections.map((s) => {
    const parts = [`<section><h2>${esc(s.title)}</h2>`];
    if (s.text) for (const p of s.text.split(/\n\s*\n/)) if (p.trim()) parts.push(`<p>${esc(p.trim())}</p>`);
    if (s.table) parts.push(renderTable(s.table));
    if (s.charts && s.charts.length > 0) {
      const cols = Math.max(1, Math.min(4, s.columns ?? 2));
      parts.push(`<div class="grid" style="grid-template-columns: repeat(${cols}, minmax(0, 1fr))">`);
      for (const c of s.charts) {
        const i = charts.length;
        charts.push(c.chart);
        parts.push(
          `<figure><figcaption class="title">${esc(c.title)}</figcaption>` +
            `<div class="plot" style="height:${c.height ?? 260}px"><canvas data-chart="${i}"></canvas></div>` +
            (c.caption ? `<figcaption class="caption">${esc(c.caption)}</figcaption>` : "") +
            `</figure>`,
        );
      }
      parts.push(`</div>`);
    }
    if (s.pictures && s.pictures.length > 0) {
      const cols = Math.max(1, Math.min(6, s.columns ?? 4));
      parts.push(`<div class="grid" style="grid-template-columns: repeat(${cols}, minmax(0, 1fr))">`);
      for (const p of s.pictures)
        parts.push(
          `<figure><img alt="${esc(p.caption ?? "")}" src="data:image/svg+xml;base64,${Buffer.from(p.svg).toString("base64")}">` +
            (p.caption ? `<figcaption class="caption">${esc(p.caption)}</figcaption>` : "") +
            `</figure>`,
        );
      parts.push(`</div>`);
    }
    parts.push(`</section>`);
    return parts.join("\n");
  });
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(doc.title)}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #222; margin: 0; background: #fff; }
header { padding: 20px 32px 12px; border-bottom: 1px solid #e3e3e3; }
h1 { font-size: 22px; margin: 0 0 4px; }
.subtitle { color: #555; margin: 0; }
main { padding: 8px 32px 24px; max-width: 1400px; }
h2 { font-size: 17px; margin: 24px 0 8px; border-bottom: 1px solid #eee; padding-bottom: 4px; }
p { margin: 6px 0; max-width: 70em; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { padding: 4px 12px; border-bottom: 1px solid #eee; text-align: right; font-variant-numeric: tabular-nums; }
th:first-child, td:first-child { text-align: left; }
th { background: #f6f6f6; }
.grid { display: grid; gap: 16px; }
figure { margin: 0; border: 1px solid #eee; border-radius: 6px; padding: 8px 10px; }
figcaption.title { font-weight: 600; margin-bottom: 4px; }
figcaption.caption { color: #666; font-size: 12px; margin-top: 4px; }
.plot { position: relative; }
figure img { width: 100%; height: auto; display: block; }
footer { color: #777; font-size: 12px; padding: 12px 32px 24px; border-top: 1px solid #e3e3e3; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
</style>
</head>
<body>
<header><h1>${esc(doc.title)}</h1>${doc.subtitle ? `<p class="subtitle">${esc(doc.subtitle)}</p>` : ""}</header>
<main>
${sections.join("\n")}
</main>
${doc.footer ? `<footer><code>${esc(doc.footer)}</code></footer>` : ""}
<script>${lib.replace(/<\/script/gi, "<\\/script")}</script>
<script type="application/json" id="report-charts">${jsonForScript(charts)}</script>
<script>
(function () {
  Chart.defaults.animation = false;
  Chart.defaults.responsive = true;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.plugins.legend.labels.filter = function (item) { return item.text !== ""; };
  var configs = JSON.parse(document.getElementById("report-charts").textContent);
  var made = 0;
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    new Chart(canvas, configs[Number(canvas.getAttribute("data-chart"))]);
    made++;
  });
  window.reportCharts = made;
})();
</script>
</body>
</html>
`;
}

/** Renders the report and writes it to `file` atomically (creating its folder). */
export async function writeReport(file: string, doc: ReportDocument): Promise<void> {
  await writeFileAtomic(file, await renderReport(doc));
}

function renderTable(t: ReportTable): string {
  const cell = (v: string | number | null): string =>
    v === null ? "–" : typeof v === "number" ? esc(formatNumber(v)) : esc(v);
  return [
    "<table>",
    `<tr>${t.columns.map((c) => `<th>${esc(c)}</th>`).join("")}</tr>`,
    ...t.rows.map((r) => `<tr>${r.map((v) => `<td>${cell(v)}</td>`).join("")}</tr>`),
    "</table>",
  ].join("\n");
}

/** A number for people: 4 significant digits, exponent notation outside [1e-3, 1e5). */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a < 1e-3 || a >= 1e5) return v.toExponential(3);
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(4)));
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** JSON safe inside a <script> element: no `</script>` or `<!--` can close or confuse it. */
function jsonForScript(v: unknown): string {
  return JSON.stringify(v)
    .replace(/</g, "\\u003c")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}
