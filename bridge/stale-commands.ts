/**
 * Measures stale commands when both sides of a ROS run live in one process (`sim run --via ros`,
 * tests): a command the robot received that was computed from a joint state older than the
 * robot's latest (re)connect. The controller side notes every command message it hands to roslib
 * with the receive time of its source joint state ({@link StaleCommandMeter.sent}); the robot side
 * looks each received message up ({@link StaleCommandMeter.received}). A message replayed from a
 * queue after a reconnect (what roslib does unless the link gates it) is found with its old source
 * time and counted. Times are seconds on the one scheduler clock both sides share.
 */

/** The positions a command message carries (JointTrajectory points or Float64MultiArray data), as a key. */
function commandKey(msg: unknown): string | undefined {
  if (typeof msg !== "object" || msg === null) return undefined;
  const m = msg as { points?: unknown; data?: unknown };
  if (Array.isArray(m.points))
    return JSON.stringify(
      m.points.map((p: unknown) =>
        typeof p === "object" && p !== null ? (p as { positions?: unknown }).positions : null,
      ),
    );
  if (Array.isArray(m.data)) return JSON.stringify(m.data);
  return undefined;
}

/** See the module comment. */
export class StaleCommandMeter {
  private readonly sources = new Map<string, number>();
  /** Stale commands received so far. */
  stale = 0;
  /** Received messages this meter had not seen sent (not ours, or changed in transit). */
  unknown = 0;
  /** Received messages. */
  total = 0;

  /** Notes a command message handed to the transport and its source state's receive time. */
  sent(msg: unknown, sourceAtS: number): void {
    const key = commandKey(msg);
    if (key === undefined) return;
    // identical positions computed from several states: keep the oldest source (the strict reading)
    const prev = this.sources.get(key);
    if (prev === undefined || sourceAtS < prev) this.sources.set(key, sourceAtS);
  }

  /** Checks a message the robot received, given the robot's latest (re)connect time. */
  received(msg: unknown, lastConnectAtS: number): void {
    this.total++;
    const key = commandKey(msg);
    const src = key === undefined ? undefined : this.sources.get(key);
    if (src === undefined) this.unknown++;
    else if (src < lastConnectAtS) this.stale++;
  }
}
