import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { loadCheckpoint, normsFor } from "../../../policy/checkpoint/checkpoint.ts";
import { buildHead } from "../../../policy/net/network.ts";
import { TfjsOps } from "../../../policy/net/tfjs-ops.ts";
import { denormalize, normalize } from "../../../policy/normalize.ts";
import { exportOnnx } from "../../../policy/onnx/export.ts";
import { decodeModel, metadataOf } from "../../../policy/onnx/proto.ts";
import { Rng } from "../../../policy/random.ts";
import { OnnxPolicy } from "../../../policy/runtime/onnx-policy.ts";
import { ThreadedPolicy } from "../../../policy/runtime/threaded.ts";
import { sampleChunkTfjs } from "../../../policy/sampling/tfjs.ts";
import { PromptEncoder } from "../../../policy/text/encoder.ts";
import { checkOnnxFile, maxAbsDiff, onnxCheckerUnavailable } from "../onnx/helpers.ts";
import { DIM, TRAINED, tableVectorsFixture, writeEmbeddingRun } from "./text-prompt-fixture.ts";

const root = mkdtempSync(join(tmpdir(), "actionflow-text-prompt-"));
const why = onnxCheckerUnavailable();
const STATE = Float32Array.of(0.3, -1.2);

beforeAll(async () => {
  await tf.setBackend("cpu");
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The chunk the tfjs head samples for the prompt embedding `vector` (the reference of the export). */
async function tfjsChunk(run: string, vector: Float32Array, noise: Float32Array): Promise<Float32Array> {
  const ckpt = await loadCheckpoint(run);
  const norms = normsFor(ckpt.normalization, ckpt.config);
  const head = buildHead(ckpt.config);
  const ops = new TfjsOps({ seed: 0, weights: ckpt.weights, mode: "frozen" });
  const ref = tf.tidy(
    () =>
      sampleChunkTfjs(
        head,
        ops,
        { state: tf.tensor(normalize(STATE, norms.obs["state"]!), [1, 2]), prompt: tf.tensor(vector, [1, DIM]) },
        tf.tensor(noise, [1, 4, 3]),
        { steps: 3 },
      ).dataSync() as Float32Array,
  );
  ops.dispose();
  return denormalize(ref, norms.action);
}

describe.each(["table", "encoder"] as const)("a head whose prompt is an embedding from a %s", (source) => {
  let run: string;
  let policy: OnnxPolicy;
  beforeAll(async () => {
    run = await writeEmbeddingRun(join(root, source), source);
    policy = await OnnxPolicy.load(run, { threads: 1 });
  });
  afterAll(async () => {
    await policy.release();
  });

  it("exports one graph taking the embedding (float32 [batch, D]) that the official checker accepts", () => {
    const file = join(run, "policy.onnx");
    const model = decodeModel(new Uint8Array(readFileSync(file)), file);
    const input = model.graph.input.find((i) => i.name === "obs.prompt");
    expect(input?.type?.tensorType?.elemType).toBe(1); // FLOAT
    expect(input?.type?.tensorType?.shape?.dim).toEqual([{ dimParam: "batch" }, { dimValue: DIM }]);
    const meta = JSON.parse(metadataOf(model)["actionflow.prompts"]!) as { embedding: Record<string, unknown> };
    expect(meta).toMatchObject({ feature: "prompt", prompts: TRAINED, embedding: { source, dim: DIM } });
    if (source === "encoder") expect(meta.embedding).toMatchObject({ normalize: true, folder: "text-encoder" });
    expect(policy.prompts).toEqual(TRAINED);
    expect(policy.anyPrompt).toBe(source === "encoder" ? true : undefined);
    expect(policy.features.map((f) => f.name)).toEqual(["state"]);
    if (!why) {
      expect(checkOnnxFile(file)).toBe("");
      expect(checkOnnxFile(join(run, "policy.velocity.onnx"))).toBe("");
    }
  });

  it("samples what the tfjs head samples from the prompt's stored vector", async () => {
    const ckpt = await loadCheckpoint(run);
    const vectors = ckpt.config.obs[1]!.promptEmbedding!.vectors;
    if (source === "table") expect(vectors).toEqual(tableVectorsFixture());
    const noise = new Rng(9).normalArray(12);
    const chunks: Float32Array[] = [];
    for (const [i, prompt] of TRAINED.entries()) {
      const chunk = await policy.sampleChunk({ state: STATE }, { noise, prompt: prompt.toUpperCase() + "." });
      expect(maxAbsDiff(chunk, await tfjsChunk(run, Float32Array.from(vectors[i]!), noise))).toBeLessThan(1e-4);
      chunks.push(chunk);
    }
    expect(maxAbsDiff(chunks[0]!, chunks[1]!)).toBeGreaterThan(1e-3);
  });

  if (source === "table")
    it("refuses a prompt the table does not have, naming the known ones", async () => {
      await expect(
        policy.sampleChunk({ state: STATE }, { seed: 1, prompt: "go through the left gap" }),
      ).rejects.toThrow(
        /unknown prompt "go through the left gap": the policy knows "pass through the left gap", "pass through the right gap"/,
      );
      expect(() => policy.setPrompt("take the right gap")).toThrow(/unknown prompt "take the right gap"/);
    });

  if (source === "encoder")
    it("embeds an unseen prompt with its encoder once, caches it, and samples what tfjs samples from that embedding", async () => {
      const enc = await PromptEncoder.load({
        model: join(run, "text-encoder", "model.onnx"),
        tokenizer: join(run, "text-encoder", "tokenizer.json"),
      });
      const [known, paraphrase] = await enc.embed([TRAINED[0]!, "go through the left gap"]);
      await enc.release();
      // the stored vectors are the encoder's own
      const ckpt = await loadCheckpoint(run);
      expect(maxAbsDiff(Float32Array.from(ckpt.config.obs[1]!.promptEmbedding!.vectors[0]!), known!)).toBeLessThan(
        1e-6,
      );
      const noise = new Rng(4).normalArray(12);
      const spy = vi.spyOn(PromptEncoder.prototype, "embed");
      try {
        const a = await policy.sampleChunk({ state: STATE }, { noise, prompt: "go through the left gap" });
        expect(maxAbsDiff(a, await tfjsChunk(run, paraphrase!, noise))).toBeLessThan(1e-4);
        policy.setPrompt("go through the left gap");
        for (let i = 0; i < 3; i++)
          expect(Array.from(await policy.sampleChunk({ state: STATE }, { noise }))).toEqual(Array.from(a));
        expect(spy).toHaveBeenCalledTimes(1);
        await policy.sampleChunk({ state: STATE }, { noise, prompt: TRAINED[1]! }); // a known prompt: its stored vector
        expect(spy).toHaveBeenCalledTimes(1);
      } finally {
        spy.mockRestore();
      }
      await expect(policy.sampleChunk({ state: STATE }, { seed: 1, prompt: " " })).rejects.toThrow(
        /a prompt must not be empty/,
      );
    });
});

describe("an encoder policy's files", () => {
  it("export --out elsewhere copies the encoder beside the graph; without it the policy is refused naming the folder", async () => {
    const run = await writeEmbeddingRun(join(root, "moved"), "encoder", "mlp");
    const out = join(root, "elsewhere", "p.onnx");
    await exportOnnx(run, { steps: 3, out });
    expect(existsSync(join(root, "elsewhere", "text-encoder", "model.onnx"))).toBe(true);
    expect(existsSync(join(root, "elsewhere", "text-encoder", "tokenizer.json"))).toBe(true);
    const a = await OnnxPolicy.load(out, { threads: 1 });
    const b = await OnnxPolicy.load(run, { threads: 1 });
    try {
      const noise = new Rng(1).normalArray(12);
      const x = await a.sampleChunk({ state: STATE }, { noise, prompt: "take the right gap" });
      const y = await b.sampleChunk({ state: STATE }, { noise, prompt: "take the right gap" });
      expect(Array.from(x)).toEqual(Array.from(y));
    } finally {
      await a.release();
      await b.release();
    }
    rmSync(join(root, "elsewhere", "text-encoder"), { recursive: true });
    await expect(OnnxPolicy.load(out, { threads: 1 })).rejects.toThrow(
      /p\.onnx: the prompt comes from the text encoder in .*elsewhere\/text-encoder, which cannot be loaded/,
    );
  });

  it("a threaded policy takes any prompt and samples what the direct one does", async () => {
    const run = join(root, "encoder");
    const tp = await ThreadedPolicy.start(run, { threads: 1 });
    const direct = await OnnxPolicy.load(run, { threads: 1 });
    try {
      expect(tp.prompts).toEqual(TRAINED);
      expect(tp.anyPrompt).toBe(true);
      const noise = new Rng(2).normalArray(12);
      const want = await direct.sampleChunk({ state: STATE }, { noise, prompt: "take the right gap" });
      expect(Array.from(await tp.sampleChunk({ state: STATE }, { noise, prompt: "take the right gap" }))).toEqual(
        Array.from(want),
      );
      await expect(tp.sampleChunk({ state: STATE }, { noise })).rejects.toThrow(
        /none was given; give any prompt, e.g. "pass through the left gap"/,
      );
      tp.setPrompt("take the right gap");
      expect(Array.from(await tp.sampleChunk({ state: STATE }, { noise }))).toEqual(Array.from(want));
    } finally {
      await tp.close();
      await direct.release();
    }
  });
});
