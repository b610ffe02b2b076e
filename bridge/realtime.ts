/**
 * Real-time scheduling of the control loop's thread (`--realtime-priority`), as ros2_control's
 * controller manager does: SCHED_FIFO at a given priority for the thread that runs the ticks (the
 * main thread, whose thread id is the process id), set with util-linux's `chrt`. Only that thread
 * changes: the inference worker, onnxruntime's and V8's threads keep the normal policy (threads
 * started while it is set inherit it, so it is set when the loop starts and undone when it stops).
 *
 * Why: on a machine whose other cores are busy, a normal thread waking for its deadline waits for
 * the scheduler's next slice. Measured on the 2-core project machine with a training run beside it,
 * a bare 50 Hz timer was late by p99 5.6 ms at the normal policy and 0.2 ms at SCHED_FIFO 50.
 * It needs the right (root, CAP_SYS_NICE, or an `rtprio` limit: `ulimit -r`); without it the
 * loop runs at the normal policy and the reason is reported.
 */
import { spawnSync } from "node:child_process";

/** What {@link setLoopThreadRealtime} did. */
export interface RealtimeResult {
  /** The SCHED_FIFO priority asked for (1-99). */
  priority: number;
  /** True when the thread now runs at that priority. */
  applied: boolean;
  /** Why it was not applied (chrt missing, no permission). */
  error?: string;
}

/** Runs `chrt args`, returning an error message or undefined on success. */
function chrt(args: string[]): string | undefined {
  const r = spawnSync("chrt", args, { encoding: "utf8" });
  if (r.error)
    return `chrt: ${(r.error as NodeJS.ErrnoException).code === "ENOENT" ? "not found (util-linux)" : r.error.message}`;
  if (r.status !== 0) return `chrt ${args.join(" ")}: ${(r.stderr || r.stdout || `exit ${r.status}`).trim()}`;
  return undefined;
}

/**
 * Puts the calling process's main thread on SCHED_FIFO at `priority` (an integer 1-99); returns
 * what happened (never throws for a missing right: the loop then runs as before, reported).
 * Throws a RangeError for a priority outside 1-99.
 */
export function setLoopThreadRealtime(priority: number): RealtimeResult {
  if (!Number.isInteger(priority) || priority < 1 || priority > 99)
    throw new RangeError(`real-time priority must be an integer 1-99, got ${priority}`);
  if (process.platform !== "linux")
    return { priority, applied: false, error: `SCHED_FIFO is set on Linux only (this is ${process.platform})` };
  const error = chrt(["--fifo", "--pid", String(priority), String(process.pid)]);
  return error === undefined ? { priority, applied: true } : { priority, applied: false, error };
}

/** Puts the main thread back on the normal policy (SCHED_OTHER); returns an error message or undefined. */
export function clearLoopThreadRealtime(): string | undefined {
  return chrt(["--other", "--pid", "0", String(process.pid)]);
}
