/** A tiny exported policy (test/policy/onnx/fixture.ts) served by a ThreadedPolicy, plus a direct OnnxPolicy to compare with. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { exportOnnx } from "../../../policy/onnx/export.ts";
import { OnnxPolicy } from "../../../policy/runtime/onnx-policy.ts";
import { ThreadedPolicy } from "../../../policy/runtime/threaded.ts";
import { tinyModel, writeTinyCheckpoint } from "../../policy/onnx/fixture.ts";

/** A served tiny policy: H=4, A=3, features `observation.state` [4] and `observation.embedding` [2, 3]. */
export interface ServedFixture {
  run: string;
  served: ThreadedPolicy;
  direct: OnnxPolicy;
  /** Expected chunks for (observation, seed) pairs, in one batched run each 64. */
  expected(items: Array<{ obs: Record<string, Float32Array>; seed: number }>): Promise<Float32Array[]>;
  dispose(): Promise<void>;
}

/** Builds, exports and loads the tiny policy (fps 10). */
export async function servedFixture(): Promise<ServedFixture> {
  await tf.setBackend("cpu");
  const root = mkdtempSync(join(tmpdir(), "actionflow-serve-"));
  const run = join(root, "run");
  await writeTinyCheckpoint(run, tinyModel("transformer"));
  await exportOnnx(run, { steps: 4, solver: "euler" });
  const served = await ThreadedPolicy.start(run, { threads: 1, fps: 10 });
  const direct = await OnnxPolicy.load(run, { threads: 1 });
  return {
    run,
    served,
    direct,
    async expected(items) {
      const out: Float32Array[] = [];
      for (let i = 0; i < items.length; i += 64) {
        const part = items.slice(i, i + 64);
        const res = await direct.sampleBatch(part.map((p) => ({ observation: p.obs, options: { seed: p.seed } })));
        for (const r of res) {
          if (r instanceof Error) throw r;
          out.push(r);
        }
      }
      return out;
    },
    async dispose() {
      await served.close();
      await direct.release();
      rmSync(root, { recursive: true, force: true });
    },
  };
}
