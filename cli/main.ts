/**
 * The `actionflow` command. Each subcommand lives in `cli/commands/<name>.ts` and registers itself.
 * Command modules are imported only when their command runs (the first word of the command line
 * names it; anything else, such as `--help`, loads them all): `serve` and `sim run` must not pay for
 * (or load) tfjs, which `train`, `toy` and `export` pull in.
 */
import { Command } from "commander";

type Register = (program: Command) => void;

/** Per command, the modules registering it, in order (`sim run` extends `sim`). */
const COMMANDS: Record<string, Array<() => Promise<Register>>> = {
  toy: [() => import("./commands/toy.ts").then((m) => m.registerToy)],
  dataset: [() => import("./commands/dataset.ts").then((m) => m.registerDataset)],
  record: [() => import("./commands/record.ts").then((m) => m.registerRecord)],
  train: [() => import("./commands/train.ts").then((m) => m.registerTrain)],
  export: [() => import("./commands/export.ts").then((m) => m.registerExport)],
  sim: [
    () => import("./commands/sim.ts").then((m) => m.registerSim),
    () => import("./commands/sim-run.ts").then((m) => m.registerSimRobot),
  ],
  eval: [() => import("./commands/eval.ts").then((m) => m.registerEval)],
  serve: [() => import("./commands/serve.ts").then((m) => m.registerServe)],
  keys: [() => import("./commands/keys.ts").then((m) => m.registerKeys)],
  distill: [() => import("./commands/distill.ts").then((m) => m.registerDistill)],
  demo: [() => import("./commands/demo.ts").then((m) => m.registerDemo)],
};

const program = new Command();
program
  .name("actionflow")
  .description("Flow-matching robot action policies: train, export to ONNX, simulate, serve")
  .showHelpAfterError();

try {
  const first = process.argv.slice(2).find((a) => !a.startsWith("-"));
  const names = first !== undefined && first in COMMANDS ? [first] : Object.keys(COMMANDS);
  for (const name of names) for (const load of COMMANDS[name] ?? []) (await load())(program);
  await program.parseAsync(process.argv);
} catch (err) {
  const e = err as Error;
  process.stderr.write(`actionflow: ${e.message}\n`);
  if (e.cause) process.stderr.write(`  caused by: ${(e.cause as Error).message ?? String(e.cause)}\n`);
  process.exitCode = 1;
}
