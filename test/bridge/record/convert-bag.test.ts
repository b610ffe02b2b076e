/**
 * `dataset convert` of ROS 1 bags (written here by Debian's `python3-rosbag`, installed by
 * test/setup/install-rosbag.sh) and of the same recording as an MCAP file (ROS 2, CDR): episodes cut
 * at the control topic's start/stop/discard markers (or at gaps with --split gap), each frame's state,
 * feature and action the messages' values at the frame's time (by header stamp, not log time); a
 * folder mixing both formats; a truncated bag, a missing topic and a wrong message type are named.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { McapWriter, TempBuffer } from "@mcap/core";
import { stringify } from "@foxglove/rosmsg";
import { MessageWriter } from "@foxglove/rosmsg2-serialization";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ros2Definitions } from "../../../bridge/log/run-log.ts";
import { loadRobotProfile, type RobotProfile } from "../../../bridge/profile.ts";
import { convertBags } from "../../../bridge/record/convert.ts";
import { openLeRobot } from "../../../datasets/lerobot/reader.ts";
import { runDatasetCli } from "../../cli/dataset-cli.ts";
import { findPython, runPython } from "../python.ts";

// a fresh clone installs python3-rosbag itself; the bag tests skip only where the script could not
// try (no apt-get, not root and no sudo: it says so and exits 0), and fail when an install failed
const setup = spawnSync("sh", ["test/setup/install-rosbag.sh"], { encoding: "utf8", timeout: 900_000 });
const MODULES = ["rosbag", "std_msgs.msg", "sensor_msgs.msg", "trajectory_msgs.msg"];
const python = findPython(MODULES);
const why =
  python === undefined && setup.status === 0
    ? `skipped: no python3 with ${MODULES.join(", ")} (test/setup/install-rosbag.sh: ${setup.stderr.trim()})`
    : undefined;
if (why) console.warn(`convert-bag: ${why}`);

/**
 * The recording: joint states, a feature topic and trajectory commands at 50 Hz, stamped 10 ms off
 * the 10 Hz frame grid (which starts at the first joint state, at 100 s); the stamped ones (joint
 * states, commands) are received (log time) 15 ms after their stamps, the feature topic
 * (Float32MultiArray has no header, so its log time is its time) at the sample's time. Sample k holds
 * joint j at 0.01 k + j, the feature [k, -k], the command state + 0.5. Markers (log time only, as
 * std_msgs/String has no header) fall between frames.
 */
const T0 = 100_000_000_000n;
const DELAY = 15_000_000n;
const samples: { k: number; ns: bigint }[] = [{ k: -1, ns: T0 }];
for (let k = 0; k < 600; k++) samples.push({ k, ns: T0 + 10_000_000n + BigInt(k) * 20_000_000n });
const MARKERS: [string, number][] = [
  ["start", 100.55],
  ["stop", 102.55],
  ["start", 103.05],
  ["discard", 104.05],
  ["start", 105.05],
  ["stop", 107.05],
  ["stop", 107.5], // no episode open: not used, reported
  ["start", 108.05],
  ["stop", 111.05],
];
/** Grid frames n (t = 100 + n / 10) of the kept episodes: [100.55, 102.55) -> 6..25, ... */
const KEPT = [
  { n0: 6, length: 20 },
  { n0: 51, length: 20 },
  { n0: 81, length: 30 },
];
/** The sample a frame at grid index n takes by header stamp: the last one of `from` stamped at or before it. */
const sampleAt = (n: number, from = samples): number => {
  const t = T0 + BigInt(n) * 100_000_000n;
  let k = from[0]!.k;
  for (const s of from) if (s.ns <= t) k = s.k;
  return k;
};

const WRITE_BAG = `
import json, sys, rosbag, genpy
from std_msgs.msg import String, Float32MultiArray
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
spec = json.load(sys.stdin)
def at(ns):
    return genpy.Time(ns // 1000000000, ns % 1000000000)
with rosbag.Bag(sys.argv[1], "w", compression=sys.argv[2]) as bag:
    for s in spec["samples"]:
        k, stamp, recv = s["k"], at(s["ns"]), at(s["ns"] + spec["delay"])
        v = [0.01 * k + j for j in range(3)]
        js = JointState(name=["j2", "other", "j0", "j1"], position=[v[2], 9.0, v[0], v[1]])
        js.header.stamp = stamp
        bag.write("/joint_states", js, recv)
        bag.write("/obs/extra", Float32MultiArray(data=[float(k), float(-k)]), stamp)
        c = JointTrajectory(joint_names=["j0", "j1", "j2"])
        c.header.stamp = stamp
        c.points = [JointTrajectoryPoint(positions=[x + 0.5 for x in v], time_from_start=genpy.Duration(0, 20000000))]
        bag.write("/arm/command", c, recv)
    for word, ns in spec["markers"]:
        bag.write("/actionflow/record", String(data=word), at(ns))
`;

