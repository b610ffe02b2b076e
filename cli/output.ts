/**
 * The CLI's output conventions: with `--json` the last line of stdout is exactly one JSON object;
 * a progress bar goes to stderr only when stderr is a TTY and `--json` is off.
 */
import cliProgress from "cli-progress";

/** Options every result-producing command accepts. */
export interface OutputOptions {
  json?: boolean;
}

/** Prints a command's result: one JSON line with `--json`, else a readable summary. */
export function printResult(result: object, opts: OutputOptions, human?: (r: never) => string): void {
  if (opts.json) {
    process.stdout.write(JSON.stringify(result) + "\n");
  } else if (human) {
    process.stdout.write(human(result as never) + "\n");
  } else {
    process.stdout.write(JSON.stringify(result, null, 2) + "\n");
  }
}

/** A progress reporter; a no-op when progress is not shown. */
export interface Progress {
  update(value: number, payload?: Record<string, string | number>): void;
  stop(): void;
}

/** Starts a progress bar on stderr of `total` units, or a silent one (not a TTY, or `--json`). */
export function startProgress(total: number, opts: OutputOptions & { label?: string }): Progress {
  if (opts.json || !process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${opts.label ?? "progress"} [{bar}] {value}/{total} {percentage}% eta {eta_formatted} {info}`,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { info: "" });
  return {
    update(value, payload) {
      const info = payload
        ? Object.entries(payload)
            .map(([k, v]) => `${k}=${typeof v === "number" ? v.toPrecision(4) : v}`)
            .join(" ")
        : "";
      bar.update(value, { info });
    },
    stop() {
      bar.stop();
    },
  };
}

/** One progress report of a training run (train, distill). */
export interface TrainingProgress {
  step: number;
  steps: number;
  trainLoss: number;
  valLoss?: number;
  samplesPerSec: number;
}

/**
 * Shows a training run's progress: a bar on a TTY; without one (not a TTY, or `--json`) a line on
 * stderr every twentieth of the run and at its end, so a log shows the run is alive.
 */
export function trainingProgress(opts: OutputOptions & { label: string }): {
  report(p: TrainingProgress): void;
  stop(): void;
} {
  let bar: Progress | undefined;
  let lastLogged = 0;
  return {
    report(p) {
      bar ??= startProgress(p.steps, opts);
      bar.update(p.step, {
        loss: p.trainLoss,
        ...(p.valLoss !== undefined ? { val: p.valLoss } : {}),
        "samples/s": p.samplesPerSec,
      });
      if (
        (opts.json || !process.stderr.isTTY) &&
        (p.step - lastLogged >= Math.max(1, Math.round(p.steps / 20)) || p.step === p.steps)
      ) {
        lastLogged = p.step;
        const val = p.valLoss !== undefined ? ` val ${p.valLoss.toPrecision(4)}` : "";
        log(
          `step ${p.step}/${p.steps} loss ${p.trainLoss.toPrecision(4)}${val} ${p.samplesPerSec.toFixed(1)} samples/s`,
        );
      }
    },
    stop() {
      bar?.stop();
    },
  };
}

/**
 * One report of work done in phases, one after another (the demo's stages, the toy runs): `count`
 * units of a phase, a `training` run's step, or the `end` of a phase.
 */
export type PhaseProgress =
  | { kind: "count"; phase: string; done: number; total: number; info?: Record<string, number> }
  | { kind: "training"; phase: string; progress: TrainingProgress }
  | { kind: "end"; phase: string };

/**
 * Shows phased progress: a bar per phase on stderr, labelled with the phase ({@link startProgress}
 * for `count`, {@link trainingProgress} for `training`, which also logs a line now and then without
 * a TTY); a phase's bar stops at its `end` or when another phase reports.
 */
export function phasedProgress(opts: OutputOptions): { report(p: PhaseProgress): void; stop(): void } {
  let current: { phase: string; count?: Progress; training?: ReturnType<typeof trainingProgress> } | undefined;
  const stop = (): void => {
    current?.count?.stop();
    current?.training?.stop();
    current = undefined;
  };
  return {
    report(p) {
      if (current && current.phase !== p.phase) stop();
      if (p.kind === "end") return stop();
      current ??= { phase: p.phase };
      if (p.kind === "count") {
        current.count ??= startProgress(p.total, { ...opts, label: p.phase });
        current.count.update(p.done, p.info);
      } else {
        current.training ??= trainingProgress({ ...opts, label: p.phase });
        current.training.report(p.progress);
      }
    },
    stop,
  };
}

/** Logs a line to stderr (never stdout, which is reserved for results). */
export function log(message: string): void {
  process.stderr.write(message + "\n");
}
