import { describe, expect, it } from "vitest";
import { clearLoopThreadRealtime, setLoopThreadRealtime } from "../../bridge/realtime.ts";
import { realtimePriority } from "../../cli/args.ts";

describe("real-time priority of the loop's thread", () => {
  it("refuses a priority outside 1-99, naming it", () => {
    expect(() => setLoopThreadRealtime(0)).toThrow(/1-99, got 0/);
    expect(() => setLoopThreadRealtime(100)).toThrow(/1-99, got 100/);
    expect(() => setLoopThreadRealtime(2.5)).toThrow(/1-99, got 2.5/);
    expect(() => realtimePriority("120", "--realtime-priority")).toThrow(/--realtime-priority.*1-99.*120/);
    expect(realtimePriority("50", "--realtime-priority")).toBe(50);
  });

  it("sets SCHED_FIFO and back, or says why it could not (never throws for a missing right)", () => {
    const r = setLoopThreadRealtime(10);
    expect(r.priority).toBe(10);
    if (r.applied) {
      expect(r.error).toBeUndefined();
      expect(clearLoopThreadRealtime()).toBeUndefined();
    } else {
      expect(r.error).toMatch(/chrt|Linux/);
    }
  });
});
