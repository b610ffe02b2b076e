/**
 * ROS 2 bags and run logs (MCAP, CDR) to LeRobot v3.0: the profile maps topics to features (joint
 * states -> its state feature, feature topics -> theirs, the action from its `recording` section),
 * every topic is aligned on the frame grid by header stamps (log time where a message has none or a
 * zero stamp; see `align.ts`), and the grid is split into episodes where a topic is silent for
 * longer than `splitGapS`. A topic late by less keeps its last value on those frames, and they are
 * counted per topic in `lateFrames` (against the recording section's max_age_s), never hidden. With `interventionsOnly`, only the stretches where
 * the profile's intervention topic (`std_msgs/Bool`) was true become episodes (a person's
 * corrections, DAgger-style), each from the person's first command on (with a `command` action).
 *
 * The action of a frame: `leader` — the leader arm's joint state at the frame's time; `command` —
 * the first point of the latest command (JointTrajectory or Float64MultiArray) at the frame's time,
 * the target the controller was driving to; `next_state` — the next frame's joint state (the last
 * frame of an episode is dropped).
 */
import { readFile } from "node:fs/promises";
import { McapIndexedReader, McapStreamReader, type TypedMcapRecords } from "@mcap/core";
import { parse as parseDefinition } from "@foxglove/rosmsg";
import { MessageReader } from "@foxglove/rosmsg2-serialization";
import { LeRobotWriter } from "../../datasets/lerobot/writer.ts";
import type { RobotProfile } from "../profile.ts";
import { parseJointCommand, parseJointState, parseFloat32MultiArray, parseBool } from "../ros/protocol.ts";
import { HoldSeries, alignGrid, type Series } from "./align.ts";

/** Options of {@link convertMcap}. */
export interface ConvertMcapOptions {
  profile: RobotProfile;
  /** Where the profile came from (for error messages). */
  profileSource: string;
  /** Frame rate, Hz; default the recording section's fps, else the profile's control rate. */
  fps?: number;
  /** A run of missing frames longer than this (seconds) starts a new episode; default 0.5. */
  splitGapS?: number;
  /** Episodes only where the intervention topic was true. */
  interventionsOnly?: boolean;
  /** The episodes' task string; default the recording section's task, else "converted from <file>". */
  task?: string;
}

/** What {@link convertMcap} wrote. */
export interface ConvertMcapResult {
  source: "mcap";
  out: string;
  episodes: number;
  frames: number;
  fps: number;
  features: string[];
  /** Messages read per topic the profile maps. */
  messages: Record<string, number>;
  /** Stretches without frames (a topic silent for longer than splitGapS: the episode breaks), seconds from the first message. */
  gaps: { file: string; fromS: number; toS: number; frames: number; late: string[] }[];
  /** MCAP files read. */
  files: number;
  /** Frames where a topic's latest message was older than max_age_s (held over, at most splitGapS), by topic. */
  lateFrames: Record<string, number>;
  /** Messages that did not parse, by topic (the first error each). */
  rejected: Record<string, { count: number; first: string }>;
  /** Episodes shorter than 2 frames, not written. */
  droppedShort: number;
}

type McapMessage = TypedMcapRecords["Message"];

/** An indexed reader over an MCAP file held in memory (throws when it has no summary or index). */
export function openMcapBytes(bytes: Uint8Array): Promise<McapIndexedReader> {
  return McapIndexedReader.Initialize({
    readable: {
      size: async () => BigInt(bytes.length),
      read: async (offset, length) => bytes.subarray(Number(offset), Number(offset + length)),
    },
  });
}

/** Reads every message of the file: through the index, or record by record for a file cut short. */
async function readMessages(path: string): Promise<{
  channels: Map<number, { topic: string; schema: string; encoding: string; data: Uint8Array }>;
  messages: McapMessage[];
}> {
  const bytes = new Uint8Array(await readFile(path));
  const channels = new Map<number, { topic: string; schema: string; encoding: string; data: Uint8Array }>();
  const messages: McapMessage[] = [];
  try {
    const reader = await openMcapBytes(bytes);
    for (const c of reader.channelsById.values()) {
      const s = reader.schemasById.get(c.schemaId);
      channels.set(c.id, {
        topic: c.topic,
        schema: s?.name ?? "",
        encoding: s?.encoding ?? "",
        data: s?.data ?? new Uint8Array(),
      });
    }
    for await (const m of reader.readMessages()) messages.push(m);
    return { channels, messages };
  } catch {
    // no summary or index (a log cut short by a crash): read the records in order up to the cut
    const schemas = new Map<number, TypedMcapRecords["Schema"]>();
    const stream = new McapStreamReader({ validateCrcs: true });
    stream.append(bytes);
    for (;;) {
      let r: ReturnType<McapStreamReader["nextRecord"]>;
      try {
        r = stream.nextRecord();
      } catch {
        break; // a truncated record at the end
      }
      if (r === undefined) break;
      if (r.type === "Schema") schemas.set(r.id, r);
      else if (r.type === "Channel") {
        const s = schemas.get(r.schemaId);
        channels.set(r.id, {
          topic: r.topic,
          schema: s?.name ?? "",
          encoding: s?.encoding ?? "",
          data: s?.data ?? new Uint8Array(),
        });
      } else if (r.type === "Message") messages.push(r);
    }
    if (channels.size === 0) throw new Error(`${path}: not an MCAP file, or no channel before the cut`);
    messages.sort((a, b) => (a.logTime < b.logTime ? -1 : a.logTime > b.logTime ? 1 : 0));
    return { channels, messages };
  }
}

