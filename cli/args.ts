/**
 * The one place command-line option values are parsed (every `cli/commands/*` and `bench/` uses it).
 *
 * A {@link Parse} turns an option's text into its value or throws an `Error` naming the flag and the
 * text (`--steps: expected a positive integer, got 'x'`). {@link option} attaches one to a commander
 * `Option`, taking the flag name from the option itself; choices go through commander's own
 * `Option.choices` ({@link choiceOption}). Parse errors are plain `Error`s, not commander's
 * `InvalidArgumentError`, so they reach the command's top-level handler unprefixed
 * (`actionflow: --steps: ...`, exit code 1).
 */
import { Option } from "commander";
import { EXECUTION_PROVIDERS } from "../policy/runtime/providers.ts";

/** Parses an option's text; throws an `Error` naming `flag` and `text` when it is not valid. */
export type Parse<T> = (text: string, flag: string) => T;

function fail(flag: string, expected: string, text: string): never {
  throw new Error(`${flag}: expected ${expected}, got '${text}'`);
}

/** A decimal number as written (no empty string, no hex, no trailing junk): `Number()` is too lenient. */
function numberOf(text: string): number {
  const s = text.trim();
  return s === "" || !/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s) ? NaN : Number(s);
}

/** An integer >= 1 (steps, episodes, batch sizes). */
export const positiveInt: Parse<number> = (text, flag) => {
  const n = numberOf(text);
  if (!Number.isSafeInteger(n) || n < 1) fail(flag, "a positive integer", text);
  return n;
};

/** A SCHED_FIFO priority: an integer 1-99. */
export const realtimePriority: Parse<number> = (text, flag) => {
  const n = numberOf(text);
  if (!Number.isSafeInteger(n) || n < 1 || n > 99) fail(flag, "an integer 1-99", text);
  return n;
};

/**
 * `--realtime-priority <1-99>` of a command that runs the control loop: its thread on SCHED_FIFO
 * while the loop runs (needs root, CAP_SYS_NICE or an rtprio limit; without it the loop runs as
 * usual and the result says why).
 */
export function realtimePriorityOption(): Option {
  return option(
    "--realtime-priority <n>",
    "run the control loop's thread on SCHED_FIFO at this priority, 1-99 (as ros2_control; needs root, CAP_SYS_NICE or ulimit -r)",
    realtimePriority,
  );
}

/** An integer >= 0 (seeds, indices, counts that may be zero). */
export const nonNegativeInt: Parse<number> = (text, flag) => {
  const n = numberOf(text);
  if (!Number.isSafeInteger(n) || n < 0) fail(flag, "a non-negative integer", text);
  return n;
};

/** A finite number. */
export const float: Parse<number> = (text, flag) => {
  const n = numberOf(text);
  if (!Number.isFinite(n)) fail(flag, "a number", text);
  return n;
};

/** A finite number >= 0 (weights that may be zero: off). */
export const nonNegativeNumber: Parse<number> = (text, flag) => {
  const n = numberOf(text);
  if (!Number.isFinite(n) || n < 0) fail(flag, "a non-negative number", text);
  return n;
};

/** A finite number > 0 (rates in Hz, learning rates, sizes in MB). */
export const positiveFloat: Parse<number> = (text, flag) => {
  const n = numberOf(text);
  if (!Number.isFinite(n) || n <= 0) fail(flag, "a positive number", text);
  return n;
};

/** A half-open range of episode indices `a:b` (episodes a, a+1, ..., b-1), as Python slices write it. */
export interface EpisodeRange {
  /** First episode index, inclusive. */
  start: number;
  /** One past the last episode index. */
  end: number;
}

/** An episode range `a:b` with 0 <= a < b (`8:10` is episodes 8 and 9). */
export const episodeRange: Parse<EpisodeRange> = (text, flag) => {
  const m = /^\s*(\d+)\s*:\s*(\d+)\s*$/.exec(text);
  const start = m ? Number(m[1]) : NaN;
  const end = m ? Number(m[2]) : NaN;
  if (!m || !(start < end)) fail(flag, "an episode range a:b with a < b (e.g. 8:10)", text);
  return { start, end };
};

/** One of `values` (for list items; a whole option takes {@link choiceOption}). */
export function choice<T extends string>(values: readonly T[]): Parse<T> {
  return (t, flag) => {
    if (!values.includes(t as T)) fail(flag, `one of ${values.join(", ")}`, t);
    return t as T;
  };
}

/** Any non-empty string. */
export const text: Parse<string> = (t, flag) => {
  if (t.trim() === "") fail(flag, "a non-empty value", t);
  return t;
};

/**
 * A comma-separated list of `item`s (`a,b,c`); blanks around commas are ignored; at least one item.
 * An item's error names the flag, the item and the whole text.
 */
export function list<T>(item: Parse<T>): Parse<T[]> {
  return (t, flag) => {
    const parts = t
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    if (parts.length === 0) fail(flag, "a comma-separated list", t);
    return parts.map((p) => {
      try {
        return item(p, flag);
      } catch (err) {
        throw new Error(`${(err as Error).message} (in '${t}')`);
      }
    });
  };
}

/** The flag an error names: the long form (`--steps`), else the short one. */
function flagOf(o: Option): string {
  return o.long ?? o.short ?? o.flags;
}

/**
 * A commander option whose value goes through `parse` (with `defaultValue` used, already parsed,
 * when the flag is absent). Add it with `command.addOption(...)`.
 */
export function option<T>(flags: string, description: string, parse: Parse<T>, defaultValue?: T): Option {
  const o = new Option(flags, description);
  o.argParser((value: string) => parse(value, flagOf(o)));
  if (defaultValue !== undefined) o.default(defaultValue);
  return o;
}

/**
 * A commander option restricted to `choices` (commander refuses any other value, naming the flag,
 * the value and the choices, and lists them in the help).
 */
export function choiceOption<T extends string>(
  flags: string,
  description: string,
  choices: readonly T[],
  defaultValue?: T,
): Option {
  const o = new Option(flags, description).choices(choices);
  if (defaultValue !== undefined) o.default(defaultValue);
  return o;
}

/**
 * `--provider cpu|cuda`, the onnxruntime execution provider of a command that runs inference
 * (default cpu); a provider onnxruntime-node cannot load fails with an error naming it.
 */
export function providerOption(): Option {
  return choiceOption(
    "--provider <name>",
    "onnxruntime execution provider (cuda needs onnxruntime-node's CUDA build)",
    EXECUTION_PROVIDERS,
    "cpu",
  );
}

/** `o` without its undefined entries: options a caller did not give fall back to their defaults. */
export function defined<T extends Record<string, unknown>>(
  o: T,
): Partial<{ [K in keyof T]: Exclude<T[K], undefined> }> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<{
    [K in keyof T]: Exclude<T[K], undefined>;
  }>;
}