/** The same recording as a ROS 2 MCAP file (ros2msg schemas, CDR), through @mcap/core's writer. */
async function writeMcap(path: string, recording = { samples, markers: MARKERS }): Promise<void> {
  const buf = new TempBuffer();
  const w = new McapWriter({ writable: buf });
  await w.start({ profile: "ros2", library: "test" });
  const channel = async (topic: string, type: string) => {
    const defs = ros2Definitions(type);
    const schemaId = await w.registerSchema({
      name: type.replace("/", "/msg/"),
      encoding: "ros2msg",
      data: new TextEncoder().encode(stringify(defs)),
    });
    const id = await w.registerChannel({ topic, schemaId, messageEncoding: "cdr", metadata: new Map() });
    return { id, writer: new MessageWriter(defs) };
  };
  const js = await channel("/joint_states", "sensor_msgs/JointState");
  const extra = await channel("/obs/extra", "std_msgs/Float32MultiArray");
  const cmd = await channel("/arm/command", "trajectory_msgs/JointTrajectory");
  const marks = await channel("/actionflow/record", "std_msgs/String");
  let seq = 0;
  const put = async (c: { id: number; writer: MessageWriter }, logNs: bigint, msg: unknown) =>
    w.addMessage({
      channelId: c.id,
      sequence: seq++,
      logTime: logNs,
      publishTime: logNs,
      data: c.writer.writeMessage(msg),
    });
  const time = (ns: bigint) => ({ sec: Number(ns / 1_000_000_000n), nanosec: Number(ns % 1_000_000_000n) });
  const events: [bigint, () => Promise<void>][] = [];
  for (const { k, ns } of recording.samples) {
    const v = [0, 1, 2].map((j) => 0.01 * k + j);
    const header = { stamp: time(ns), frame_id: "" };
    const recv = ns + DELAY;
    events.push([ns, () => put(extra, ns, { layout: { dim: [], data_offset: 0 }, data: [k, -k] })]);
    events.push([
      recv,
      async () => {
        await put(js, recv, {
          header,
          name: ["j2", "other", "j0", "j1"],
          position: [v[2], 9, v[0], v[1]],
          velocity: [],
          effort: [],
        });
        await put(cmd, recv, {
          header,
          joint_names: ["j0", "j1", "j2"],
          points: [
            {
              positions: v.map((x) => x + 0.5),
              velocities: [],
              accelerations: [],
              effort: [],
              time_from_start: { sec: 0, nanosec: 20_000_000 },
            },
          ],
        });
      },
    ]);
  }
  for (const [word, s] of recording.markers) {
    const ns = BigInt(Math.round(s * 1e9));
    events.push([ns, async () => void (await put(marks, ns, { data: word }))]);
  }
  events.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (const [, e] of events) await e();
  await w.end();
  writeFileSync(path, buf.get());
}

/** The recording as a ROS 1 bag, chunks compressed with `compression` (none, bz2, lz4). */
function writeBag(path: string, compression: "none" | "bz2" | "lz4"): void {
  const spec = {
    delay: Number(DELAY),
    samples: samples.map((s) => ({ k: s.k, ns: Number(s.ns) })),
    markers: MARKERS.map(([w, s]) => [w, Math.round(s * 1e9)]),
  };
  runPython(python as string, WRITE_BAG, new TextEncoder().encode(JSON.stringify(spec)), [path, compression]);
}

