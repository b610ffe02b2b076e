import type { Command } from "commander";

/** Registers the `toy` command(s). */
export function registerToy(program: Command): void {
  void program;
}
