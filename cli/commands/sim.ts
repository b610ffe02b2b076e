/**
 * `actionflow sim collect|replay|eval`: scripted demonstrations into a LeRobot v3.0 dataset,
 * open-loop replay of a recorded episode, and closed-loop evaluation of a chunk policy, all in
 * MuJoCo. Each subcommand lives in its own file (`sim-collect.ts`, `sim-replay.ts`, `sim-eval.ts`, `sim-teleop.ts`;
 * `sim robot` and `sim run` are in `sim-run.ts`).
 */
import type { Command } from "commander";
import { registerSimCollect } from "./sim-collect.ts";
import { registerSimEval } from "./sim-eval.ts";
import { registerSimReplay } from "./sim-replay.ts";
import { registerSimTeleop } from "./sim-teleop.ts";

/** Registers the `sim` command with `sim collect`, `sim replay` and `sim eval`. */
export function registerSim(program: Command): void {
  const sim = program
    .command("sim")
    .description("MuJoCo simulation: record expert demonstrations, replay them, evaluate policies");
  registerSimCollect(sim);
  registerSimReplay(sim);
  registerSimEval(sim);
  registerSimTeleop(sim);
}
