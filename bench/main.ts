/**
 * Benchmarks: `npm run bench -- <train|adamw|infer|serve|loop|video> [--json] [options]`; each prints one JSON object.
 */
import { Command } from "commander";
import {
  choiceOption,
  list,
  nonNegativeInt,
  option,
  positiveFloat,
  positiveInt,
  realtimePriorityOption,
} from "../cli/args.ts";
import { printResult, log } from "../cli/output.ts";
import { TRAIN_BACKEND_NAMES } from "../training/backend/registry.ts";
import type { TrainBackendName } from "../training/backend/registry.ts";
import { benchTrain, benchTrainCompare } from "./train.ts";
import { benchAdamW } from "./adamw.ts";
import { benchInfer } from "./infer.ts";
import { benchServe } from "./serve.ts";
import { defaultServeWorkers } from "../policy/runtime/threaded.ts";
import { benchLoop } from "./loop.ts";
import { benchVideo } from "./video.ts";

/** Parses one `--backend` name (one of `TRAIN_BACKEND_NAMES`). */
function backendName(t: string, flag: string): TrainBackendName {
  const hit = TRAIN_BACKEND_NAMES.find((b) => b === t);
  if (!hit) throw new Error(`${flag}: '${t}' is not a backend (valid: ${TRAIN_BACKEND_NAMES.join(", ")})`);
  return hit;
}

const program = new Command().name("bench").description("actionflow benchmarks (JSON)");

program
  .command("train")
  .description("training throughput of the default head vs a plain ORT matMul")
  .addOption(choiceOption("--arch <arch>", "transformer or mlp", ["transformer", "mlp"], "transformer"))
  .addOption(option("--batch <n>", "batch size", positiveInt, 32))
  .addOption(option("--steps <n>", "timed steps", positiveInt, 10))
  .addOption(
    option(
      "--backend <list>",
      `tfjs backend, or ort (onnxruntime training graph); several comma-separated (e.g. wasm,ort) measure each in turn and print them in one object (${TRAIN_BACKEND_NAMES.join(", ")})`,
      list(backendName),
      ["wasm"],
    ),
  )
  .addOption(
    option(
      "--workers <n>",
      "gradient threads (default: 2 on 2+ cores when a step has >= 1000 FLOPs per parameter, else 1)",
      positiveInt,
    ),
  )
  .option("--profile", "also time every kernel of one single-thread step (where the time goes)")
  .option("--json", "JSON only")
  .action(
    async (o: {
      arch: "transformer" | "mlp";
      batch: number;
      steps: number;
      backend: TrainBackendName[];
      workers?: number;
      profile?: boolean;
      json?: boolean;
    }) => {
      if (o.backend.length > 1) {
        const c = await benchTrainCompare({ ...o, backends: o.backend });
        log(`train ${o.arch} batch ${o.batch} on ${o.backend.join(", ")}`);
        printResult(c, { json: true });
        return;
      }
      const r = await benchTrain({ ...o, backend: o.backend[0]! });
      log(`train ${o.arch} batch ${o.batch} on ${String(r["backend"])}, ${String(r["workers"])} gradient thread(s)`);
      printResult(r, { json: true });
    },
  );

program
  .command("adamw")
  .description(
    "the ort trainer's optimizer step (clipping, AdamW, EMA) on the default head's parameters: Float32Array loop vs an ONNX graph",
  )
  .addOption(choiceOption("--arch <arch>", "transformer or mlp", ["transformer", "mlp"], "transformer"))
  .addOption(option("--steps <n>", "timed steps of each version", positiveInt, 20))
  .addOption(option("--threads <n>", "onnxruntime intra-op threads (default: one per core)", positiveInt))
  .option("--json", "JSON only")
  .action(async (o: { arch: "transformer" | "mlp"; steps: number; threads?: number; json?: boolean }) => {
    printResult(await benchAdamW(o), { json: true });
  });

