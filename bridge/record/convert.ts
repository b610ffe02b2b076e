/**
 * ROS bags and run logs to LeRobot v3.0: ROS 2 bags and run logs (MCAP, CDR) and ROS 1 bags (`.bag`),
 * each read through its {@link MessageSource}. The profile maps topics to features (joint states ->
 * its state feature, feature topics -> theirs, the action from its `recording` section), every topic
 * is aligned on the frame grid by header stamps (log time where a message has none or a zero stamp;
 * see `align.ts`), and the grid is cut into episodes:
 *
 * - at the markers on the recording section's `control_topic` (`std_msgs/String`, as `record`
 *   takes them): `start` begins an episode, `stop` (or `keep`, `quit`) ends and keeps it, `discard`
 *   ends and drops it (reported); an episode still open at the end of a file is kept and counted;
 * - else where a topic is silent for longer than `splitGapS` (also inside a marked episode).
 *
 * A topic late by less than `splitGapS` keeps its last value on those frames, and they are counted
 * per topic in `lateFrames` (against the recording section's max_age_s), never hidden. With
 * `interventionsOnly`, only the stretches where the profile's intervention topic (`std_msgs/Bool`)
 * was true become episodes (a person's corrections, DAgger-style), each from the person's first
 * command on (with a `command` action).
 *
 * The action of a frame: `leader` — the leader arm's joint state at the frame's time; `command` —
 * the first point of the latest command (JointTrajectory or Float64MultiArray) at the frame's time,
 * the target the controller was driving to; `next_state` — the next frame's joint state (the last
 * frame of an episode is dropped).
 */
import { LeRobotWriter } from "../../datasets/lerobot/writer.ts";
import { recordingLayout } from "./layout.ts";
import type { RobotProfile } from "../profile.ts";
import {
  MSG,
  parseBool,
  parseFloat32MultiArray,
  parseJointCommand,
  parseJointState,
  rosSeconds,
} from "../ros/protocol.ts";
import { HoldSeries, alignGrid, type Series } from "./align.ts";
import { openBagSource } from "./bag-source.ts";
import { openMcapSource } from "./convert-mcap.ts";
import type { MessageSource } from "./source.ts";

/** How a file is cut into episodes: at its markers when it has any (`auto`), only at markers, only at gaps. */
export type SplitMode = "auto" | "marker" | "gap";

/** Options of {@link convertBags}. */
export interface ConvertBagsOptions {
  profile: RobotProfile;
  /** Where the profile came from (for error messages). */
  profileSource: string;
  /** Frame rate, Hz; default the recording section's fps, else the profile's control rate. */
  fps?: number;
  /** A run of missing frames longer than this (seconds) starts a new episode; default 0.5. */
  splitGapS?: number;
  /** Default `auto`: a file with start/stop markers on the control topic is cut at them, else at gaps. */
  split?: SplitMode;
  /** Episodes only where the intervention topic was true. */
  interventionsOnly?: boolean;
  /** The episodes' task string; default the recording section's task, else "converted from <file>". */
  task?: string;
}

/** What {@link convertBags} wrote. */
export interface ConvertBagsResult {
  /** The containers read: `mcap`, `bag` (ROS 1), or `mcap+bag` for a folder of both. */
  source: "mcap" | "bag" | "mcap+bag";
  out: string;
  episodes: number;
  frames: number;
  fps: number;
  features: string[];
  /** Messages read per topic the profile maps. */
  messages: Record<string, number>;
  /** Stretches without frames (a topic silent for longer than splitGapS: the episode breaks), seconds from the first message. */
  gaps: { file: string; fromS: number; toS: number; frames: number; late: string[] }[];
  /** Files read. */
  files: number;
  /** How each file was cut: at markers (episodes marked kept and discarded, and whether one was still open at the end) or at gaps. */
  splits: { file: string; by: "marker" | "gap"; kept: number; discarded: number; openAtEnd: boolean }[];
  /** Episodes a `discard` marker dropped: seconds from the file's first message, and frames not written. */
  discarded: { file: string; fromS: number; toS: number; frames: number }[];
  /** Frames where a topic's latest message was older than max_age_s (held over, at most splitGapS), by topic. */
  lateFrames: Record<string, number>;
  /** Messages that did not parse or were not used (a marker out of place), by topic (the first reason each). */
  rejected: Record<string, { count: number; first: string }>;
  /** Episodes shorter than 2 frames, not written. */
  droppedShort: number;
}

