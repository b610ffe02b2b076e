/**
 * The chunk-merging flags every command that runs the real-time loop shares (`sim run`, `serve
 * --robot`): `--merge sync|ensemble|blend|rtc`, `--n-action-steps` (sync: actions per chunk; rtc: the
 * execution horizon s), `--prefix-steps` (rtc: least actions committed per request) and `--aggregate` (blend).
 */
import type { Command } from "commander";
import { AGGREGATES, MERGE_MODES, type LoopMerge } from "../bridge/merge.ts";
import type { Aggregate } from "../policy/runtime/executor.ts";
import { choiceOption, nonNegativeInt, option, positiveInt } from "./args.ts";

/** The merge settings of the `--merge`, `--n-action-steps` and `--aggregate` flags (shared with `serve --robot`). */
export function loopMergeFrom(o: {
  merge: LoopMerge["mode"];
  nActionSteps?: number;
  aggregate?: Aggregate;
  prefixSteps?: number;
}): LoopMerge {
  if (o.aggregate !== undefined && o.merge !== "blend")
    throw new Error(`--aggregate applies to --merge blend, not ${o.merge}`);
  if (o.nActionSteps !== undefined && o.merge !== "sync" && o.merge !== "rtc")
    throw new Error(`--n-action-steps applies to --merge sync or rtc, not ${o.merge}`);
  if (o.prefixSteps !== undefined && o.merge !== "rtc")
    throw new Error(`--prefix-steps applies to --merge rtc, not ${o.merge}`);
  switch (o.merge) {
    case "sync":
      return { mode: "sync", ...(o.nActionSteps !== undefined ? { nActionSteps: o.nActionSteps } : {}) };
    case "ensemble":
      return { mode: "ensemble" };
    case "blend":
      return { mode: "blend", ...(o.aggregate !== undefined ? { aggregate: o.aggregate } : {}) };
    case "rtc":
      return {
        mode: "rtc",
        ...(o.nActionSteps !== undefined ? { executionHorizon: o.nActionSteps } : {}),
        ...(o.prefixSteps !== undefined ? { minPrefix: o.prefixSteps } : {}),
      };
  }
}

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
