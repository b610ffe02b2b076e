import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { OnnxPolicy } from "../../policy/runtime/onnx-policy.ts";
import { Rng } from "../../policy/random.ts";

const dir = mkdtempSync(join(tmpdir(), "actionflow-cli-quantize-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cli = (args: string[]): Promise<{ stdout: string; stderr: string }> =>
  promisify(execFile)("npx", ["tsx", "cli/main.ts", ...args], { cwd: process.cwd(), timeout: 120_000 });

describe("actionflow export --quantize int8", () => {
  it("writes policy.int8.onnx beside the run (not policy.onnx), prints one JSON object last, and the policy runs", async () => {
    const run = join(dir, "reach");
    cpSync("examples/policies/reach", run, { recursive: true });
    const r = await cli(["export", run, "--quantize", "int8", "--steps", "4", "--kernels", "plain", "--json"]);
    const res = JSON.parse(r.stdout.trimEnd().split("\n").pop()!) as {
      onnx: string;
      velocityOnnx: string;
      kernels: string;
      quantization: string;
      steps: number;
      quantized: { matmuls: number; weights: number; skipped: unknown[] };
    };
    expect(res.onnx).toBe(join(run, "policy.int8.onnx"));
    expect(res.velocityOnnx).toBe(join(run, "policy.int8.velocity.onnx"));
    expect(res.quantization).toBe("int8");
    expect(res.kernels).toBe("plain");
    expect(res.steps).toBe(4);
    expect(res.quantized.matmuls).toBeGreaterThan(res.quantized.weights);
    expect(res.quantized.skipped).toEqual([]);
    expect(existsSync(res.velocityOnnx)).toBe(true);
    expect(existsSync(join(run, "policy.onnx"))).toBe(false);

    const int8 = await OnnxPolicy.load(res.onnx, { threads: 1 });
    const fp32 = await OnnxPolicy.load(run, { threads: 1, steps: 4 });
    try {
      expect(int8.metadata["actionflow.quantization"]).toBe("int8");
      expect(int8.metadata["actionflow.kernels"]).toBe("plain");
      expect(fp32.metadata["actionflow.quantization"]).toBeUndefined();
      expect(fp32.metadata["actionflow.kernels"]).toBe("fused");
      const obs = { state: new Rng(1).normalArray(6), env: new Rng(2).normalArray(6) };
      const noise = new Rng(3).normalArray(int8.horizon * int8.modelActionDim);
      const a = await fp32.sampleChunk(obs, { noise });
      const b = await int8.sampleChunk(obs, { noise });
      let diff = 0;
      let scale = 0;
      for (let i = 0; i < a.length; i++) {
        diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
        scale = Math.max(scale, Math.abs(a[i]!));
      }
      expect(b.length).toBe(a.length);
      expect(diff).toBeGreaterThan(0);
      expect(diff).toBeLessThan(0.05 * scale);
    } finally {
      await int8.release();
      await fp32.release();
    }

    // Triton gets the fp32 graph, and an unknown quantisation names the valid one.
    await expect(cli(["export", run, "--quantize", "int8", "--triton", join(dir, "repo")])).rejects.toThrow(
      "--quantize and --triton exclude each other",
    );
    await expect(cli(["export", run, "--quantize", "int4"])).rejects.toThrow(/int4.*int8/s);
  });
});
