/**
 * The HTML report of a closed-loop evaluation (`sim eval`): the aggregated figures, and every
 * episode's reward and length, drawn with the report module every result uses (`eval/report.ts`).
 */
import type { ReportDocument } from "../eval/report.ts";
import { PALETTE } from "../eval/report.ts";
import type { EvalInfo } from "./eval.ts";

/** What the report says was evaluated. */
export interface SimEvalReportOptions {
  task: string;
  /** The policy's path, or "expert". */
  policy: string;
  /** How chunks were executed, e.g. "sync, 8 action steps, no delay". */
  execution: string;
  /** The command that reproduces the figures (shown at the end). */
  command?: string;
}

/** The report document of `info`; write it with `writeReport`. */
export function simEvalReport(info: EvalInfo, o: SimEvalReportOptions): ReportDocument {
  const a = info.aggregated;
  const eps = info.per_episode;
  const colour = (ok: boolean): string => (ok ? PALETTE[2]! : PALETTE[3]!);
  const rows: (string | number | null)[][] = [
    ["success (%)", a.pc_success],
    ["episodes", eps.length],
    ["avg sum reward", a.avg_sum_reward],
    ["avg max reward", a.avg_max_reward],
    ["eval s (per episode)", a.eval_ep_s],
  ];
  if (a.mode_share)
    rows.push(["mode share left / right", `${a.mode_share[0].toFixed(2)} / ${a.mode_share[1].toFixed(2)}`]);
  if (a.instructed_share !== undefined) rows.push(["went the instructed way (share)", a.instructed_share]);
  rows.push(
    ["mean end-effector path length (m)", a.smoothness.path_length_m],
    ["mean squared jerk of the joint commands (rad²/s⁶)", a.smoothness.mean_sq_jerk],
    ["mean direction reversals of the end effector", a.smoothness.reversals],
  );
  const bars = (label: string, values: number[]) => ({
    type: "bar",
    data: {
      labels: eps.map((e) => String(e.seed)),
      datasets: [{ label, data: values, backgroundColor: eps.map((e) => colour(e.success)) }],
    },
    options: { plugins: { legend: { display: false } }, scales: { x: { title: { display: true, text: "seed" } } } },
  });
  return {
    title: `sim eval: ${o.task}`,
    subtitle: `${o.policy}; ${o.execution}`,
    sections: [
      {
        title: "Result",
        text: "Closed-loop episodes in MuJoCo, each reset with its seed; green bars succeeded, red failed.",
        table: { columns: ["figure", "value"], rows },
        charts: [
          {
            title: "Reward summed over each episode",
            chart: bars(
              "sum reward",
              eps.map((e) => e.sum_reward),
            ),
          },
          {
            title: "Control steps of each episode",
            chart: bars(
              "steps",
              eps.map((e) => e.length),
            ),
          },
          {
            title: "End-effector direction reversals of each episode",
            chart: bars(
              "reversals",
              eps.map((e) => e.smoothness.reversals),
            ),
          },
        ],
      },
    ],
    ...(o.command ? { footer: o.command } : {}),
  };
}
