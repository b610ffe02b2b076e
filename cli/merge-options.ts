/**
 * The chunk-merging flags every command that executes chunks shares (`sim eval`, `sim run`, `serve
 * --robot`): `--merge sync|ensemble|blend|rtc`, `--n-action-steps` (sync: actions per chunk; rtc: the
 * execution horizon s), `--prefix-steps` (sync and rtc: least actions committed per request as the
 * next chunk's prefix) and `--aggregate` (blend). `chunkMergeFrom` (`policy/runtime/executor.ts`)
 * maps them to the executor's settings.
 */
import type { Command } from "commander";
import { AGGREGATES, DEFAULT_SMOOTHING, MERGE_MODES, type ChunkMerge } from "../policy/runtime/executor.ts";
import { choiceOption, nonNegativeInt, nonNegativeNumber, option, positiveInt } from "./args.ts";

/**
 * Adds `--merge`, `--n-action-steps`, `--prefix-steps` and `--aggregate` to a command, `--merge`
 * defaulting to `defaultMode`. `defaults.nActionSteps` is the command's `--n-action-steps` when the
 * mode takes it and it is not given (shown in the help), after the policy's own recommendation for
 * sync; absent, the executor's defaults apply (sync: the policy's recommendation, else the whole
 * chunk; rtc: half of it).
 */
export function addMergeOptions(
  cmd: Command,
  defaultMode: ChunkMerge["mode"],
  defaults: { nActionSteps?: number } = {},
): Command {
  const n = defaults.nActionSteps;
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
        n === undefined
          ? "sync: actions executed per chunk (default: the policy's recommendation, else all); rtc: execution horizon s (default H/2, kept within d <= s <= H - d)"
          : `sync: actions executed per chunk (default: the policy's recommendation, else ${n}); rtc: execution horizon s (d <= s <= H - d; default ${n})`,
        positiveInt,
      ),
    )
    .addOption(
      option(
        "--prefix-steps <n>",
        "sync and rtc: commit at least n planned actions per request as the next chunk's prefix, kept and continued by the policy (sync: exactly n, the arm holds during inference; rtc: max(delay, n)); a longer prefix keeps a multimodal policy on its way; at most the policy's rtcMaxDelay",
        nonNegativeInt,
      ),
    )
    .addOption(choiceOption("--aggregate <fn>", "blend: how overlapping actions merge", AGGREGATES))
    .addOption(
      option(
        "--smoothing <lambda>",
        `sync, blend and rtc: bend each new chunk onto the commands that ran before it, a smoothing spline of weight lambda (in control steps) over third differences across the boundary (default ${DEFAULT_SMOOTHING}; 0 = off)`,
        nonNegativeNumber,
      ),
    );
}
