import { describe, expect, it } from "vitest";
import { HoldSeries, alignFrame, alignGrid } from "../../../bridge/record/align.ts";
import { parseRobotProfile } from "../../../bridge/profile.ts";

function series(name: string, stamps: number[], value = (t: number) => [t]): HoldSeries {
  const s = new HoldSeries(name);
  for (const t of stamps) s.push(t, value(t));
  return s;
}

describe("alignFrame", () => {
  it("takes each topic's latest message at or before the frame time", () => {
    const a = series("/a", [0, 0.1, 0.2]);
    const b = series("/b", [0.05, 0.15]);
    const f = alignFrame({ x: a, y: b }, 0.17, 0.1);
    expect(f.kind).toBe("frame");
    if (f.kind === "frame") {
      expect(Array.from(f.values.x!)).toEqual([Math.fround(0.1)]);
      expect(Array.from(f.values.y!)).toEqual([Math.fround(0.15)]);
    }
  });

  it("names a topic whose latest message is too old, or that has none yet", () => {
    const a = series("/a", [0]);
    const b = series("/b", [0.5]);
    const f = alignFrame({ x: a, y: b }, 0.3, 0.1);
    expect(f).toEqual({ kind: "late", late: ["/a", "/b"] });
  });

  it("drops a message stamped before an earlier one and counts it", () => {
    const a = series("/a", [0, 0.2, 0.1]);
    expect(a.length).toBe(2);
    expect(a.droppedOutOfOrder).toBe(1);
  });
});

describe("alignGrid", () => {
  it("splits at a gap and reports it with the late topic, never filling it", () => {
    const stamps = [
      ...Array.from({ length: 10 }, (_, i) => i / 10),
      ...Array.from({ length: 10 }, (_, i) => 2 + i / 10),
    ];
    const a = series("/a", stamps);
    const g = alignGrid({ x: a }, { startS: 0, endS: 2.9, fps: 10, maxAgeS: 0.15 });
    expect(g.segments.map((s) => s.length)).toEqual([11, 10]);
    expect(g.gaps).toHaveLength(1);
    expect(g.gaps[0]!.late).toEqual(["/a"]);
    expect(g.gaps[0]!.frames).toBe(9);
    expect(g.lateFrames["/a"]).toBe(9);
    expect(g.segments[1]!.startS).toBeCloseTo(2, 9);
    expect(g.segments[1]!.frames.x![0]).toBeCloseTo(2, 6);
  });

  it("keeps one segment across a gap shorter than splitGapS", () => {
    const a = series("/a", [0, 0.1, 0.5, 0.6]);
    const g = alignGrid({ x: a }, { startS: 0, endS: 0.6, fps: 10, maxAgeS: 0.05, splitGapS: 0.5 });
    expect(g.segments).toHaveLength(1);
    expect(g.segments[0]!.length).toBe(4);
    expect(g.gaps[0]!.frames).toBe(3);
  });
});

describe("profile recording section", () => {
  const base = {
    name: "r",
    joints: ["a"],
    ros: { version: 2, joint_states: "/joint_states", command: "/cmd" },
    command_interface: "forward",
    control_rate_hz: 30,
    watchdog_timeout_s: 0.5,
  };
  it("applies defaults", () => {
    const p = parseRobotProfile(
      { ...base, recording: { action: { source: "leader", topic: "/leader/joint_states" } } },
      "r.json",
    );
    expect(p.recording).toMatchObject({ fps: 30, action_feature: "action", control_topic: "/actionflow/record" });
  });
  it("names a bad action source", () => {
    expect(() => parseRobotProfile({ ...base, recording: { action: { source: "joystick" } } }, "r.json")).toThrow(
      /r\.json: recording\.action/,
    );
  });
});
