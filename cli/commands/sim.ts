import type { Command } from "commander";

/** Registers the `sim` command(s). */
export function registerSim(program: Command): void {
  void program;
}
