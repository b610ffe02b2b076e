/**
 * Benchmarks: `npm run bench -- <train|infer|serve> [--json] [options]`; each prints one JSON object.
 */
import { Command } from "commander";
import { intOption } from "../cli/commands/toy.ts";
import { printResult, log } from "../cli/output.ts";
import type { BackendName } from "../training/backend/registry.ts";
import { benchTrain } from "./train.ts";
import { benchInfer } from "./infer.ts";
import { benchServe } from "./serve.ts";

const program = new Command().name("bench").description("actionflow benchmarks (JSON)");

program
  .command("train")
  .description("training throughput of the default head vs a plain ORT matMul")
  .option("--arch <arch>", "transformer or mlp", "transformer")
  .option("--batch <n>", "batch size", intOption("--batch"), 32)
  .option("--steps <n>", "timed steps", intOption("--steps"), 10)
  .option("--backend <name>", "tfjs backend", "wasm")
  .option(
    "--workers <n>",
    "gradient threads (default: 2 on 2+ cores when a step has >= 1000 FLOPs per parameter, else 1)",
    intOption("--workers"),
  )
  .option("--profile", "also time every kernel of one single-thread step (where the time goes)")
  .option("--json", "JSON only")
  .action(
    async (o: {
      arch: "transformer" | "mlp";
      batch: number;
      steps: number;
      backend: BackendName;
      workers?: number;
      profile?: boolean;
      json?: boolean;
    }) => {
      const r = await benchTrain(o);
      log(`train ${o.arch} batch ${o.batch} on ${String(r["backend"])}, ${String(r["workers"])} gradient thread(s)`);
      printResult(r, { json: true });
    },
  );

program
  .command("infer")
  .description("chunk latency (H=50, A=32, batch 1, 10 Euler steps): ORT vs tfjs, both heads")
  .option("--runs <n>", "timed ORT runs per head", intOption("--runs"), 200)
  .option("--tfjs-runs <n>", "timed tfjs runs per head", intOption("--tfjs-runs"), 20)
  .option("--threads <n>", "ORT intra-op threads", intOption("--threads"), 2)
  .option("--json", "JSON only")
  .action(async (o: { runs: number; tfjsRuns: number; threads: number; json?: boolean }) => {
    printResult(await benchInfer(o), { json: true });
  });

program
  .command("serve")
  .description(
    "both policy servers (ZeroMQ, openpi WebSocket) under 1, 8 and 32 concurrent clients, default transformer head",
  )
  .option("--requests <n>", "requests per client", intOption("--requests"), 40)
  .option("--clients <list>", "client counts, comma-separated", "1,8,32")
  .option("--threads <n>", "onnxruntime intra-op threads of the inference worker", intOption("--threads"), 2)
  .option("--workers <n>", "inference worker threads", intOption("--workers"), 1)
  .option("--max-batch <n>", "most requests in one batched run", intOption("--max-batch"), 64)
  .option("--json", "JSON only")
  .action(
    async (o: {
      requests: number;
      clients: string;
      threads: number;
      workers: number;
      maxBatch: number;
      json?: boolean;
    }) => {
      const clients = o.clients.split(",").map((c) => {
        const n = Number(c);
        if (!Number.isInteger(n) || n < 1) throw new Error(`--clients: '${c}' is not a positive integer`);
        return n;
      });
      printResult(
        await benchServe({
          requests: o.requests,
          clients,
          threads: o.threads,
          workers: o.workers,
          maxBatch: o.maxBatch,
        }),
        { json: true },
      );
    },
  );

await program.parseAsync(process.argv);
