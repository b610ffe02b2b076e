import { Command } from "commander";
import { describe, expect, it } from "vitest";
import { addMergeOptions } from "../../cli/merge-options.ts";
import { loopMergeFrom } from "../../bridge/merge.ts";

const parse = (args: string[]): Record<string, unknown> => {
  const cmd = addMergeOptions(new Command().exitOverride(), "blend");
  cmd.parse(args, { from: "user" });
  return cmd.opts();
};

describe("merge options", () => {
  it("maps the flags to the loop's merge settings", () => {
    expect(loopMergeFrom(parse([]) as never)).toEqual({ mode: "blend" });
    expect(loopMergeFrom(parse(["--merge", "rtc", "--n-action-steps", "6"]) as never)).toEqual({
      mode: "rtc",
      executionHorizon: 6,
    });
    expect(loopMergeFrom(parse(["--merge", "rtc", "--prefix-steps", "8"]) as never)).toEqual({
      mode: "rtc",
      minPrefix: 8,
    });
    expect(loopMergeFrom(parse(["--merge", "sync", "--n-action-steps", "8"]) as never)).toEqual({
      mode: "sync",
      nActionSteps: 8,
    });
    expect(loopMergeFrom(parse(["--aggregate", "latest_only"]) as never)).toEqual({
      mode: "blend",
      aggregate: "latest_only",
    });
  });

  it("refuses a flag the mode does not use and a mode that does not exist", () => {
    expect(() => loopMergeFrom(parse(["--merge", "rtc", "--aggregate", "average"]) as never)).toThrow(
      "--aggregate applies to --merge blend, not rtc",
    );
    expect(() => loopMergeFrom(parse(["--merge", "ensemble", "--n-action-steps", "4"]) as never)).toThrow(
      "--n-action-steps applies to --merge sync or rtc, not ensemble",
    );
    expect(() => loopMergeFrom(parse(["--merge", "sync", "--prefix-steps", "4"]) as never)).toThrow(
      "--prefix-steps applies to --merge rtc, not sync",
    );
    expect(() => parse(["--merge", "latest"])).toThrow(/argument 'latest' is invalid/);
    expect(() => parse(["--n-action-steps", "0"])).toThrow("--n-action-steps: expected a positive integer, got '0'");
  });
});
