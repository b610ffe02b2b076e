import type { Command } from "commander";

/** Registers the `dataset` command(s). */
export function registerDataset(program: Command): void {
  void program;
}
