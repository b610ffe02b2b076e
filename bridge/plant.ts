/**
 * A simulated robot as the bridge sees it (a {@link Plant}), and the position reference a
 * ros2_control controller would track for the commands it receives ({@link TrajectoryFollower}).
 * Shared by the simulated robot's ROS node and the in-process {@link PlantLink}, so both execute
 * commands identically.
 */

/** A robot (a simulator) stepped at a fixed control period. */
export interface Plant {
  /** Control period, seconds. */
  readonly dtS: number;
  /** Measured joint positions `[joints]`, the profile's joint order. */
  positions(): ArrayLike<number>;
  /** Observation features by policy key (those the profile maps to topics). */
  features(): Record<string, ArrayLike<number>>;
  /** Camera images by feature (`observation.images.<name>`), uint8 RGB `[height, width, 3]`; absent: none. */
  images?(): Record<string, { width: number; height: number; rgb: Uint8Array }>;
  /** Applies position targets `[joints]` for one control period. */
  step(targets: ArrayLike<number>): void;
}

/**
 * The reference a controller tracks: a forward controller jumps to each command; a
 * joint_trajectory_controller interpolates positions linearly from its current reference at receipt
 * through each point at its time from start, then holds the last point. Times in seconds on the
 * caller's monotonic clock.
 */
export class TrajectoryFollower {
  private reference: Float64Array;
  private traj?: { t0: number; start: Float64Array; times: number[]; points: Float64Array[] };

  constructor(initial: ArrayLike<number>) {
    this.reference = Float64Array.from(initial);
  }

  /** Forward controller: the target becomes `q` at once. */
  setPositions(q: ArrayLike<number>): void {
    this.traj = undefined;
    this.reference = Float64Array.from(q);
  }

  /**
   * Trajectory controller: replaces the current trajectory at `nowS` with `points[k]` reached at
   * `nowS + times[k]` (strictly increasing seconds), starting from the current reference.
   */
  setTrajectory(nowS: number, points: readonly ArrayLike<number>[], times: readonly number[]): void {
    const start = this.referenceAt(nowS);
    this.traj = { t0: nowS, start, times: [...times], points: points.map((p) => Float64Array.from(p)) };
  }

  /** The reference `[joints]` at `nowS` (and remembers it as the current one). */
  referenceAt(nowS: number): Float64Array {
    const tr = this.traj;
    if (tr) {
      const t = nowS - tr.t0;
      let prevT = 0;
      let prev = tr.start;
      let out: Float64Array | undefined;
      for (let i = 0; i < tr.points.length && !out; i++) {
        const ti = tr.times[i] as number;
        const pi = tr.points[i] as Float64Array;
        if (t < ti) {
          const f = ti > prevT ? Math.max(0, (t - prevT) / (ti - prevT)) : 1;
          out = prev.map((x, j) => x + f * ((pi[j] as number) - x));
        }
        prevT = ti;
        prev = pi;
      }
      this.reference = out ?? Float64Array.from(prev);
    }
    return Float64Array.from(this.reference);
  }
}
