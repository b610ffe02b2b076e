/**
 * `actionflow record --robot <profile> --ros <url> --out <dataset>`: records demonstrations while a
 * person teleoperates the robot, into a LeRobot v3.0 dataset (see bridge/record/recorder.ts).
 *
 * Episodes start, stop (keep), are discarded and the recording quits from `std_msgs/String`
 * messages on the profile's `recording.control_topic` (`start`, `stop` or `keep`, `discard`,
 * `quit`) or, when stdin is a terminal, from keys: space or enter starts and stops, `d` discards,
 * `q` quits (keeping an episode in progress). Ctrl-C (SIGINT, SIGTERM) stops at once, discarding an
 * episode in progress; every episode finished before is on disk in any case, and `--resume`
 * appends to the dataset.
 */
import type { Command } from "commander";
import { loadRobotProfile } from "../../bridge/profile.ts";
import { Recorder, type RecorderEvent, type RecordResult } from "../../bridge/record/recorder.ts";
import { choiceOption, option, positiveFloat, positiveInt } from "../args.ts";
import { log, printResult, startProgress } from "../output.ts";

interface RecordFlags {
  robot: string;
  ros: string;
  out: string;
  fps?: number;
  episodes?: number;
  task?: string;
  resume?: boolean;
  maxEpisodeS?: number;
  vcodec: "av1" | "h264";
  json?: boolean;
}

/** Registers `record`. */
export function registerRecord(program: Command): void {
  program
    .command("record")
    .description("record teleoperated demonstrations over rosbridge into a LeRobot v3.0 dataset")
    .requiredOption("--robot <profile>", "robot profile JSON with a `recording` section (topics, action source)")
    .option("--ros <url>", "rosbridge URL", "ws://127.0.0.1:9090")
    .requiredOption("--out <dataset>", "dataset folder (new, or existing with --resume)")
    .addOption(option("--fps <hz>", "frame rate (default: the profile's recording.fps)", positiveFloat))
    .addOption(option("--episodes <n>", "stop after this many kept episodes (default: until quit)", positiveInt))
    .option("--task <text>", "the episodes' task (default: the profile's recording.task)")
    .option("--resume", "append to the dataset in --out")
    .addOption(option("--max-episode-s <s>", "end and keep an episode after this long", positiveFloat))
    .addOption(choiceOption("--vcodec <codec>", "video codec of the cameras", ["av1", "h264"] as const, "av1"))
    .option("--json", "print one JSON object as the last stdout line")
    .action(async (o: RecordFlags) => {
      const profile = await loadRobotProfile(o.robot, { warn: log });
      const json = o.json ?? false;
      const tty = !json && process.stderr.isTTY === true;
      let bar: ReturnType<typeof startProgress> | undefined;
      const say = (line: string): void => {
        if (bar) process.stderr.write("\n");
        log(line);
      };
      const recorder = await Recorder.open({
        profile,
        profileSource: o.robot,
        url: o.ros,
        out: o.out,
        ...(o.fps !== undefined ? { fps: o.fps } : {}),
        ...(o.episodes !== undefined ? { episodes: o.episodes } : {}),
        ...(o.task !== undefined ? { task: o.task } : {}),
        ...(o.resume ? { resume: true } : {}),
        ...(o.maxEpisodeS !== undefined ? { maxEpisodeS: o.maxEpisodeS } : {}),
        vcodec: o.vcodec,
        onEvent: (e) => say(`record: ${describe(e)}`),
      });
      if (o.resume) say(`record: appending to ${o.out} (${recorder.resumedEpisodes} episodes there)`);
      const control = profile.recording?.control_topic ?? "/actionflow/record";
      say(
        `record: ${o.out} from ${o.ros}; episodes start/stop/discard/quit on ${control}${process.stdin.isTTY ? " or with keys: space start/stop, d discard, q quit" : ""}`,
      );
      bar = tty ? startProgress(o.episodes ?? 0, { json, label: "record" }) : undefined;
      const status = bar
        ? setInterval(() => {
            const s = recorder.status();
            const rates = Object.entries(s.rates)
              .map(([t, hz]) => `${t} ${hz.toFixed(0)} Hz`)
              .join(", ");
            bar!.update(s.kept, {
              state: s.recording ? `REC ep ${s.episode} ${s.seconds.toFixed(1)} s ${s.frames} frames` : "idle",
              discarded: s.discarded,
              topics: rates || "none",
              link: s.connected ? "up" : "down",
            });
          }, 250)
        : undefined;
      const keys = process.stdin.isTTY
        ? listenKeys(
            (cmd) => recorder.request(cmd),
            () => recorder.status().recording,
          )
        : undefined;
      const stopNow = (): void => {
        void recorder.close();
      };
      process.once("SIGINT", stopNow);
      process.once("SIGTERM", stopNow);
      let result: RecordResult;
      try {
        result = await recorder.done;
      } finally {
        clearInterval(status);
        bar?.stop();
        keys?.();
        process.off("SIGINT", stopNow);
        process.off("SIGTERM", stopNow);
      }
      printResult(
        result,
        { json },
        (r: RecordResult) =>
          `recorded ${r.kept} episode(s) (${r.framesRecorded} frames at ${r.fps} fps), discarded ${r.discarded}; ${r.out} has ${r.episodes} episodes, ${r.frames} frames` +
          (Object.keys(r.lateFrames).length > 0
            ? `; frames left out, late topics: ${JSON.stringify(r.lateFrames)}`
            : ""),
      );
    });
}

/** Reads single keys from the terminal; returns the function that restores it. */
function listenKeys(send: (cmd: string) => void, recording: () => boolean): () => void {
  const stdin = process.stdin;
  stdin.setRawMode(true);
  stdin.resume();
  const onData = (buf: Buffer): void => {
    const k = buf.toString();
    if (k === "\u0003") return void process.kill(process.pid, "SIGINT");
    if (k === " " || k === "\r" || k === "\n") {
      send(recording() ? "stop" : "start");
    } else if (k === "d") send("discard");
    else if (k === "q") send("quit");
  };
  stdin.on("data", onData);
  return () => {
    stdin.off("data", onData);
    stdin.setRawMode(false);
    stdin.pause();
  };
}

function describe(e: RecorderEvent): string {
  switch (e.kind) {
    case "connected":
      return `connected to ${e.url}`;
    case "disconnected":
      return `rosbridge connection lost, retrying in ${e.retryInMs} ms`;
    case "started":
      return `episode ${e.episode} started`;
    case "kept":
      return `episode ${e.episode} saved: ${e.frames} frames (${e.seconds.toFixed(1)} s)`;
    case "discarded":
      return `episode discarded (${e.reason}; ${e.frames} frames)`;
    case "gap":
      return `episode ${e.episode}: ${e.frames} frame(s) left out at ${e.fromS.toFixed(2)}-${e.toS.toFixed(2)} s, nothing fresh on ${e.late.join(", ")}`;
    case "rejected":
      return `rejected a message on ${e.topic}: ${e.error}`;
    case "ignored":
      return `'${e.command}' ignored: ${e.reason}`;
    case "error":
      return `error: ${e.error}`;
  }
}
