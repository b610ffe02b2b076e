import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const dir = mkdtempSync(join(tmpdir(), "actionflow-cli-triton-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cli = (args: string[]): Promise<{ stdout: string; stderr: string }> =>
  promisify(execFile)("npx", ["tsx", "cli/main.ts", ...args], { cwd: process.cwd(), timeout: 120_000 });

describe("actionflow export --triton", () => {
  it("writes the repository and prints one JSON object last; Triton-only flags without --triton are refused", async () => {
    const repo = join(dir, "repo");
    const r = await cli([
      "export",
      "examples/policies/reach",
      "--triton",
      repo,
      "--name",
      "arm",
      "--max-batch",
      "16",
      "--queue-delay-us",
      "250",
      "--gpus",
      "0,1",
      "--steps",
      "2",
      "--json",
    ]);
    const res = JSON.parse(r.stdout.trimEnd().split("\n").pop()!) as Record<string, unknown>;
    expect(res).toMatchObject({
      name: "arm",
      version: 1,
      maxBatchSize: 16,
      queueDelayUs: 250,
      gpus: [0, 1],
      horizon: 16,
    });
    expect(existsSync(join(repo, "arm", "1", "model.onnx"))).toBe(true);
    const cfg = readFileSync(join(repo, "arm", "config.pbtxt"), "utf8");
    expect(cfg).toContain('name: "arm"');
    expect(cfg).toContain("gpus: [ 0, 1 ]");
    await expect(cli(["export", "examples/policies/reach", "--gpus", "0"])).rejects.toThrow(
      "--gpus only apply with --triton <repo>",
    );
    await expect(
      cli(["export", "examples/policies/reach", "--triton", repo, "--out", join(dir, "x.onnx")]),
    ).rejects.toThrow("--out and --triton exclude each other");
  });
});