program
  .command("infer")
  .description(
    "chunk latency (H=50, A=32, batch 1, 10 Euler steps; transformer also 1 and 2, int8, and prefix-trained against plain): ORT vs tfjs, both heads",
  )
  .addOption(option("--runs <n>", "timed ORT runs per head", positiveInt, 200))
  .addOption(option("--tfjs-runs <n>", "timed tfjs runs per head", positiveInt, 20))
  .addOption(
    option(
      "--threads <n>",
      "ORT intra-op threads (default 1, the policy's default: the fastest at batch 1)",
      positiveInt,
      1,
    ),
  )
  .option(
    "--profile",
    "also profile the transformer's chunk (fp32, int8, prefix-trained) at batch 1 and 32 with onnxruntime's profiler (time per op type, per-node overhead)",
  )
  .option("--json", "JSON only")
  .action(async (o: { runs: number; tfjsRuns: number; threads: number; profile?: boolean; json?: boolean }) => {
    printResult(await benchInfer(o), { json: true });
  });

program
  .command("serve")
  .description(
    "the policy servers (ZeroMQ, openpi WebSocket, KServe v2 over HTTP and gRPC) under 1, 8 and 32 concurrent clients, default transformer head",
  )
  .addOption(option("--requests <n>", "requests per client", positiveInt, 40))
  .addOption(option("--clients <list>", "client counts, comma-separated", list(positiveInt), [1, 8, 32]))
  .addOption(option("--threads <n>", "onnxruntime intra-op threads of each inference worker", positiveInt, 1))
  .addOption(
    option(
      "--workers <n>",
      "inference worker threads (default: as serve, one per core up to 4)",
      positiveInt,
      defaultServeWorkers(),
    ),
  )
  .addOption(option("--max-batch <n>", "most requests in one batched run", positiveInt, 64))
  .option("--no-kserve", "leave out the KServe path (Triton repository behind the test KServe server, HTTP and gRPC)")
  .addOption(
    option("--queue-delay-us <n>", "KServe: max_queue_delay_microseconds of the dynamic batcher", nonNegativeInt, 500),
  )
  .option("--json", "JSON only")
  .action(
    async (o: {
      requests: number;
      clients: number[];
      threads: number;
      workers: number;
      maxBatch: number;
      kserve: boolean;
      queueDelayUs: number;
      json?: boolean;
    }) => {
      printResult(
        await benchServe({
          requests: o.requests,
          clients: o.clients,
          threads: o.threads,
          workers: o.workers,
          maxBatch: o.maxBatch,
          kserve: o.kserve,
          queueDelayUs: o.queueDelayUs,
        }),
        { json: true },
      );
    },
  );

program
  .command("loop")
  .description(
    "the real-time control loop at 50 and 200 Hz, default transformer head inferring concurrently in a worker thread, rtc mode",
  )
  .addOption(option("--seconds <s>", "seconds per rate", positiveFloat, 60))
  .addOption(option("--rates <list>", "control rates, Hz, comma-separated", list(positiveFloat), [50, 200]))
  .addOption(option("--threads <n>", "onnxruntime intra-op threads of the inference worker", positiveInt, 1))
  .addOption(option("--execution-horizon <n>", "rtc execution horizon s (default H/2)", positiveInt))
  .option("--log", "also run each rate with an MCAP run log and report the jitter difference")
  .addOption(realtimePriorityOption())
  .option("--json", "JSON only")
  .action(
    async (o: {
      seconds: number;
      rates: number[];
      threads: number;
      executionHorizon?: number;
      log?: boolean;
      realtimePriority?: number;
      json?: boolean;
    }) => {
      printResult(
        await benchLoop({
          seconds: o.seconds,
          rates: o.rates,
          threads: o.threads,
          log: o.log ?? false,
          ...(o.realtimePriority !== undefined ? { realtimePriority: o.realtimePriority } : {}),
          ...(o.executionHorizon !== undefined ? { executionHorizon: o.executionHorizon } : {}),
        }),
        { json: true },
      );
    },
  );

program
  .command("video")
  .description("decode a real 640x480 AV1 camera episode to 96 px (target <= 3 s) and render the simulated camera")
  .addOption(option("--runs <n>", "timed decodes", positiveInt, 3))
  .addOption(option("--width <px>", "decode width", positiveInt, 96))
  .addOption(option("--height <px>", "decode height", positiveInt, 72))
  .addOption(option("--frames <n>", "timed camera renders", positiveInt, 200))
  .option("--json", "JSON only")
  .action(async (o: { runs: number; width: number; height: number; frames: number; json?: boolean }) => {
    printResult(await benchVideo(o), { json: true });
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.stderr.write(`bench: ${(err as Error).message}\n`);
  process.exitCode = 1;
}
