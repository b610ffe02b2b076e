/**
 * The reference throughput of this machine: a plain fp32 [n, n] x [n, n] matMul in onnxruntime-node
 * (all cores), the yardstick the training and inference GFLOP/s are compared to.
 */
import * as ort from "onnxruntime-node";
import { OnnxOps } from "../policy/onnx/ops.ts";
import { IR_VERSION, OPSET, encodeModel } from "../policy/onnx/proto.ts";
import { Rng } from "../policy/random.ts";

/** Measures GFLOP/s of an `n`^3 matMul in onnxruntime over about `seconds`. */
export async function referenceGflops(n = 512, seconds = 2): Promise<number> {
  const rng = new Rng(1);
  const ops = new OnnxOps({ weights: new Map([["b", { shape: [n, n], data: rng.normalArray(n * n) }]]) });
  const a = ops.input("a", [n, n]);
  ops.output(ops.matMul(a, ops.param({ name: "b", shape: [n, n], init: { kind: "zeros" } })), "y");
  const bytes = benchModel(ops, "matmul");
  const session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: "all" });
  const feeds = { a: new ort.Tensor("float32", rng.normalArray(n * n), [n, n]) };
  for (let i = 0; i < 5; i++) await session.run(feeds);
  let runs = 0;
  let best = 0;
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    const t0 = performance.now();
    for (let i = 0; i < 5; i++) await session.run(feeds);
    const dt = (performance.now() - t0) / 5;
    best = Math.max(best, (2 * n * n * n) / (dt / 1000) / 1e9);
    runs += 5;
  }
  await session.release();
  return best;
}

/** The graph of `ops` as a plain-opset model's bytes, for timing a bench graph in onnxruntime. */
export function benchModel(ops: OnnxOps, name: string): Uint8Array {
  return encodeModel({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: "", version: OPSET }],
    producerName: "actionflow-bench",
    graph: ops.graph(name),
  });
}
