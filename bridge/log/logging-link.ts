/**
 * A {@link RobotLink} decorator that writes what passes through it into a {@link RunLog}: each joint
 * state and observation feature when the loop reads it (once per sample, by its receive time), each
 * command the inner link sent (a dropped one as a warning event), a person's interventions and their
 * commands, diagnostics (clamps and refused inputs counted in them since the previous ones also as
 * warning events), and the robot's e-stop request. With
 * {@link attachRunLog}, loop events and chunk reports go to the same log.
 */
import type { ChunkReport, LoopEvent } from "../loop.ts";
import type {
  FeatureSample,
  InputRejections,
  JointStateSample,
  LoopDiagnostics,
  RobotCommand,
  RobotLink,
  SendResult,
} from "../robot-link.ts";
import type { RunLog } from "./run-log.ts";

/** The logging decorator; see the module comment. */
export class LoggingLink implements RobotLink {
  private lastStateAtS?: number;
  private person = false;
  private readonly lastFeatureAtS = new Map<string, number>();
  private estopLogged = false;
  private readonly lastCounts = new Map<string, number>();

  constructor(
    private readonly inner: RobotLink,
    private readonly log: RunLog,
  ) {}

  get connected(): boolean {
    return this.inner.connected;
  }

  get epoch(): number {
    return this.inner.epoch;
  }

  get rejections(): InputRejections | undefined {
    return this.inner.rejections;
  }

  get intervention(): boolean | undefined {
    return this.inner.intervention;
  }

  takePrompt(): string | undefined {
    const p = this.inner.takePrompt?.();
    if (p !== undefined) this.log.event("info", "prompt", `prompt received: ${JSON.stringify(p)}`);
    return p;
  }

  get estopRequest(): string | undefined {
    const r = this.inner.estopRequest;
    if (r !== undefined && !this.estopLogged) {
      this.estopLogged = true;
      this.log.event("error", "e-stop", `e-stop requested by the robot: ${r}`);
    }
    return r;
  }

  jointState(): JointStateSample | undefined {
    const s = this.inner.jointState();
    if (s && s.atS !== this.lastStateAtS) {
      this.lastStateAtS = s.atS;
      this.log.jointState(s);
    }
    const person = this.inner.intervention === true;
    if (person !== this.person) {
      this.person = person;
      this.log.intervention(person);
    }
    // what a person sent during an intervention goes on the command channel, as they sent it
    for (const c of this.inner.takeHumanCommands?.() ?? [])
      this.log.command(
        { kind: "trajectory", points: c.points, dtS: c.dtS, epoch: this.inner.epoch, sourceAtS: c.atS },
        c.atS,
      );
    // the loop reads features only when it asks for a chunk; the log wants every sample
    for (const name of this.log.featureNames) {
      const f = this.inner.feature(name);
      if (f) this.logFeature(name, f);
    }
    return s;
  }

  feature(name: string): FeatureSample | undefined {
    const f = this.inner.feature(name);
    if (f) this.logFeature(name, f);
    return f;
  }

  private logFeature(name: string, f: FeatureSample): void {
    if (f.atS === this.lastFeatureAtS.get(name)) return;
    this.lastFeatureAtS.set(name, f.atS);
    this.log.feature(name, f.atS, f.values);
  }

  send(cmd: RobotCommand): SendResult {
    const r = this.inner.send(cmd);
    if (r === "sent") this.log.command(cmd);
    else this.log.event("warning", "command dropped", `${r} (epoch ${cmd.epoch}, link epoch ${this.inner.epoch})`);
    return r;
  }

  diagnostics(d: LoopDiagnostics): void {
    this.inner.diagnostics(d);
    this.log.diagnostics(d);
    // safety counters that grew since the last diagnostics become events: clamps, refused inputs
    for (const [key, v] of Object.entries(d.values)) {
      if (typeof v !== "number" || !(key === "clamps" || key.startsWith("rejected "))) continue;
      const before = this.lastCounts.get(key) ?? 0;
      if (v > before) this.log.event("warning", key, `${key}: ${v - before} since the last diagnostics (${v} in all)`);
      this.lastCounts.set(key, v);
    }
  }
}

/** What {@link attachRunLog} returns: give all three to the ControlLoop. */
export interface AttachedRunLog {
  link: RobotLink;
  onEvent: (e: LoopEvent) => void;
  onChunk: (c: ChunkReport) => void;
}

/**
 * Wraps `link` in a {@link LoggingLink} and tees `onEvent` (loop events also go to the log as
 * `foxglove.Log` lines); `onChunk` logs every chunk the policy returned (`actionDim` values per step).
 */
export function attachRunLog(
  log: RunLog,
  link: RobotLink,
  opts: { actionDim: number; onEvent?: (e: LoopEvent) => void; onChunk?: (c: ChunkReport) => void },
): AttachedRunLog {
  return {
    link: new LoggingLink(link, log),
    onEvent: (e) => {
      log.loopEvent(e);
      opts.onEvent?.(e);
    },
    onChunk: (c) => {
      log.chunk(c, opts.actionDim);
      opts.onChunk?.(c);
    },
  };
}
