import type { Command } from "commander";

/** Registers the `export` command(s). */
export function registerExport(program: Command): void {
  void program;
}
