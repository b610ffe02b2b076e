/**
 * `actionflow export <run>`: writes the ONNX sample graph (`policy.onnx`) and velocity graph
 * (`policy.velocity.onnx`) of a run's latest checkpoint (or of one checkpoint folder).
 */
import type { Command } from "commander";
import { SOLVER_NAMES } from "../../policy/flow/solvers.ts";
import type { SolverName } from "../../policy/flow/solvers.ts";
import { choiceOption, nonNegativeInt, option, positiveInt } from "../args.ts";
import { exportOnnx } from "../../policy/onnx/export.ts";
import { log, printResult } from "../output.ts";

/** Registers the `export` command. */
export function registerExport(program: Command): void {
  program
    .command("export")
    .description(
      "export a run's checkpoint to ONNX (sample graph with baked normalisation and unrolled solver, plus the velocity graph)",
    )
    .argument("<run>", "run folder, its checkpoints/ folder, or one checkpoint folder")
    .addOption(option("--steps <n>", "solver steps unrolled into the sample graph", positiveInt, 10))
    .addOption(choiceOption("--solver <name>", "ODE solver: euler, midpoint, heun or rk4", SOLVER_NAMES, "euler"))
    .option("--out <file>", "path of the sample graph (default <run>/policy.onnx); the velocity graph goes beside it")
    .addOption(option("--seed <n>", "accepted for uniformity; the export is deterministic", nonNegativeInt, 0))
    .option("--json", "print one JSON object as the last stdout line")
    .action(async (run: string, o: { steps: number; solver: SolverName; out?: string; json?: boolean }) => {
      const steps = o.steps;
      const r = await exportOnnx(run, { steps, solver: o.solver, ...(o.out !== undefined ? { out: o.out } : {}) });
      if (!o.json) log(`exported ${r.checkpoint} (${r.arch}, ${r.objective}) -> ${r.onnx}`);
      printResult(r, { json: o.json ?? false }, (x: typeof r) =>
        [
          `sample graph   ${x.onnx} (${(x.bytes / 1e6).toFixed(2)} MB, opset ${x.opset})`,
          `velocity graph ${x.velocityOnnx} (${(x.velocityBytes / 1e6).toFixed(2)} MB)`,
          `solver ${x.solver}, ${x.steps} steps, ${x.nfe} velocity evaluations per chunk`,
          `inputs ${x.inputs.join(", ")} -> actions [batch, ${x.horizon}, ${x.actionDim}]`,
        ].join("\n"),
      );
    });
}
