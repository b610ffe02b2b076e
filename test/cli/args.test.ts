import { spawnSync } from "node:child_process";
import { Command } from "commander";
import { describe, expect, it } from "vitest";
import {
  choice,
  choiceOption,
  episodeRange,
  float,
  list,
  nonNegativeInt,
  option,
  positiveFloat,
  positiveInt,
  text,
} from "../../cli/args.ts";

describe("cli/args parsers", () => {
  it("positiveInt takes integers >= 1 and names the flag and the value otherwise", () => {
    expect(positiveInt("1", "--steps")).toBe(1);
    expect(positiveInt(" 300 ", "--steps")).toBe(300);
    expect(positiveInt("1e3", "--steps")).toBe(1000);
    for (const bad of ["x", "0", "-3", "2.5", "", "0x10", "10abc", "Infinity", "1e400"])
      expect(() => positiveInt(bad, "--steps"), bad).toThrow(`--steps: expected a positive integer, got '${bad}'`);
  });

  it("nonNegativeInt takes 0 and refuses negatives and fractions", () => {
    expect(nonNegativeInt("0", "--seed")).toBe(0);
    expect(nonNegativeInt("42", "--seed")).toBe(42);
    for (const bad of ["-1", "0.5", "seed", " "])
      expect(() => nonNegativeInt(bad, "--seed"), bad).toThrow(`--seed: expected a non-negative integer, got '${bad}'`);
  });

  it("float takes any finite decimal; positiveFloat only > 0", () => {
    expect(float("-0.25", "--x")).toBe(-0.25);
    expect(float(".5", "--x")).toBe(0.5);
    expect(float("3e-4", "--x")).toBeCloseTo(3e-4, 12);
    expect(() => float("NaN", "--x")).toThrow("--x: expected a number, got 'NaN'");
    expect(() => float("1,5", "--x")).toThrow("--x: expected a number, got '1,5'");
    expect(positiveFloat("30", "--fps")).toBe(30);
    expect(positiveFloat("1e-3", "--lr")).toBe(0.001);
    for (const bad of ["0", "-1", "fast", "1/30"])
      expect(() => positiveFloat(bad, "--fps"), bad).toThrow(`--fps: expected a positive number, got '${bad}'`);
  });

  it("episodeRange reads a:b as the half-open range [a, b)", () => {
    expect(episodeRange("8:10", "--episodes")).toEqual({ start: 8, end: 10 });
    expect(episodeRange(" 0 : 1 ", "--episodes")).toEqual({ start: 0, end: 1 });
    for (const bad of ["10:8", "3:3", "8", "8:", ":10", "a:b", "-1:2", "1.5:3", "1:2:3"])
      expect(() => episodeRange(bad, "--episodes"), bad).toThrow(
        `--episodes: expected an episode range a:b with a < b (e.g. 8:10), got '${bad}'`,
      );
  });

  it("list splits on commas, trims, drops blanks and names the bad item and the whole text", () => {
    expect(list(text)(" a, b ,,c", "--features")).toEqual(["a", "b", "c"]);
    expect(list(positiveInt)("1,2,20", "--steps")).toEqual([1, 2, 20]);
    expect(() => list(positiveInt)("1,x,3", "--steps")).toThrow(
      "--steps: expected a positive integer, got 'x' (in '1,x,3')",
    );
    expect(() => list(text)(" , ", "--features")).toThrow("--features: expected a comma-separated list, got ' , '");
    expect(() => text("  ", "--task")).toThrow("--task: expected a non-empty value, got '  '");
  });

  it("choice takes one of its values (list items), naming them otherwise", () => {
    const solver = choice(["euler", "rk4"] as const);
    expect(list(solver)("rk4,euler", "--solvers")).toEqual(["rk4", "euler"]);
    expect(() => list(solver)("euler,leapfrog", "--solvers")).toThrow(
      "--solvers: expected one of euler, rk4, got 'leapfrog' (in 'euler,leapfrog')",
    );
  });

  it("option() parses through commander with the option's own flag; defaults stay parsed values", async () => {
    const run = async (args: string[]): Promise<Record<string, unknown>> => {
      const cmd = new Command()
        .exitOverride()
        .configureOutput({ writeErr: () => {}, writeOut: () => {} })
        .addOption(option("-n, --n-steps <n>", "steps", positiveInt, 10))
        .addOption(option("--rate <hz>", "rate", positiveFloat))
        .addOption(choiceOption("--solver <s>", "solver", ["euler", "rk4"], "euler"));
      await cmd.parseAsync(args, { from: "user" });
      return cmd.opts();
    };
    expect(await run([])).toEqual({ nSteps: 10, solver: "euler" });
    expect(await run(["-n", "3", "--rate", "2.5", "--solver", "rk4"])).toEqual({ nSteps: 3, rate: 2.5, solver: "rk4" });
    await expect(run(["-n", "0"])).rejects.toThrow("--n-steps: expected a positive integer, got '0'");
    await expect(run(["--solver", "heun"])).rejects.toThrow(
      "option '--solver <s>' argument 'heun' is invalid. Allowed choices are euler, rk4.",
    );
  });
});

describe("a real command refuses a bad value", () => {
  it("actionflow export --steps x: names the flag and the value on stderr, exit code 1, nothing on stdout", () => {
    const r = spawnSync("npx", ["tsx", "cli/main.ts", "export", "runs/none", "--steps", "x", "--json"], {
      encoding: "utf8",
      cwd: process.cwd(),
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toContain("actionflow: --steps: expected a positive integer, got 'x'");
    expect(r.stdout).toBe("");
  }, 70_000);

  it("actionflow export --solver leapfrog: commander names the flag, the value and the choices", () => {
    const r = spawnSync("npx", ["tsx", "cli/main.ts", "export", "runs/none", "--solver", "leapfrog"], {
      encoding: "utf8",
      cwd: process.cwd(),
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toContain(
      "option '--solver <name>' argument 'leapfrog' is invalid. Allowed choices are euler, midpoint, heun, rk4.",
    );
  }, 70_000);
});