/** Typed arrays (as the CDR reader returns them) to plain arrays, as rosbridge delivers messages. */
function plain(v: unknown): unknown {
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v as unknown as ArrayLike<number>);
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === "object" && v !== null)
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, plain(x)]));
  return v;
}

/** The header stamp of a decoded message in seconds, or undefined when absent or zero. */
function stampOf(msg: Record<string, unknown>): number | undefined {
  const st = (msg.header as { stamp?: { sec?: number; nanosec?: number } } | undefined)?.stamp;
  if (!st || typeof st.sec !== "number" || typeof st.nanosec !== "number") return undefined;
  const s = st.sec + st.nanosec / 1e9;
  return s > 0 ? s : undefined;
}

type Episode = { startS: number; length: number; frames: Record<string, Float32Array>; offset: number };

/** Reads one MCAP file and cuts its aligned frames into episodes. */
async function episodesOf(input: string, o: ConvertMcapOptions) {
  const p = o.profile;
  const rec = p.recording;
  const action = rec?.action ?? { source: "command" as const };
  const fps = o.fps ?? rec?.fps ?? p.control_rate_hz;
  const maxAgeS = rec?.max_age_s ?? 1.5 / fps;
  const splitGapS = o.splitGapS ?? 0.5;
  const { channels, messages } = await readMessages(input);
  const byTopic = new Map<string, number>();
  for (const [id, c] of channels) byTopic.set(c.topic, id);
  const need = (topic: string, what: string): void => {
    if (!byTopic.has(topic))
      throw new Error(
        `${input}: no topic ${topic} (${what}, from ${o.profileSource}); the file has ${[...byTopic.keys()].sort().join(", ") || "no topics"}`,
      );
  };
  need(p.ros.joint_states, "ros.joint_states");
  for (const [i, f] of p.features.entries()) need(f.topic, `features.${i}.topic`);
  if (action.source === "leader") need(action.topic, "recording.action.topic");
  if (action.source === "command") need(p.ros.command, "ros.command");
  if (o.interventionsOnly) {
    if (p.ros.intervention === undefined)
      throw new Error(
        `--interventions-only: ${o.profileSource} has no ros.intervention topic (or pass --intervention-topic)`,
      );
    need(p.ros.intervention, "ros.intervention");
  }
  const readers = new Map<number, MessageReader>();
  const reader = (id: number): MessageReader => {
    let r = readers.get(id);
    if (!r) {
      const c = channels.get(id)!;
      if (c.encoding !== "ros2msg")
        throw new Error(`${input}: topic ${c.topic} has schema encoding '${c.encoding}', expected ros2msg (CDR)`);
      r = new MessageReader(parseDefinition(new TextDecoder().decode(c.data), { ros2: true }));
      readers.set(id, r);
    }
    return r;
  };
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
  let t0: number | undefined;
  for (const m of messages) {
    const topic = channels.get(m.channelId)?.topic as string;
    const mapped =
      topic === p.ros.joint_states ||
      featureOf.has(topic) ||
      topic === leader?.name ||
      topic === command?.name ||
      topic === person?.name;
    if (!mapped) continue;
    counts[topic] = (counts[topic] ?? 0) + 1;
    let msg: Record<string, unknown>;
    try {
      msg = plain(reader(m.channelId).readMessage(m.data)) as Record<string, unknown>;
    } catch (err) {
      reject(topic, `CDR: ${(err as Error).message}`);
      continue;
    }
    const t = stampOf(msg) ?? Number(m.logTime) / 1e9;
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
  }
  const span = state.span();
  if (!span) throw new Error(`${input}: no valid joint state on ${p.ros.joint_states}`);
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

  // episodes: the segments, cut to the intervention stretches when asked
  let episodes: Episode[] = grid.segments.map((s) => ({ ...s, offset: 0 }));
  if (person) {
    const cut: Episode[] = [];
    for (const s of grid.segments) {
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
          cut.push({ startS: s.startS + from / fps, length: i - from, frames: s.frames, offset: from });
          from = -1;
        }
      }
    }
    episodes = cut;
  }
  const rel = (t: number): number => t - (t0 ?? 0);
  return {
    episodes,
    counts,
    rejected,
    lateFrames: nominal.lateFrames,
    gaps: grid.gaps.map((g) => ({ file: input, fromS: rel(g.fromS), toS: rel(g.toS), frames: g.frames, late: g.late })),
  };
}

/**
 * Converts MCAP files (one, or every `.mcap` of a folder, in name order) to one LeRobot v3.0 dataset
 * at `out`.
 */
export async function convertMcap(
  input: string | readonly string[],
  out: string,
  o: ConvertMcapOptions,
): Promise<ConvertMcapResult> {
  const files = typeof input === "string" ? [input] : [...input];
  if (files.length === 0) throw new Error("convert: no .mcap file given");
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
  const J = p.joints.length;
  const widths: Record<string, number> = { [p.state_feature]: J, [actionKey]: J };
  for (const f of p.features) widths[f.feature] = f.size;
  const features: Record<string, { dtype: "float32"; shape: number[]; names?: string[] }> = {
    [p.state_feature]: { dtype: "float32", shape: [J], names: [...p.joints] },
    [actionKey]: { dtype: "float32", shape: [J], names: [...p.joints] },
  };
  for (const f of p.features) features[f.feature] = { dtype: "float32", shape: [f.size] };
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
  return {
    source: "mcap",
    out,
    episodes: written,
    frames,
    fps,
    features: Object.keys(features),
    files: files.length,
    messages: counts,
    gaps,
    lateFrames,
    rejected,
    droppedShort,
  };
}
