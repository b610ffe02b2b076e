/**
 * The `actionflow` command. Each subcommand lives in `cli/commands/<name>.ts` and registers itself.
 */
import { Command } from "commander";
import { registerToy } from "./commands/toy.ts";
import { registerDataset } from "./commands/dataset.ts";
import { registerTrain } from "./commands/train.ts";
import { registerExport } from "./commands/export.ts";
import { registerSim } from "./commands/sim.ts";
import { registerEval } from "./commands/eval.ts";
import { registerServe } from "./commands/serve.ts";
import { registerKeys } from "./commands/keys.ts";
import { registerSimRobot } from "./commands/robot.ts";
import { registerDistill } from "./commands/distill.ts";

const program = new Command();
program
  .name("actionflow")
  .description("Flow-matching robot action policies: train, export to ONNX, simulate, serve")
  .showHelpAfterError();

registerToy(program);
registerDataset(program);
registerTrain(program);
registerExport(program);
registerSim(program);
registerEval(program);
registerServe(program);
registerKeys(program);
registerSimRobot(program);
registerDistill(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  const e = err as Error;
  process.stderr.write(`actionflow: ${e.message}\n`);
  if (e.cause) process.stderr.write(`  caused by: ${(e.cause as Error).message ?? String(e.cause)}\n`);
  process.exitCode = 1;
}
