import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadCheckpoint } from "../../policy/checkpoint/checkpoint.ts";
import { encodeSafetensors } from "../../policy/checkpoint/safetensors.ts";
import { exportOnnx } from "../../policy/onnx/export.ts";
import { decodeModel, metadataOf } from "../../policy/onnx/proto.ts";
import { Rng } from "../../policy/random.ts";
import { OnnxPolicy } from "../../policy/runtime/onnx-policy.ts";
import { PromptEncoder } from "../../policy/text/encoder.ts";
import { LeRobotWriter } from "../../datasets/lerobot/writer.ts";
import { trainRun, type TrainRunOptions } from "../../training/run.ts";
import type { RunFile } from "../../training/run/run-file.ts";
import { removeDir, tempDir } from "../datasets/lerobot/helpers.ts";
import { writeTextEncoder } from "../policy/text/fixture.ts";

const TASKS = ["go up", "Go down."];
let dir: string;
let dataset: string;

/** Episodes whose states look alike and whose actions are +1 (go up) or -1 (go down) in every dim. */
async function writeDataset(out: string): Promise<void> {
  const w = await LeRobotWriter.create(out, {
    fps: 10,
    features: {
      "observation.state": { dtype: "float32", shape: [2] },
      action: { dtype: "float32", shape: [2] },
    },
  });
  const rng = new Rng(3);
  const length = 12;
  for (let e = 0; e < 12; e++) {
    const sign = e % 2 === 0 ? 1 : -1;
    const state = Float32Array.from({ length: 2 * length }, () => rng.normal());
    const action = Float32Array.from({ length: 2 * length }, () => sign + 0.05 * rng.normal());
    await w.addEpisode({ task: TASKS[e % 2]!, length, frames: { "observation.state": state, action } });
  }
  await w.finish();
}

const run = (out: string, over: Partial<TrainRunOptions> = {}): TrainRunOptions => ({
  dataset,
  out: join(dir, out),
  config: {
    objective: "regression",
    transformer: { width: 32, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 8 },
    actionDim: 2,
  },
  steps: 150,
  batch: 16,
  horizon: 2,
  valEpisodes: "2",
  checkpointEvery: 150,
  backend: "ort",
  workers: 1,
  ...over,
});

const mean = (x: Float32Array): number => x.reduce((a, b) => a + b, 0) / x.length;

beforeAll(async () => {
  dir = await tempDir("text-prompt");
  dataset = join(dir, "data");
  await writeDataset(dataset);
});
afterAll(async () => {
  await removeDir(dir);
});

describe("training on prompt embeddings", () => {
  it("--task-embeddings: feeds each task's vector from the file, stores the table, and the export follows it", async () => {
    const file = join(dir, "prompts.safetensors");
    const up = Float32Array.of(1, 0, 0.5, -0.5);
    const down = Float32Array.of(0, 1, -0.5, 0.5);
    writeFileSync(
      file,
      encodeSafetensors(
        new Map([
          ["go down", { shape: [4], data: down }],
          ["go up", { shape: [4], data: up }],
          ["stay", { shape: [4], data: new Float32Array(4) }],
        ]),
      ),
    );
    const r = await trainRun(run("table", { taskEmbeddings: file }));
    const ck = await loadCheckpoint(r.run);
    expect(ck.config.obs[1]).toMatchObject({
      name: "prompt",
      key: "task_index",
      shape: [4],
      prompts: TASKS,
      promptEmbedding: { source: "table", vectors: [Array.from(up), Array.from(down)] },
    });
    expect(ck.normalization.obs["prompt"]).toMatchObject({ mode: "identity", stats: { mean: [0.5, 0.5, 0, 0] } });
    const stored = JSON.parse(readFileSync(join(r.run, "run.json"), "utf8")) as RunFile;
    expect(stored.input.obs.at(-1)?.promptEmbedding?.source).toBe("table");
    await exportOnnx(r.run);
    const policy = await OnnxPolicy.load(r.run, { threads: 1 });
    try {
      expect(policy.prompts).toEqual(TASKS);
      expect(policy.anyPrompt).toBeUndefined();
      const state = Float32Array.of(0.2, -0.4);
      expect(mean(await policy.sampleChunk({ state }, { prompt: "GO UP" }))).toBeGreaterThan(0.5);
      expect(mean(await policy.sampleChunk({ state }, { prompt: "go down" }))).toBeLessThan(-0.5);
      await expect(policy.sampleChunk({ state }, { prompt: "go upward" })).rejects.toThrow(
        /unknown prompt "go upward": the policy knows "go up", "Go down\."/,
      );
    } finally {
      await policy.release();
    }
  });

  it("--task-embeddings: a dataset task the file lacks is an error naming it and the file", async () => {
    const file = join(dir, "partial.safetensors");
    writeFileSync(file, encodeSafetensors(new Map([["go up", { shape: [2], data: Float32Array.of(1, 0) }]])));
    await expect(trainRun(run("partial", { taskEmbeddings: file, steps: 2 }))).rejects.toThrow(
      `${file}: no embedding for the dataset task "Go down." (the file has "go up")`,
    );
    await expect(trainRun(run("off", { taskEmbeddings: file, prompt: "off", steps: 2 }))).rejects.toThrow(
      /--task-embeddings embeds the task prompt, which --no-prompt \(prompt 'off'\) drops/,
    );
  });

  it("--text-encoder: embeds the tasks with it, keeps it in the run, and the export takes any prompt", async () => {
    const files = writeTextEncoder(join(dir, "enc"), { dim: 8, seed: 2 });
    const r = await trainRun(run("encoder", { textEncoder: files }));
    expect(existsSync(join(r.run, "text-encoder", "model.onnx"))).toBe(true);
    expect(readFileSync(join(r.run, "text-encoder", "tokenizer.json"), "utf8")).toBe(
      readFileSync(files.tokenizer, "utf8"),
    );
    const ck = await loadCheckpoint(r.run);
    const e = ck.config.obs[1]!.promptEmbedding!;
    expect(e).toMatchObject({ source: "encoder", normalize: true });
    const enc = await PromptEncoder.load(files);
    const want = await enc.embed(TASKS);
    await enc.release();
    expect(e.vectors.map((v) => Array.from(Float32Array.from(v)))).toEqual(want.map((v) => Array.from(v)));
    const exported = await exportOnnx(r.run);
    const meta = metadataOf(decodeModel(new Uint8Array(readFileSync(exported.onnx)), exported.onnx));
    expect(JSON.parse(meta["actionflow.prompts"]!)).toMatchObject({ embedding: { source: "encoder", dim: 8 } });
    const policy = await OnnxPolicy.load(r.run, { threads: 1 });
    try {
      expect(policy.anyPrompt).toBe(true);
      const state = Float32Array.of(0.2, -0.4);
      expect(mean(await policy.sampleChunk({ state }, { prompt: "go up" }))).toBeGreaterThan(0.5);
      expect(mean(await policy.sampleChunk({ state }, { prompt: "Go down." }))).toBeLessThan(-0.5);
      // an unseen prompt is embedded, not refused
      const unseen = await policy.sampleChunk({ state }, { prompt: "please go up now" });
      expect(unseen.length).toBe(policy.horizon * policy.actionDim);
      expect(unseen.every((v) => Number.isFinite(v))).toBe(true);
    } finally {
      await policy.release();
    }
    await expect(
      trainRun(run("both", { textEncoder: files, taskEmbeddings: join(dir, "prompts.safetensors"), steps: 2 })),
    ).rejects.toThrow(/--task-embeddings and --text-encoder are two sources of the prompt embedding: give one/);
  });
});
