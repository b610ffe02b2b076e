import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildSampleModel, buildVelocityModel } from "../../../policy/onnx/graphs.ts";
import { encodeModel } from "../../../policy/onnx/proto.ts";
import { checkOnnxFile, onnxCheckerUnavailable } from "./helpers.ts";
import { tinyModel } from "./fixture.ts";

const why = onnxCheckerUnavailable();
if (why) console.warn(`skipping the official ONNX checker tests: ${why}`);
const dir = mkdtempSync(join(tmpdir(), "actionflow-onnx-check-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(why !== undefined)("official ONNX checker (python3-onnx, full_check)", () => {
  for (const arch of ["transformer", "mlp"] as const) {
    for (const objective of ["flow", "regression"] as const) {
      it(`accepts the ${arch} ${objective} sample and velocity graphs`, () => {
        const m = tinyModel(arch, { objective });
        const sample = join(dir, `${arch}-${objective}.onnx`);
        writeFileSync(
          sample,
          encodeModel(buildSampleModel(m.head, m.weights, m.features, m.norms, { steps: 2, solver: "heun" }).model),
        );
        expect(checkOnnxFile(sample)).toBe("");
        const velocity = join(dir, `${arch}-${objective}.velocity.onnx`);
        writeFileSync(velocity, encodeModel(buildVelocityModel(m.head, m.weights, m.features).model));
        expect(checkOnnxFile(velocity)).toBe("");
      });
    }
  }

  it("reports a broken model", () => {
    const bad = join(dir, "bad.onnx");
    const m = tinyModel("mlp");
    const model = buildVelocityModel(m.head, m.weights, m.features).model;
    model.graph.node[0]!.opType = "NoSuchOp";
    writeFileSync(bad, encodeModel(model));
    expect(checkOnnxFile(bad)).toMatch(/NoSuchOp/);
  });
});