/** Opens a recording by its extension: `.mcap` or `.bag`. */
export function openRecording(path: string): Promise<MessageSource> {
  const lower = path.toLowerCase();
  if (lower.endsWith(".mcap")) return openMcapSource(path);
  if (lower.endsWith(".bag")) return openBagSource(path);
  throw new Error(`${path}: expected a .mcap (ROS 2 bag or run log) or .bag (ROS 1 bag) file`);
}

/** The header stamp of a decoded message in seconds (ROS 2 or ROS 1 layout), or undefined when absent or zero. */
function stampOf(msg: Record<string, unknown>): number | undefined {
  const st = (msg.header as { stamp?: unknown } | undefined)?.stamp;
  const s = rosSeconds(2, st) ?? rosSeconds(1, st);
  return s !== undefined && s > 0 ? s : undefined;
}

/** A run of frames of one aligned segment: frames `offset .. offset + length - 1` of `frames`. */
type Episode = { startS: number; length: number; frames: Record<string, Float32Array>; offset: number };

/** A marked stretch of a file: [fromS, toS) on the message clock. */
type Marked = { fromS: number; toS: number; keep: boolean };

const MARKERS = ["start", "stop", "keep", "quit", "discard"] as const;

/** Reads one file and cuts its aligned frames into episodes. */
async function episodesOf(input: string, o: ConvertBagsOptions) {
  const src = await openRecording(input);
  try {
    return await cutEpisodes(src, o);
  } finally {
    await src.close();
  }
}

