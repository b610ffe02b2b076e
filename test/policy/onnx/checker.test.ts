import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildSampleModel, buildVelocityModel } from "../../../policy/onnx/graphs.ts";
import { encodeModel } from "../../../policy/onnx/proto.ts";
import { CONTRIB_DOMAIN, KERNELS } from "../../../policy/onnx/ops.ts";
import { checkOnnxFile, onnxCheckerUnavailable } from "./helpers.ts";
import { tinyModel } from "./fixture.ts";

const why = onnxCheckerUnavailable();
if (why) console.warn(`skipping the official ONNX checker tests: ${why}`);
const dir = mkdtempSync(join(tmpdir(), "actionflow-onnx-check-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(why !== undefined)("official ONNX checker (python3-onnx, full_check)", () => {
  for (const kernels of KERNELS)
    for (const arch of ["transformer", "mlp"] as const) {
      for (const objective of ["flow", "regression"] as const) {
        it(`accepts the ${arch} ${objective} sample and velocity graphs (${kernels} kernels)`, () => {
          const m = tinyModel(arch, { objective });
          const sample = join(dir, `${arch}-${objective}-${kernels}.onnx`);
          const opts = { steps: 2, solver: "heun" as const, kernels };
          writeFileSync(sample, encodeModel(buildSampleModel(m.head, m.weights, m.features, m.norms, opts).model));
          expect(checkOnnxFile(sample)).toBe("");
          const velocity = join(dir, `${arch}-${objective}-${kernels}.velocity.onnx`);
          writeFileSync(velocity, encodeModel(buildVelocityModel(m.head, m.weights, m.features, { kernels }).model));
          expect(checkOnnxFile(velocity)).toBe("");
        });
      }
    }

  it("accepts the prefix-trained transformer's fused graph, which declares the com.microsoft domain", () => {
    const m = tinyModel("transformer");
    const head = { ...m.head, config: { ...m.config, rtcMaxDelay: 2 } };
    const model = buildSampleModel(head, m.weights, m.features, m.norms, { steps: 2, solver: "euler" }).model;
    const contrib = model.graph.node.filter((n) => n.domain === CONTRIB_DOMAIN).map((n) => n.opType);
    expect(new Set(contrib)).toEqual(new Set(["Attention", "MultiHeadAttention"]));
    expect(model.opsetImport).toContainEqual({ domain: CONTRIB_DOMAIN, version: 1 });
    const path = join(dir, "transformer-prefix-fused.onnx");
    writeFileSync(path, encodeModel(model));
    expect(checkOnnxFile(path)).toBe("");
  });

  it("reports a broken model", () => {
    const bad = join(dir, "bad.onnx");
    const m = tinyModel("mlp");
    const model = buildVelocityModel(m.head, m.weights, m.features).model;
    model.graph.node[0]!.opType = "NoSuchOp";
    writeFileSync(bad, encodeModel(model));
    expect(checkOnnxFile(bad)).toMatch(/NoSuchOp/);
  });
});
