/** Runs `actionflow dataset ...` in-process, as the tests of that command do. */
import { Command } from "commander";
import { vi } from "vitest";
import { registerDataset } from "../../cli/commands/dataset.ts";

/** Runs `actionflow dataset <args>` in this process (stdout and stderr captured); returns the parsed last stdout line. */
export async function runDatasetCli(args: string[]): Promise<Record<string, unknown>> {
  const program = new Command().exitOverride();
  registerDataset(program);
  const lines: string[] = [];
  const out = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  try {
    await program.parseAsync(["dataset", ...args], { from: "user" });
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
  const text = lines.join("").trimEnd().split("\n");
  return JSON.parse(text[text.length - 1]!) as Record<string, unknown>;
}
