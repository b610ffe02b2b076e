/** Test helpers: run an `OnnxOps` graph in onnxruntime-node, and the Debian ONNX checker. */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { CONTRIB_DOMAIN, type OnnxOps } from "../../../policy/onnx/ops.ts";
import { IR_VERSION, OPSET, decodeModel, encodeModel, type ModelProto } from "../../../policy/onnx/proto.ts";

/** Wraps the graph of `ops` into an opset-17 model (importing the contrib domain when a node uses it). */
export function modelOf(ops: OnnxOps): ModelProto {
  const graph = ops.graph("test");
  const contrib = graph.node.some((n) => n.domain === CONTRIB_DOMAIN);
  return {
    irVersion: IR_VERSION,
    opsetImport: [{ domain: "", version: OPSET }, ...(contrib ? [{ domain: CONTRIB_DOMAIN, version: 1 }] : [])],
    producerName: "test",
    graph,
  };
}

/** Runs a model on float32 feeds `{name: [data, dims]}` and returns every output's data. */
export async function runModel(
  model: ModelProto | Uint8Array,
  feeds: Record<string, [Float32Array | BigInt64Array, number[]]>,
): Promise<Record<string, { data: Float32Array; dims: readonly number[] }>> {
  const bytes = model instanceof Uint8Array ? model : encodeModel(model);
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const input: Record<string, ort.Tensor> = {};
  for (const [name, [data, dims]] of Object.entries(feeds)) {
    input[name] =
      data instanceof BigInt64Array ? new ort.Tensor("int64", data, dims) : new ort.Tensor("float32", data, dims);
  }
  const out = await session.run(input);
  await session.release();
  const res: Record<string, { data: Float32Array; dims: readonly number[] }> = {};
  for (const [k, v] of Object.entries(out)) res[k] = { data: v.data as Float32Array, dims: v.dims };
  return res;
}

/** Max |a - b| over two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const PY = "/usr/bin/python3";

/** Why the ONNX checker cannot run here, or undefined when `python3 -c 'import onnx'` works. */
export function onnxCheckerUnavailable(): string | undefined {
  const r = spawnSync(PY, ["-c", "import onnx"], { encoding: "utf8" });
  if (r.error) return `${PY} not runnable: ${r.error.message}`;
  if (r.status !== 0) return `python3-onnx not installed (${r.stderr.trim().split("\n").pop()})`;
  return undefined;
}

/** Runs `onnx.checker.check_model(full_check=True)` on a file; returns the checker's error or "". */
export function checkOnnxFile(path: string): string {
  const r = spawnSync(
    PY,
    [
      "-c",
      "import onnx,sys; m=onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True); print('ok')",
      path,
    ],
    { encoding: "utf8" },
  );
  return r.status === 0 && r.stdout.trim() === "ok" ? "" : (r.stderr || r.stdout || `exit ${r.status}`).trim();
}

/**
 * The graph onnxruntime runs after its optimisations (constant folding, fusions), as it saves it
 * to `<dir>/<name>.onnx`.
 */
export async function optimizedModel(model: ModelProto, dir: string, name: string): Promise<ModelProto> {
  const path = join(dir, `${name}.onnx`);
  const session = await ort.InferenceSession.create(encodeModel(model), {
    graphOptimizationLevel: "all",
    optimizedModelFilePath: path,
    logSeverityLevel: 3,
  });
  await session.release();
  return decodeModel(new Uint8Array(readFileSync(path)), path);
}
