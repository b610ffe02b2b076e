import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { exportOnnx } from "../../../policy/onnx/export.ts";
import { decodeModel, metadataOf } from "../../../policy/onnx/proto.ts";
import { CONTRIB_DOMAIN } from "../../../policy/onnx/ops.ts";
import { checkOnnxFile, onnxCheckerUnavailable } from "./helpers.ts";
import { tinyModel, writeTinyCheckpoint } from "./fixture.ts";

const root = mkdtempSync(join(tmpdir(), "actionflow-export-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const checker = onnxCheckerUnavailable();

describe("exportOnnx", () => {
  it("writes both graphs of a run's latest checkpoint with metadata", async () => {
    const run = join(root, "run-t");
    const m = tinyModel("transformer");
    const ckpt = await writeTinyCheckpoint(run, m);
    const r = await exportOnnx(run, { steps: 4, solver: "midpoint" });
    expect(r).toMatchObject({
      onnx: join(run, "policy.onnx"),
      velocityOnnx: join(run, "policy.velocity.onnx"),
      opset: 17,
      steps: 4,
      solver: "midpoint",
      nfe: 8,
      checkpoint: ckpt,
      arch: "transformer",
      objective: "flow",
      horizon: 4,
      actionDim: 3,
      modelActionDim: 5,
      inputs: ["obs.state", "obs.emb", "prefix", "prefix_len", "noise"],
    });
    expect(r.bytes).toBe(statSync(r.onnx).size);
    const model = decodeModel(readFileSync(r.onnx));
    expect(model.irVersion).toBe(8);
    const meta = metadataOf(model);
    expect(meta["actionflow.graph"]).toBe("sample");
    expect(meta["actionflow.solver"]).toBe("midpoint");
    expect(meta["actionflow.steps"]).toBe("4");
    expect(meta["actionflow.version"]).toMatch(/^\d+\.\d+\.\d+/);
    expect(JSON.parse(meta["actionflow.config"]!)).toEqual(m.config);
    expect(JSON.parse(meta["actionflow.normalization"]!).action.stats.mean).toEqual(m.stats.action.mean);
    expect(JSON.parse(meta["actionflow.features"]!).map((f: { key: string }) => f.key)).toEqual([
      "observation.state",
      "observation.embedding",
    ]);
    expect(meta["actionflow.weights_sha256"]).toMatch(/^[0-9a-f]{64}$/);
    expect(metadataOf(decodeModel(readFileSync(r.velocityOnnx)))["actionflow.graph"]).toBe("velocity");
    if (checker) console.warn(`ONNX checker skipped: ${checker}`);
    else {
      expect(checkOnnxFile(r.onnx)).toBe("");
      expect(checkOnnxFile(r.velocityOnnx)).toBe("");
    }
  });

  it("writes fused kernels by default and standard operators with kernels: plain, both passing the checker", async () => {
    const run = join(root, "run-kernels");
    await writeTinyCheckpoint(run, tinyModel("transformer"));
    const fused = await exportOnnx(run, { steps: 2 });
    const plain = await exportOnnx(run, { steps: 2, kernels: "plain", out: join(run, "policy.plain.onnx") });
    expect([fused.kernels, plain.kernels]).toEqual(["fused", "plain"]);
    for (const [r, contrib] of [
      [fused, true],
      [plain, false],
    ] as const)
      for (const path of [r.onnx, r.velocityOnnx]) {
        const model = decodeModel(readFileSync(path));
        expect(metadataOf(model)["actionflow.kernels"]).toBe(r.kernels);
        expect(model.opsetImport.some((o) => o.domain === CONTRIB_DOMAIN)).toBe(contrib);
        expect(model.graph.node.some((n) => n.domain === CONTRIB_DOMAIN)).toBe(contrib);
        if (!checker) expect(checkOnnxFile(path)).toBe("");
      }
  });

  it("exports a regression head with one evaluation and no noise input", async () => {
    const run = join(root, "run-reg");
    await writeTinyCheckpoint(run, tinyModel("mlp", { objective: "regression" }));
    const out = join(root, "elsewhere", "reg.onnx");
    const r = await exportOnnx(run, { out });
    expect(r).toMatchObject({
      onnx: out,
      velocityOnnx: join(root, "elsewhere", "reg.velocity.onnx"),
      steps: 1,
      solver: "none",
      nfe: 1,
    });
    expect(r.inputs).not.toContain("noise");
  });

  it("names what is wrong: no checkpoint, unknown solver, weights that do not fit", async () => {
    await expect(exportOnnx(join(root, "nothing-here"))).rejects.toThrow(/no checkpoint found/);
    const run = join(root, "run-m");
    const m = tinyModel("mlp");
    await writeTinyCheckpoint(run, m);
    await expect(exportOnnx(run, { solver: "dopri5" })).rejects.toThrow(
      /unknown ODE solver 'dopri5'.*euler, midpoint, heun, rk4/,
    );
    const w = new Map(m.weights);
    w.set("blocks.0.fc1.weight", { shape: [3, 3], data: new Float32Array(9) });
    w.set("stray.weight", { shape: [1], data: new Float32Array(1) });
    await writeTinyCheckpoint(join(root, "run-bad"), { ...m, weights: w });
    await expect(exportOnnx(join(root, "run-bad"))).rejects.toThrow(
      /'blocks\.0\.fc1\.weight' has shape \[3,3\], the network needs \[24,24\]/,
    );
    w.set("blocks.0.fc1.weight", m.weights.get("blocks.0.fc1.weight")!);
    await writeTinyCheckpoint(join(root, "run-bad"), { ...m, weights: w }, 20);
    await expect(exportOnnx(join(root, "run-bad"))).rejects.toThrow(/stray\.weight/);
  });

  it("`actionflow export <run> --json` prints the result as the last stdout line", async () => {
    const run = join(root, "run-cli");
    await writeTinyCheckpoint(run, tinyModel("mlp"));
    const r = spawnSync(
      process.execPath,
      ["--import", "tsx", "cli/main.ts", "export", run, "--steps", "3", "--solver", "rk4", "--json"],
      { encoding: "utf8", cwd: process.cwd() },
    );
    expect(r.status).toBe(0);
    const last = JSON.parse(r.stdout.trim().split("\n").pop()!);
    expect(last).toMatchObject({
      onnx: join(run, "policy.onnx"),
      opset: 17,
      steps: 3,
      solver: "rk4",
      velocityOnnx: join(run, "policy.velocity.onnx"),
    });
    expect(last.bytes).toBeGreaterThan(1000);
    expect(existsSync(last.onnx)).toBe(true);
    const bad = spawnSync(process.execPath, ["--import", "tsx", "cli/main.ts", "export", run, "--steps", "0"], {
      encoding: "utf8",
    });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/--steps: expected a positive integer, got '0'/);
  });
});