const dir = mkdtempSync(join(tmpdir(), "actionflow-convert-bag-"));
const PROFILE = join(dir, "arm.json");
const bag = join(dir, "run.bag");
const mcap = join(dir, "run.mcap");
let profile: RobotProfile;
beforeAll(async () => {
  writeFileSync(
    PROFILE,
    JSON.stringify({
      name: "bag-arm",
      joints: ["j0", "j1", "j2"],
      ros: { version: 1, joint_states: "/joint_states", command: "/arm/command" },
      command_interface: "trajectory",
      control_rate_hz: 50,
      watchdog_timeout_s: 0.2,
      features: [{ topic: "/obs/extra", feature: "observation.extra", size: 2, stale_after_s: 0.2 }],
      recording: { fps: 10, action: { source: "command" } },
    }),
  );
  profile = await loadRobotProfile(PROFILE);
  await writeMcap(mcap);
  if (python) writeBag(bag, "none");
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every frame of every episode holds the values of the sample stamped at or before its grid time. */
async function expectEpisodes(out: string, kept: { n0: number; length: number }[], from = samples): Promise<void> {
  const ds = await openLeRobot(out);
  try {
    expect(ds.episodes.map((e) => e.length)).toEqual(kept.map((e) => e.length));
    for (const [i, e] of kept.entries()) {
      const cols = await ds.readEpisode(i, ["observation.state", "observation.extra", "action"]);
      const state = cols["observation.state"] as Float32Array;
      const extra = cols["observation.extra"] as Float32Array;
      const act = cols["action"] as Float32Array;
      for (let f = 0; f < e.length; f++) {
        const k = sampleAt(e.n0 + f, from);
        for (let j = 0; j < 3; j++) {
          expect(state[f * 3 + j]).toBeCloseTo(0.01 * k + j, 5);
          expect(act[f * 3 + j]).toBeCloseTo(0.01 * k + j + 0.5, 5);
        }
        expect([extra[f * 2], extra[f * 2 + 1]]).toEqual([k, -k]);
      }
    }
  } finally {
    ds.close();
  }
}

describe("convertBags: marker-topic episodes from an MCAP file", () => {
  it("keeps the start..stop stretches, drops the discarded one and reports it", async () => {
    const out = join(dir, "M");
    const r = await convertBags(mcap, out, { profile, profileSource: PROFILE });
    expect(r.source).toBe("mcap");
    expect(r.splits).toEqual([{ file: mcap, by: "marker", kept: 3, discarded: 1, openAtEnd: false }]);
    expect(r.episodes).toBe(3);
    expect(r.frames).toBe(70);
    expect(r.discarded.map((d) => d.frames)).toEqual([10]);
    expect(r.rejected["/actionflow/record"]?.count).toBe(1);
    expect(r.rejected["/actionflow/record"]?.first).toMatch(/'stop' .* no episode open/);
    await expectEpisodes(out, KEPT);
  });

  it("--split gap ignores the markers: one episode over every frame", async () => {
    const r = await convertBags(mcap, join(dir, "G"), { profile, profileSource: PROFILE, split: "gap" });
    expect(r.splits[0]?.by).toBe("gap");
    expect(r.messages["/actionflow/record"]).toBeUndefined();
    // grid 100.0 .. 111.99 s at 10 Hz
    expect(r.frames).toBe(120);
    await expectEpisodes(join(dir, "G"), [{ n0: 0, length: 120 }]);
  });

  it("cuts a marked episode at a gap, and keeps one left open at the end of the file", async () => {
    // no sample stamped in (105.3, 106.4) s: frames up to 105.7 s hold the 105.29 s sample (age
    // <= 0.41 s, under the 0.5 s split gap; late against max_age_s 0.15 s from 105.5 s), frames
    // 105.8 .. 106.4 s (n = 58..64) have none fresh enough: the episode 105.05 .. 107.05 s breaks in two
    const cut = samples.filter((s) => s.ns <= 105_300_000_000n || s.ns >= 106_400_000_000n);
    const path = join(dir, "gap.mcap");
    await writeMcap(path, { samples: cut, markers: MARKERS.slice(0, -1) });
    const out = join(dir, "GM");
    const r = await convertBags(path, out, { profile, profileSource: PROFILE });
    expect(r.splits).toEqual([{ file: path, by: "marker", kept: 3, discarded: 1, openAtEnd: true }]);
    expect(r.gaps.map((g) => g.frames)).toEqual([7]);
    expect(r.lateFrames).toEqual({ "/joint_states": 10, "/obs/extra": 10 });
    const kept = [
      { n0: 6, length: 20 },
      { n0: 51, length: 7 },
      { n0: 65, length: 6 },
      { n0: 81, length: 39 },
    ];
    expect(r.episodes).toBe(4);
    await expectEpisodes(out, kept, cut);
  });

  it("refuses markers that miss every frame (stamps and log times on different clocks)", async () => {
    const path = join(dir, "clocks.mcap");
    await writeMcap(path, { samples, markers: MARKERS.map(([w, t]) => [w, t + 1000] as [string, number]) });
    await expect(convertBags(path, join(dir, "CL"), { profile, profileSource: PROFILE })).rejects.toThrow(
      /clocks\.mcap: every marked episode on \/actionflow\/record \(1100\.550\.\.1102\.550, .*\) lies outside the joint states \(100\.000\.\.111\.990 s\)/,
    );
  });
});

describe.skipIf(why !== undefined)("convertBags: ROS 1 bags written by python3-rosbag", () => {
  beforeAll(() => {
    if (python === undefined)
      throw new Error(
        `test/setup/install-rosbag.sh failed (exit ${setup.status ?? setup.signal}): ${setup.stderr || setup.error?.message}`,
      );
  });

  it("converts run.bag through the CLI: marker episodes, values by header stamp", async () => {
    const out = join(dir, "B");
    const r = await runDatasetCli(["convert", bag, out, "--robot", PROFILE, "--json"]);
    expect(r).toMatchObject({ source: "bag", episodes: 3, frames: 70, fps: 10, files: 1 });
    expect(r.messages).toEqual({
      "/joint_states": 601,
      "/obs/extra": 601,
      "/arm/command": 601,
      "/actionflow/record": 9,
    });
    expect((r.discarded as { frames: number }[]).map((d) => d.frames)).toEqual([10]);
    expect(r.lateFrames).toEqual({});
    await expectEpisodes(out, KEPT);
  });

  it("gives the same dataset as the MCAP recording, and a folder of both holds both", async () => {
    const a = await convertBags(bag, join(dir, "B2"), { profile, profileSource: PROFILE, split: "gap" });
    expect(a.frames).toBe(120);
    await expectEpisodes(join(dir, "B2"), [{ n0: 0, length: 120 }]);
    const both = join(dir, "both");
    mkdirSync(both);
    writeFileSync(join(both, "a.bag"), readFileSync(bag));
    writeFileSync(join(both, "b.mcap"), readFileSync(mcap));
    const r = await runDatasetCli([
      "convert",
      both,
      join(dir, "AB"),
      "--robot",
      PROFILE,
      "--split",
      "marker",
      "--json",
    ]);
    expect(r).toMatchObject({ source: "mcap+bag", files: 2, episodes: 6, frames: 140 });
    await expectEpisodes(join(dir, "AB"), [...KEPT, ...KEPT]);
  });

  it("reads bags whose chunks are compressed (rosbag record --bz2, --lz4)", async () => {
    for (const c of ["bz2", "lz4"] as const) {
      const path = join(dir, `${c}.bag`);
      writeBag(path, c);
      const r = await convertBags(path, join(dir, `Z${c}`), { profile, profileSource: PROFILE });
      expect(r).toMatchObject({ source: "bag", episodes: 3, frames: 70 });
      await expectEpisodes(join(dir, `Z${c}`), KEPT);
    }
  });

  it("names a truncated bag, a missing topic (listing the bag's) and a wrong message type", async () => {
    const bytes = readFileSync(bag);
    const cut = join(dir, "cut.bag");
    writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    await expect(convertBags(cut, join(dir, "X1"), { profile, profileSource: PROFILE })).rejects.toThrow(
      /cut\.bag: the ROS 1 bag's index \(at byte \d+\) is not in the file \(\d+ bytes\); .*`rosbag reindex`/,
    );
    writeFileSync(cut, bytes.subarray(0, 100));
    await expect(convertBags(cut, join(dir, "X1"), { profile, profileSource: PROFILE })).rejects.toThrow(
      /cut\.bag: not a readable ROS 1 bag \(.*\); .*`rosbag reindex`/,
    );
    const missing = { ...profile, features: [{ ...profile.features[0]!, topic: "/camera/missing" }] };
    await expect(convertBags(bag, join(dir, "X2"), { profile: missing, profileSource: "p.json" })).rejects.toThrow(
      /run\.bag: no topic \/camera\/missing \(features\.0\.topic, from p\.json\); the file has \/actionflow\/record, \/arm\/command, \/joint_states, \/obs\/extra$/,
    );
    const wrong = { ...profile, features: [{ ...profile.features[0]!, topic: "/joint_states" }] };
    await expect(convertBags(bag, join(dir, "X3"), { profile: wrong, profileSource: "p.json" })).rejects.toThrow(
      /topic \/joint_states \(features\.0\.topic, from p\.json\) carries sensor_msgs\/JointState, expected std_msgs\/Float32MultiArray/,
    );
    await expect(
      convertBags(bag, join(dir, "X4"), {
        profile: { ...profile, recording: { ...profile.recording!, control_topic: "/no/markers" } },
        profileSource: "p.json",
        split: "marker",
      }),
    ).rejects.toThrow(/no topic \/no\/markers \(recording\.control_topic, --split marker/);
  });
});
