/**
 * `actionflow distill reflow` end to end on 10 reach demos: a tiny teacher, a distillation killed
 * after its first checkpoint and resumed (same weights as a straight run), then the student
 * exported with 1 step: its chunks are closer to the teacher's many-step chunks than the teacher's
 * own 1-step chunks are, and it runs closed loop through `sim eval`.
 */
import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pathExists } from "../../policy/io/files.ts";
import { exportOnnx } from "../../policy/onnx/export.ts";
import { OnnxPolicy } from "../../policy/runtime/onnx-policy.ts";
import { collect } from "../../sim/collect.ts";
import { useBackend } from "../../training/backend/registry.ts";
import { readPairs } from "../../training/distill/pairs.ts";
import { PAIRS_FILE, reflowRun } from "../../training/distill/reflow.ts";
import { trainRun } from "../../training/run.ts";
import { createWindowSource } from "../../training/windows.ts";
import { openDataset } from "../../datasets/open.ts";
import { readRunFile } from "../../training/run/run-file.ts";

const run = promisify(execFile);
const tsx = join(process.cwd(), "node_modules", ".bin", "tsx");
const main = join(process.cwd(), "cli", "main.ts");

let dir: string;
let data: string;
let teacher: string;
beforeAll(async () => {
  await useBackend("wasm");
  dir = await mkdtemp(join(tmpdir(), "actionflow-cli-distill-"));
  data = join(dir, "reach");
  await collect({ task: "reach", episodes: 10, seed: 0, out: data });
  teacher = join(dir, "teacher");
  await trainRun({
    dataset: data,
    out: teacher,
    arch: "mlp",
    config: { mlp: { width: 64, depth: 2, timeEmbedDim: 16 } },
    steps: 150,
    batch: 16,
    horizon: 8,
    valEpisodes: "8:10",
    checkpointEvery: 150,
    backend: "wasm",
    workers: 1,
  });
}, 300_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Spawned {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[]): { done: Promise<Spawned>; kill: () => void } {
  const child = spawn(process.execPath, ["cli/bin.js", ...args], {
    cwd: process.cwd(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Spawned>((res, rej) => {
    child.on("error", rej);
    child.on("close", (code, signal) => res({ code, signal, stdout, stderr }));
  });
  return { done, kill: () => child.kill("SIGKILL") };
}

const lastJson = (s: string): Record<string, unknown> =>
  JSON.parse(s.trimEnd().split("\n").pop()!) as Record<string, unknown>;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const SETTINGS = [
  "--pairs",
  "96",
  "--val-pairs",
  "16",
  "--teacher-steps",
  "10",
  "--steps",
  "300",
  "--seed",
  "5",
  "--lr",
  "0.001",
];

describe("actionflow distill reflow (real CLI)", () => {
  it("is killed after its first checkpoint, resumes to the weights of a straight run, and gives a better 1-step policy", async () => {
    const out = join(dir, "student");
    const first = cli([
      "distill",
      "reflow",
      "--teacher",
      teacher,
      "--dataset",
      data,
      "--out",
      out,
      ...SETTINGS,
      "--checkpoint-every",
      "20",
      "--backend",
      "wasm",
      "--workers",
      "1",
      "--json",
    ]);
    const latest = join(out, "checkpoints", "latest.json");
    const deadline = Date.now() + 120_000;
    while (!(await pathExists(latest)) && Date.now() < deadline) await sleep(25);
    expect(await pathExists(latest)).toBe(true);
    await sleep(300);
    first.kill();
    const killed = await first.done;
    expect(killed.signal === "SIGKILL" || killed.code === 0, killed.stderr).toBe(true);
    const killedAt = (JSON.parse(await readFile(latest, "utf8")) as { step: number }).step;
    expect(await pathExists(join(out, PAIRS_FILE))).toBe(true);

    // A run.json-less folder: `train --resume` refuses it rather than training it on the data.
    const wrong = await cli(["train", "--out", out, "--resume"]).done;
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/run\.json/);
    // Other settings are refused on resume.
    const other = await cli(["distill", "reflow", "--out", out, "--resume", "--teacher-steps", "4"]).done;
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/cannot resume with different settings: teacherSteps: distill\.json has 10, given 4/);

    const resumed = await cli([
      "distill",
      "reflow",
      "--out",
      out,
      "--resume",
      "--checkpoint-every",
      "20",
      "--backend",
      "wasm",
      "--workers",
      "1",
      "--json",
    ]).done;
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/pairs: 112 from the cache/);
    const r = lastJson(resumed.stdout);
    expect(r).toMatchObject({
      steps: 300,
      resumedFrom: killedAt,
      pairs: 96,
      valPairs: 16,
      teacherSteps: 10,
      pairSeconds: 0,
    });
    // The student fits the straight training couplings well below where the teacher starts on them.
    expect(Number.isFinite(r["valLoss"])).toBe(true);
    expect(r["trainLoss"] as number).toBeLessThan(0.6 * (r["valLossAtStart"] as number));
    expect((await readdir(join(out, "checkpoints"))).filter((n) => n.startsWith("."))).toEqual([]);

    // The same distillation uninterrupted, in process: bit-identical weights and moments.
    await useBackend("wasm");
    const straight = await reflowRun({
      teacher,
      out: join(dir, "straight"),
      pairs: 96,
      valPairs: 16,
      teacherSteps: 10,
      steps: 300,
      seed: 5,
      lr: 0.001,
      checkpointEvery: 300,
      backend: "wasm",
      workers: 1,
    });
    expect(straight.valLoss).toBe(r["valLoss"]);
    for (const f of ["model.safetensors", "optimizer.safetensors"]) {
      const a = await readFile(join(straight.checkpoint, f));
      const b = await readFile(join(out, "checkpoints", "step-000300", f));
      expect(a.equals(b), f).toBe(true);
    }

    // A resume may extend the run; distill.json records the new length.
    const more = await cli([
      "distill",
      "reflow",
      "--out",
      out,
      "--resume",
      "--steps",
      "305",
      "--backend",
      "wasm",
      "--workers",
      "1",
      "--json",
    ]).done;
    expect(more.code, more.stderr).toBe(0);
    expect(lastJson(more.stdout)).toMatchObject({ steps: 305, resumedFrom: 300 });
    const stored305 = JSON.parse(await readFile(join(out, "distill.json"), "utf8")) as {
      settings: { steps: number; decaySteps: number };
    };
    expect(stored305.settings).toMatchObject({ steps: 305, decaySteps: 300 });

    // 1-step student vs 1-step teacher, measured against the teacher's 10-step chunks on the
    // training pairs (raw action units): the student's one step lands on the chunk its noise was
    // coupled with, the teacher's one step on the conditional mean. (With 96 pairs the student does
    // not generalise to fresh noise: that takes many pairs.) Seeded figures on this run: student
    // 1-step MSE 0.00313, teacher 1-step 0.00467 (0.67x); after 120 steps it was 0.93x (EMA lag).
    const exported = await run(tsx, [main, "export", out, "--steps", "1", "--json"]);
    expect(lastJson(exported.stdout)).toMatchObject({ steps: 1, solver: "euler", nfe: 1 });
    const t1 = await exportOnnx(teacher, { steps: 1, out: join(dir, "teacher-1.onnx") });
    const pairsFile = join(out, PAIRS_FILE);
    const rf = await readRunFile(teacher);
    const opened = await openDataset(data);
    try {
      const n = Object.fromEntries(
        ["observation.state", "observation.environment_state", "action"].map((k) => [
          k,
          { scale: new Float32Array(16).fill(1), offset: new Float32Array(16) },
        ]),
      );
      const windows = {
        dataset: opened.dataset,
        obs: rf.input.obs,
        action: "action",
        horizon: 8,
        actionDim: 6,
        norms: n,
      };
      const rawTrain = await createWindowSource({ ...windows, episodes: rf.split.train });
      const rawVal = await createWindowSource({ ...windows, episodes: rf.split.val });
      const stored = JSON.parse(await readFile(join(out, "distill.json"), "utf8")) as {
        teacher: { weightsSha256: string };
      };
      const pairs = (await readPairs(pairsFile, {
        teacherSha256: stored.teacher.weightsSha256,
        teacherSteps: 10,
        teacherSolver: "euler",
        pairs: 96,
        valPairs: 16,
        seed: 5,
        horizon: 8,
        modelActionDim: 32,
        actionDim: 6,
        trainFrames: rawTrain.frames,
        valFrames: rawVal.frames,
      }))!;
      const mse = async (onnx: string): Promise<number> => {
        const p = await OnnxPolicy.load(onnx);
        let sum = 0;
        for (let i = 0; i < 16; i++) {
          const w = rawTrain.batchAt([pairs.train.positions[i]!]);
          const c = await p.sampleChunk(
            { state: w.obs["state"]!, env: w.obs["env"]! },
            { noise: pairs.train.noise.slice(i * 8 * 32, (i + 1) * 8 * 32) },
          );
          for (let k = 0; k < c.length; k++) sum += (c[k]! - pairs.train.actions[i * 48 + k]!) ** 2;
        }
        await p.release();
        return sum / (16 * 48);
      };
      const student1 = await mse(join(out, "policy.onnx"));
      const teacher1 = await mse(t1.onnx);
      expect(student1, `student ${student1} teacher ${teacher1}`).toBeLessThan(0.75 * teacher1);
    } finally {
      opened.dataset.close();
    }

    // It evaluates closed loop like any run.
    const e = await run(tsx, [
      main,
      "sim",
      "eval",
      "--task",
      "reach",
      "--policy",
      out,
      "--episodes",
      "2",
      "--seed",
      "1000",
      "--json",
    ]);
    const res = lastJson(e.stdout);
    expect(res["episodes"]).toBe(2);
    expect(res["outDir"]).toBe(join(out, "eval", "reach"));
    expect(typeof res["pc_success"]).toBe("number");
    expect(res["avg_max_reward"] as number).toBeGreaterThan(0);
  }, 600_000);

  it("trains the student in onnxruntime with --backend ort (auto's choice without tfjs-node) as tfjs does", async () => {
    const settings = { teacher, pairs: 96, valPairs: 16, teacherSteps: 10, steps: 60, seed: 5, lr: 0.001 };
    const wasm = await reflowRun({ ...settings, out: join(dir, "student-wasm"), backend: "wasm", workers: 1 });
    const ort = await reflowRun({ ...settings, out: join(dir, "student-ort"), backend: "ort" });
    expect(ort.backend).toBe("ort");
    expect(wasm.backend).toBe("wasm");
    expect(ort.params).toBe(wasm.params);
    // The same teacher weights on the same validation pairs, then the same 60 steps in two runtimes.
    expect(Math.abs(ort.valLossAtStart - wasm.valLossAtStart) / wasm.valLossAtStart).toBeLessThan(1e-4);
    expect(Math.abs(ort.valLoss - wasm.valLoss) / wasm.valLoss).toBeLessThan(1e-3);
    const state = JSON.parse(await readFile(join(ort.checkpoint, "train_state.json"), "utf8")) as { backend?: string };
    expect(state.backend).toBe("ort");
    await expect(
      reflowRun({ ...settings, out: join(dir, "student-workers"), backend: "ort", workers: 2 }),
    ).rejects.toThrow(/--workers 2: gradient workers are tfjs only/);
  }, 300_000);
});
