/**
 * Starts the test KServe v2 server on a Triton model repository (`actionflow export <run> --triton
 * <repo>`): `npx tsx test/bridge/start-kserve.ts --repo <repo> --port <p>` serves HTTP/REST on p and
 * gRPC on p + 1, as Triton does on 8000 and 8001 (default); with `--port 0` both ports are chosen
 * free. Prints one JSON line on stdout once both are bound (`{"http": url, "grpc": url, "httpPort",
 * "grpcPort", "models"}`; the models may still be loading), and `stopped {"http", "grpc", "errors",
 * "batches", "meanBatch", "computeMs"}` on stderr when stopped (SIGINT/SIGTERM). Options: `--host` (default 127.0.0.1), `--load-delay-ms` (models stay loading
 * that long), `--infer-delay-ms` (a slow server), `--no-config` (no model-configuration endpoint),
 * `--threads` (onnxruntime threads per model).
 */
import { parseArgs } from "node:util";
import { KServeTestServer } from "./kserve/server.ts";

const { values } = parseArgs({
  options: {
    repo: { type: "string" },
    port: { type: "string", default: "8000" },
    host: { type: "string", default: "127.0.0.1" },
    "load-delay-ms": { type: "string", default: "0" },
    "infer-delay-ms": { type: "string", default: "0" },
    "no-config": { type: "boolean", default: false },
    threads: { type: "string", default: "1" },
  },
});
const int = (flag: string, text: string, max = Number.MAX_SAFE_INTEGER): number => {
  const v = Number(text);
  if (!Number.isInteger(v) || v < 0 || v > max)
    throw new Error(`--${flag}: expected an integer in 0..${max}, got ${text}`);
  return v;
};
if (!values.repo) throw new Error("--repo <model repository> is required");
const port = int("port", values.port, 65534);
const server = await KServeTestServer.start({
  repo: values.repo,
  host: values.host,
  httpPort: port,
  grpcPort: port === 0 ? 0 : port + 1,
  loadDelayMs: int("load-delay-ms", values["load-delay-ms"]),
  inferDelayMs: int("infer-delay-ms", values["infer-delay-ms"]),
  configEndpoint: !values["no-config"],
  threads: Math.max(1, int("threads", values.threads)),
});
process.stdout.write(
  JSON.stringify({
    http: server.httpUrl,
    grpc: server.grpcUrl,
    httpPort: server.httpPort,
    grpcPort: server.grpcPort,
    models: Object.keys(server.states()),
  }) + "\n",
);
const stop = (): void => {
  void server.close().then(() => {
    const batches = Object.values(server.batchSizes()).flat();
    const summary = {
      ...server.counts,
      batches: batches.length,
      meanBatch: batches.length > 0 ? batches.reduce((a, b) => a + b, 0) / batches.length : 0,
      computeMs: server.computeMs(),
    };
    process.stderr.write(`stopped ${JSON.stringify(summary)}\n`);
    process.exit(0);
  });
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