/** Aligns the messages of `src` on the frame grid and cuts the frames into episodes. */
async function cutEpisodes(src: MessageSource, o: ConvertBagsOptions) {
  const input = src.file;
  const p = o.profile;
  const rec = p.recording;
  const action = rec?.action ?? { source: "command" as const };
  const fps = o.fps ?? rec?.fps ?? p.control_rate_hz;
  const maxAgeS = rec?.max_age_s ?? 1.5 / fps;
  const splitGapS = o.splitGapS ?? 0.5;
  const split = o.split ?? "auto";
  const controlTopic = rec?.control_topic ?? "/actionflow/record";
  const listing = (): string => [...src.topics.keys()].sort().join(", ") || "no topics";
  const need = (topic: string, what: string, type: string): void => {
    const has = src.topics.get(topic);
    if (has === undefined)
      throw new Error(`${input}: no topic ${topic} (${what}, from ${o.profileSource}); the file has ${listing()}`);
    if (has !== type)
      throw new Error(
        `${input}: topic ${topic} (${what}, from ${o.profileSource}) carries ${has || "messages without a schema"}, expected ${type}`,
      );
  };
  need(p.ros.joint_states, "ros.joint_states", MSG.jointState);
  for (const [i, f] of p.features.entries()) need(f.topic, `features.${i}.topic`, MSG.float32MultiArray);
  if (action.source === "leader") need(action.topic, "recording.action.topic", MSG.jointState);
  if (action.source === "command")
    need(
      p.ros.command,
      "ros.command",
      p.command_interface === "trajectory" ? MSG.jointTrajectory : MSG.float64MultiArray,
    );
  if (o.interventionsOnly) {
    if (p.ros.intervention === undefined)
      throw new Error(
        `--interventions-only: ${o.profileSource} has no ros.intervention topic (or pass --intervention-topic)`,
      );
    need(p.ros.intervention, "ros.intervention", MSG.bool);
  }
  if (split === "marker") need(controlTopic, "recording.control_topic, --split marker", "std_msgs/String");
  else if (split === "auto" && src.topics.has(controlTopic))
    need(controlTopic, "recording.control_topic", "std_msgs/String");
  const readMarkers = split !== "gap" && src.topics.has(controlTopic);

  const state = new HoldSeries(p.ros.joint_states);
  const feats = new Map(p.features.map((f) => [f.feature, new HoldSeries(f.topic)]));
  const leader = action.source === "leader" ? new HoldSeries(action.topic) : undefined;
  const command = action.source === "command" ? new HoldSeries(p.ros.command) : undefined;
  const person = o.interventionsOnly ? new HoldSeries(p.ros.intervention as string) : undefined;
  const counts: Record<string, number> = {};
  const rejected: Record<string, { count: number; first: string }> = {};
  const reject = (topic: string, error: string): void => {
    const r = (rejected[topic] ??= { count: 0, first: error });
    r.count++;
  };
  const featureOf = new Map(p.features.map((f) => [f.topic, f]));
  const wanted = new Set<string>([p.ros.joint_states, ...featureOf.keys()]);
  for (const s of [leader, command, person]) if (s) wanted.add(s.name);
  if (readMarkers) wanted.add(controlTopic);
  const marked: Marked[] = [];
  let open: number | undefined;
  let t0: number | undefined;
  for await (const m of src.messages(wanted)) {
    const topic = m.topic;
    counts[topic] = (counts[topic] ?? 0) + 1;
    let msg: Record<string, unknown>;
    try {
      msg = m.decode();
    } catch (err) {
      reject(topic, (err as Error).message);
      continue;
    }
    const t = stampOf(msg) ?? m.logTimeS;
    t0 ??= t;
    if (topic === p.ros.joint_states || topic === leader?.name) {
      const r = parseJointState(msg, p.joints);
      if (r.kind === "error") reject(topic, r.error);
      else (topic === leader?.name ? leader : state).push(t, r.value);
    }
    const f = featureOf.get(topic);
    if (f) {
      const r = parseFloat32MultiArray(msg, f.size, `${topic} (${f.feature})`);
      if (r.kind === "error") reject(topic, r.error);
      else feats.get(f.feature)?.push(t, r.value);
    }
    if (topic === command?.name) {
      const r = parseJointCommand(msg, p.joints, p.command_interface, 1 / p.control_rate_hz);
      if (r.kind === "error") reject(topic, r.error);
      else command.push(t, r.value.points[0] as Float64Array);
    }
    if (topic === person?.name) {
      const r = parseBool(msg, topic);
      if (r.kind === "error") reject(topic, r.error);
      else person.push(t, [r.value ? 1 : 0]);
    }
    if (readMarkers && topic === controlTopic) {
      const word = typeof msg.data === "string" ? msg.data.trim() : undefined;
      if (word === undefined || !(MARKERS as readonly string[]).includes(word)) {
        reject(topic, `${topic}.data: expected ${MARKERS.join(", ")}, got ${JSON.stringify(msg.data)}`);
      } else if (word === "start") {
        if (open === undefined) open = t;
        else reject(topic, `'start' at ${(t - (t0 ?? t)).toFixed(3)} s while an episode is open (ignored)`);
      } else if (open === undefined) {
        reject(topic, `'${word}' at ${(t - (t0 ?? t)).toFixed(3)} s with no episode open (ignored)`);
      } else {
        marked.push({ fromS: open, toS: t, keep: word !== "discard" });
        open = undefined;
      }
    }
  }
  const span = state.span();
  if (!span) throw new Error(`${input}: no valid joint state on ${p.ros.joint_states}`);
  const byMarker = split === "marker" || (split === "auto" && (marked.length > 0 || open !== undefined));
  if (split === "marker" && !byMarker)
    throw new Error(
      `${input}: --split marker, but no 'start' marker on ${controlTopic} (${counts[controlTopic] ?? 0} messages)`,
    );
  const openAtEnd = open !== undefined;
  if (open !== undefined) marked.push({ fromS: open, toS: Infinity, keep: true });
  if (byMarker && marked.every((m) => m.toS < span.fromS || m.fromS > span.toS)) {
    const f = (t: number): string => (Number.isFinite(t) ? t.toFixed(3) : "the end");
    throw new Error(
      `${input}: every marked episode on ${controlTopic} (${marked.map((m) => `${f(m.fromS)}..${f(m.toS)}`).join(", ")} s) lies outside the joint states (${f(span.fromS)}..${f(span.toS)} s): are the header stamps and the markers' log times on different clocks? (--split gap ignores the markers)`,
    );
  }

  const series: Record<string, Series> = { [p.state_feature]: state };
  for (const [k, s] of feats) series[k] = s;
  const actionKey = rec?.action_feature ?? "action";
  if (leader) series[actionKey] = leader;
  // a command holds until the next one replaces it, however long (a chunk's trajectory, a slow teleop)
  if (command)
    series[actionKey] = {
      name: command.name,
      at: (t) => {
        const v = command.at(t);
        return v && { values: v.values, ageS: 0 };
      },
    };
  // episodes break where a topic is silent for longer than splitGapS; a topic late by less holds its
  // last value there, and those frames are counted (lateFrames, from the nominal max_age_s)
  const grid = alignGrid(series, { startS: span.fromS, endS: span.toS, fps, maxAgeS: Math.max(maxAgeS, splitGapS) });
  const nominal = alignGrid(series, { startS: span.fromS, endS: span.toS, fps, maxAgeS });
  const rel = (t: number): number => t - (t0 ?? 0);

  // episodes: the segments, or their frames inside the marked stretches; then cut to the
  // intervention stretches when asked
  let episodes: Episode[] = grid.segments.map((s) => ({ ...s, offset: 0 }));
  const discarded: { file: string; fromS: number; toS: number; frames: number }[] = [];
  if (byMarker) {
    const inside: Episode[] = [];
    for (const mk of marked) {
      let frames = 0;
      for (const s of grid.segments) {
        // frames at s.startS + i / fps with fromS <= t < toS
        const i0 = Math.max(0, Math.ceil((mk.fromS - s.startS) * fps - 1e-6));
        const i1 = Math.min(s.length, Math.ceil((mk.toS - s.startS) * fps - 1e-6));
        if (i1 <= i0) continue;
        frames += i1 - i0;
        if (mk.keep) inside.push({ startS: s.startS + i0 / fps, length: i1 - i0, frames: s.frames, offset: i0 });
      }
      if (!mk.keep) discarded.push({ file: input, fromS: rel(mk.fromS), toS: rel(mk.toS), frames });
    }
    episodes = inside;
  }
  if (person) {
    const cut: Episode[] = [];
    for (const s of episodes) {
      let from = -1;
      for (let i = 0; i <= s.length; i++) {
        const t = s.startS + i / fps;
        const mark = i < s.length ? person.at(t) : undefined;
        let on = (mark?.values[0] ?? 0) > 0.5;
        // the person's stretch starts at their first command: the one before, and the loop's stop
        // message sent within a control period of the takeover, are the policy's
        if (on && from < 0 && command) {
          const c = command.at(t);
          on = c !== undefined && (mark as { ageS: number }).ageS - c.ageS > 1 / p.control_rate_hz;
        }
        if (on && from < 0) from = i;
        if (!on && from >= 0) {
          cut.push({ startS: s.startS + from / fps, length: i - from, frames: s.frames, offset: s.offset + from });
          from = -1;
        }
      }
    }
    episodes = cut;
  }
  return {
    format: src.format,
    episodes,
    counts,
    rejected,
    lateFrames: nominal.lateFrames,
    gaps: grid.gaps.map((g) => ({ file: input, fromS: rel(g.fromS), toS: rel(g.toS), frames: g.frames, late: g.late })),
    split: {
      file: input,
      by: byMarker ? ("marker" as const) : ("gap" as const),
      kept: marked.filter((m) => m.keep).length,
      discarded: marked.filter((m) => !m.keep).length,
      openAtEnd,
    },
    discarded,
  };
}

