/**
 * Aligning ROS messages onto a dataset's fixed frame grid, shared by live recording and by the
 * conversion of bags and run logs. Every topic is a {@link Series} of stamped values; a frame at
 * time t takes from each series its value at t (the latest message stamped at or before t, or a
 * trajectory read at t), provided that message is at most `maxAgeS` old. A series with nothing fresh
 * enough is *late* at that frame: the frame is not written and the lateness is counted, never
 * filled in.
 *
 * Times are seconds on one clock (header stamps, or receive times where a message has no stamp).
 */

/** A series' value at a time, with the age of the message it came from. */
export interface SeriesValue {
  values: Float32Array;
  /** Seconds between the message's stamp and the requested time (>= 0). */
  ageS: number;
}

/** Something that has a value at a time: a topic's messages. */
export interface Series {
  /** The topic (or a name) reported when the series is late. */
  readonly name: string;
  /** The value at `tS`, or undefined when no message is stamped at or before it. */
  at(tS: number): SeriesValue | undefined;
}

/**
 * A topic whose value is its latest message at or before the time (zero-order hold, as LeRobot's
 * recorder reads the newest observation each tick). Messages must be pushed in stamp order; an
 * out-of-order message is counted and dropped.
 */
export class HoldSeries implements Series {
  readonly name: string;
  private readonly stamps: number[] = [];
  private readonly values: Float32Array[] = [];
  private outOfOrder = 0;

  constructor(name: string) {
    this.name = name;
  }

  /** Adds a message stamped `stampS` (seconds). */
  push(stampS: number, values: ArrayLike<number>): void {
    const last = this.stamps.length > 0 ? (this.stamps[this.stamps.length - 1] as number) : -Infinity;
    if (stampS < last) {
      this.outOfOrder++;
      return;
    }
    this.stamps.push(stampS);
    this.values.push(Float32Array.from(values));
  }

  /** Messages held. */
  get length(): number {
    return this.stamps.length;
  }

  /** Messages dropped because they were stamped before an earlier one. */
  get droppedOutOfOrder(): number {
    return this.outOfOrder;
  }

  /** Stamp of the first and last message, or undefined when empty. */
  span(): { fromS: number; toS: number } | undefined {
    if (this.stamps.length === 0) return undefined;
    return { fromS: this.stamps[0] as number, toS: this.stamps[this.stamps.length - 1] as number };
  }

  /** All stamps, in order (seconds). */
  stampsS(): readonly number[] {
    return this.stamps;
  }

  at(tS: number): SeriesValue | undefined {
    // Binary search for the last stamp <= tS.
    let lo = 0;
    let hi = this.stamps.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if ((this.stamps[mid] as number) <= tS) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (found < 0) return undefined;
    return { values: this.values[found] as Float32Array, ageS: tS - (this.stamps[found] as number) };
  }

  /** Forgets messages stamped before `tS`, keeping the latest one before it (live recording). */
  dropBefore(tS: number): void {
    let n = 0;
    while (n + 1 < this.stamps.length && (this.stamps[n + 1] as number) <= tS) n++;
    if (n > 0) {
      this.stamps.splice(0, n);
      this.values.splice(0, n);
    }
  }
}

/** One frame's values by feature, or the names of the series that were late. */
export type AlignedFrame = { kind: "frame"; values: Record<string, Float32Array> } | { kind: "late"; late: string[] };

/** Reads every series at `tS`; late when any has no message at most `maxAgeS` old. */
export function alignFrame(series: Record<string, Series>, tS: number, maxAgeS: number): AlignedFrame {
  const values: Record<string, Float32Array> = {};
  const late: string[] = [];
  for (const [feature, s] of Object.entries(series)) {
    const v = s.at(tS);
    if (v === undefined || v.ageS > maxAgeS) late.push(s.name);
    else values[feature] = v.values;
  }
  return late.length > 0 ? { kind: "late", late } : { kind: "frame", values };
}

/** A run of consecutive grid frames that could not be written. */
export interface AlignGap {
  /** Time of the first and last missing frame, seconds on the input clock. */
  fromS: number;
  toS: number;
  frames: number;
  /** The late series, by name. */
  late: string[];
}

/** Frames on the grid from {@link alignGrid}: contiguous segments split at gaps. */
export interface AlignedSegment {
  /** Time of the first frame, seconds on the input clock. */
  startS: number;
  length: number;
  /** Flat `[length, ...]` per feature. */
  frames: Record<string, Float32Array>;
}

/** What {@link alignGrid} produced. */
export interface AlignedGrid {
  segments: AlignedSegment[];
  gaps: AlignGap[];
  /** Frames not written because a series was late, by series name. */
  lateFrames: Record<string, number>;
}

/**
 * Samples every series on the grid `startS + i / fps` for `startS <= t <= endS`. Frames where a series
 * is late are left out; a run of missing frames longer than `splitGapS` seconds (default: any
 * missing frame) splits the output into segments, a shorter one is reported as a gap and the
 * segment goes on (its frames are still not invented: the segment simply lacks them, so callers
 * that need an unbroken grid should keep the default).
 */
export function alignGrid(
  series: Record<string, Series>,
  opts: { startS: number; endS: number; fps: number; maxAgeS: number; splitGapS?: number },
): AlignedGrid {
  const { startS, endS, fps, maxAgeS } = opts;
  const splitGapS = opts.splitGapS ?? 0;
  const names = Object.keys(series);
  const segments: AlignedSegment[] = [];
  const gaps: AlignGap[] = [];
  const lateFrames: Record<string, number> = {};
  let current: { startS: number; rows: Record<string, Float32Array>[] } | undefined;
  let gap: AlignGap | undefined;
  const closeSegment = (): void => {
    if (current === undefined || current.rows.length === 0) {
      current = undefined;
      return;
    }
    const frames: Record<string, Float32Array> = {};
    for (const n of names) {
      const width = (current.rows[0]?.[n] as Float32Array).length;
      const flat = new Float32Array(current.rows.length * width);
      current.rows.forEach((r, i) => flat.set(r[n] as Float32Array, i * width));
      frames[n] = flat;
    }
    segments.push({ startS: current.startS, length: current.rows.length, frames });
    current = undefined;
  };
  const count = Math.floor((endS - startS) * fps + 1e-9) + 1;
  for (let i = 0; i < count; i++) {
    const t = startS + i / fps;
    const f = alignFrame(series, t, maxAgeS);
    if (f.kind === "late") {
      for (const n of f.late) lateFrames[n] = (lateFrames[n] ?? 0) + 1;
      if (gap === undefined) gap = { fromS: t, toS: t, frames: 0, late: [] };
      gap.toS = t;
      gap.frames++;
      for (const n of f.late) if (!gap.late.includes(n)) gap.late.push(n);
      continue;
    }
    if (gap !== undefined) {
      gaps.push(gap);
      if (gap.frames / fps > splitGapS) closeSegment();
      gap = undefined;
    }
    if (current === undefined) current = { startS: t, rows: [] };
    current.rows.push(f.values);
  }
  if (gap !== undefined) gaps.push(gap);
  closeSegment();
  return { segments, gaps, lateFrames };
}
