/**
 * The chunk-merging flags every command that runs the real-time loop shares (`sim run`, `serve
 * --robot`): `--merge sync|ensemble|blend|rtc`, `--n-action-steps` (sync: actions per chunk; rtc: the
 * execution horizon s), `--prefix-steps` (rtc: least actions committed per request) and `--aggregate` (blend).
 */
import type { Command } from "commander";
import { AGGREGATES, MERGE_MODES, type LoopMerge } from "../bridge/merge.ts";
import { choiceOption, nonNegativeInt, option, positiveInt } from "./args.ts";

/** Adds `--merge`, `--n-action-steps`, `--prefix-steps` and `--aggregate` to a command. */
export function addMergeOptions(cmd: Command, defaultMode: LoopMerge["mode"]): Command {
  return cmd
    .addOption(
      choiceOption(
        "--merge <mode>",
        "chunk merging: sync (n actions, then infer), ensemble (ACT), blend (LeRobot async), rtc (real-time chunking: the actions executed during inference are the next chunk's prefix)",
        MERGE_MODES,
        defaultMode,
      ),
    )
    .addOption(
      option(
        "--n-action-steps <n>",
        "sync: actions executed per chunk (default: all); rtc: execution horizon s (default H/2, kept within d <= s <= H - d)",
        positiveInt,
      ),
    )
    .addOption(
      option(
        "--prefix-steps <n>",
        "rtc: commit at least n actions per request as the next chunk's prefix, even when inference is faster (a longer prefix keeps a multimodal policy on its way; at most the policy's rtcMaxDelay)",
        nonNegativeInt,
      ),
    )
    .addOption(choiceOption("--aggregate <fn>", "blend: how overlapping actions merge", AGGREGATES));
}
