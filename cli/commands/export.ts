/**
 * `actionflow export <run>`: writes the ONNX sample graph (`policy.onnx`) and velocity graph
 * (`policy.velocity.onnx`) of a run's latest checkpoint (or of one checkpoint folder).
 */
import type { Command } from "commander";
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
    .option("--steps <n>", "solver steps unrolled into the sample graph", "10")
    .option("--solver <name>", "ODE solver: euler, midpoint, heun or rk4", "euler")
    .option("--out <file>", "path of the sample graph (default <run>/policy.onnx); the velocity graph goes beside it")
    .option("--seed <n>", "accepted for uniformity; the export is deterministic", "0")
    .option("--json", "print one JSON object as the last stdout line")
    .action(async (run: string, o: { steps: string; solver: string; out?: string; json?: boolean }) => {
      const steps = Number(o.steps);
      if (!Number.isInteger(steps) || steps < 1)
        throw new Error(`--steps must be a positive integer, got '${o.steps}'`);
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