/**
 * Converts recordings (one file, or several in the order given: `.mcap` and `.bag` alike) to one
 * LeRobot v3.0 dataset at `out`.
 */
export async function convertBags(
  input: string | readonly string[],
  out: string,
  o: ConvertBagsOptions,
): Promise<ConvertBagsResult> {
  const files = typeof input === "string" ? [input] : [...input];
  if (files.length === 0) throw new Error("convert: no .mcap or .bag file given");
  const p = o.profile;
  const rec = p.recording;
  const action = rec?.action ?? { source: "command" as const };
  const fps = o.fps ?? rec?.fps ?? p.control_rate_hz;
  const actionKey = rec?.action_feature ?? "action";
  const parts = [];
  for (const f of files) parts.push(await episodesOf(f, o));
  const episodes = parts.flatMap((x) => x.episodes);
  const counts: Record<string, number> = {};
  const lateFrames: Record<string, number> = {};
  const rejected: Record<string, { count: number; first: string }> = {};
  for (const x of parts) {
    for (const [k, v] of Object.entries(x.counts)) counts[k] = (counts[k] ?? 0) + v;
    for (const [k, v] of Object.entries(x.lateFrames)) lateFrames[k] = (lateFrames[k] ?? 0) + v;
    for (const [k, v] of Object.entries(x.rejected)) {
      const r = (rejected[k] ??= { count: 0, first: v.first });
      r.count += v.count;
    }
  }
  const gaps = parts.flatMap((x) => x.gaps);
  // the layout `record` writes, less the cameras (not read from bags yet)
  const features = Object.fromEntries(
    Object.entries(recordingLayout(p).features).filter(([, f]) => f.dtype !== "video"),
  );
  const widths = Object.fromEntries(Object.entries(features).map(([k, f]) => [k, f.shape[0] as number]));
  const writer = await LeRobotWriter.create(out, { fps, robotType: p.name, features });
  const name = (files.length === 1 ? (files[0] as string) : (files[0] as string).replace(/\/[^/]*$/, ""))
    .split("/")
    .pop();
  const task = o.task ?? rec?.task ?? `converted from ${name}`;
  let written = 0;
  let frames = 0;
  let droppedShort = 0;
  try {
    for (const e of episodes) {
      const nextState = action.source === "next_state";
      const length = nextState ? e.length - 1 : e.length;
      if (length < 2) {
        droppedShort++;
        continue;
      }
      const slice = (key: string, shift = 0): Float32Array => {
        const w = widths[key] as number;
        return (e.frames[key] as Float32Array).slice((e.offset + shift) * w, (e.offset + shift + length) * w);
      };
      const cols: Record<string, Float32Array> = { [p.state_feature]: slice(p.state_feature) };
      for (const f of p.features) cols[f.feature] = slice(f.feature);
      cols[actionKey] = nextState ? slice(p.state_feature, 1) : slice(actionKey);
      await writer.addEpisode({ task, frames: cols, length });
      written++;
      frames += length;
    }
    if (written === 0)
      throw new Error(
        `${files.join(", ")}: no episode of at least 2 frames (${gaps.length} gap(s); late frames by topic: ${JSON.stringify(lateFrames)})`,
      );
    await writer.finish();
  } catch (err) {
    await writer.abort();
    throw err;
  }
  const formats = new Set(parts.map((x) => x.format));
  return {
    source: formats.size > 1 ? "mcap+bag" : (parts[0]?.format ?? "mcap"),
    out,
    episodes: written,
    frames,
    fps,
    features: Object.keys(features),
    files: files.length,
    messages: counts,
    gaps,
    splits: parts.map((x) => x.split),
    discarded: parts.flatMap((x) => x.discarded),
    lateFrames,
    rejected,
    droppedShort,
  };
}
