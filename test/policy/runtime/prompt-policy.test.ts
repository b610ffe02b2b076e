import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { loadCheckpoint, normsFor, promptNorm, saveCheckpoint } from "../../../policy/checkpoint/checkpoint.ts";
import { parseHeadConfig } from "../../../policy/net/config.ts";
import { buildHead } from "../../../policy/net/network.ts";
import { normalizePrompt, promptIndex, promptOneHot } from "../../../policy/net/prompt.ts";
import { TfjsOps } from "../../../policy/net/tfjs-ops.ts";
import { denormalize, normalize } from "../../../policy/normalize.ts";
import { exportOnnx } from "../../../policy/onnx/export.ts";
import { decodeModel, metadataOf } from "../../../policy/onnx/proto.ts";
import { Rng } from "../../../policy/random.ts";
import { OnnxPolicy } from "../../../policy/runtime/onnx-policy.ts";
import { ThreadedPolicy } from "../../../policy/runtime/threaded.ts";
import { sampleChunkTfjs } from "../../../policy/sampling/tfjs.ts";
import { checkOnnxFile, maxAbsDiff, onnxCheckerUnavailable } from "../onnx/helpers.ts";
import { PROMPTS, writePromptRun } from "./prompt-fixture.ts";

const root = mkdtempSync(join(tmpdir(), "actionflow-prompt-"));
const why = onnxCheckerUnavailable();
const promptRun = (arch: "transformer" | "mlp"): Promise<string> => writePromptRun(join(root, arch), arch);

beforeAll(async () => {
  await tf.setBackend("cpu");
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("prompt matching", () => {
  it("ignores case, spacing and final punctuation, and refuses unknown prompts naming the known ones", () => {
    expect(normalizePrompt("  Pass   through the LEFT gap. ")).toBe("pass through the left gap");
    expect(normalizePrompt("stay!?")).toBe("stay");
    expect(promptIndex(PROMPTS, "PASS through the right gap!")).toBe(1);
    expect(() => promptIndex(PROMPTS, "go up")).toThrow(
      /unknown prompt "go up": the policy knows "pass through the left gap", "pass through the right gap", "stay"/,
    );
    expect(Array.from(promptOneHot(3, 2))).toEqual([0, 0, 1]);
  });

  it("refuses a prompt feature whose shape is not [K] or whose prompts collide", () => {
    const base = { horizon: 4, actionDim: 3 };
    expect(() =>
      parseHeadConfig({ ...base, obs: [{ name: "prompt", key: "task_index", shape: [2], prompts: PROMPTS }] }),
    ).toThrow(/obs\[0\]\.shape: a prompt feature has shape \[3\]/);
    expect(() =>
      parseHeadConfig({
        ...base,
        obs: [{ name: "prompt", key: "task_index", shape: [2], prompts: ["Left", "left."] }],
      }),
    ).toThrow(/"Left" and "left\." are the same after normalisation/);
  });
});

describe.each(["transformer", "mlp"] as const)("a %s head conditioned on a prompt", (arch) => {
  let run: string;
  let policy: OnnxPolicy;
  beforeAll(async () => {
    run = await promptRun(arch);
    policy = await OnnxPolicy.load(run, { threads: 1 });
  });
  afterAll(async () => {
    await policy.release();
  });

  it("exports one graph taking the prompt index, listing the prompts, that the official checker accepts", () => {
    const file = join(run, "policy.onnx");
    const model = decodeModel(new Uint8Array(readFileSync(file)), file);
    const input = model.graph.input.find((i) => i.name === "obs.prompt");
    expect(input?.type?.tensorType?.elemType).toBe(7); // INT64
    expect(JSON.parse(metadataOf(model)["actionflow.prompts"]!)).toEqual({ feature: "prompt", prompts: PROMPTS });
    expect(policy.prompts).toEqual(PROMPTS);
    expect(policy.features.map((f) => f.name)).toEqual(["state"]);
    if (!why) {
      expect(checkOnnxFile(file)).toBe("");
      expect(checkOnnxFile(join(run, "policy.velocity.onnx"))).toBe("");
    }
  });

  it("samples what the tfjs head samples from the prompt's one-hot, for every prompt", async () => {
    const ckpt = await loadCheckpoint(run);
    const norms = normsFor(ckpt.normalization, ckpt.config);
    const head = buildHead(ckpt.config);
    const state = Float32Array.of(0.3, -1.2);
    const noise = new Rng(9).normalArray(4 * 3);
    const chunks: Float32Array[] = [];
    for (const [i, prompt] of PROMPTS.entries()) {
      const chunk = await policy.sampleChunk({ state }, { noise, prompt });
      const ops = new TfjsOps({ seed: 0, weights: ckpt.weights, mode: "frozen" });
      const ref = tf.tidy(
        () =>
          sampleChunkTfjs(
            head,
            ops,
            {
              state: tf.tensor(normalize(state, norms.obs["state"]!), [1, 2]),
              prompt: tf.tensor(promptOneHot(PROMPTS.length, i), [1, PROMPTS.length]),
            },
            tf.tensor(noise, [1, 4, 3]),
            { steps: 3 },
          ).dataSync() as Float32Array,
      );
      ops.dispose();
      expect(maxAbsDiff(chunk, denormalize(ref, norms.action))).toBeLessThan(1e-4);
      chunks.push(chunk);
    }
    expect(maxAbsDiff(chunks[0]!, chunks[1]!)).toBeGreaterThan(1e-3);
  });

  it("matches prompts normalised, keeps a set prompt, and refuses a missing or unknown one", async () => {
    const state = Float32Array.of(0.3, -1.2);
    await expect(policy.sampleChunk({ state }, { seed: 1 })).rejects.toThrow(
      /conditioned on a task prompt and none was given; give one of "pass through the left gap"/,
    );
    await expect(policy.sampleChunk({ state }, { seed: 1, prompt: "fly" })).rejects.toThrow(
      /unknown prompt "fly": the policy knows/,
    );
    const a = await policy.sampleChunk({ state }, { seed: 1, prompt: PROMPTS[1]! });
    const b = await policy.sampleChunk({ state }, { seed: 1, prompt: "  Pass through the RIGHT gap." });
    expect(Array.from(b)).toEqual(Array.from(a));
    policy.setPrompt("pass through the right gap");
    expect(Array.from(await policy.sampleChunk({ state }, { seed: 1 }))).toEqual(Array.from(a));
    expect(() => policy.setPrompt("nope")).toThrow(/unknown prompt "nope"/);
    expect(Array.from(await policy.sampleChunk({ state }, { seed: 1 }))).toEqual(Array.from(a));
  });
});

describe("ThreadedPolicy with prompts", () => {
  it("lists the prompts, takes one per request or set, and rejects unknown ones", async () => {
    const run = join(root, "transformer");
    const tp = await ThreadedPolicy.start(run, { threads: 1 });
    try {
      const direct = await OnnxPolicy.load(run, { threads: 1 });
      const state = Float32Array.of(0.3, -1.2);
      const noise = new Rng(2).normalArray(12);
      const want = await direct.sampleChunk({ state }, { noise, prompt: PROMPTS[0]! });
      await direct.release();
      expect(tp.prompts).toEqual(PROMPTS);
      expect(Array.from(await tp.sampleChunk({ state }, { noise, prompt: "Pass through the left gap" }))).toEqual(
        Array.from(want),
      );
      await expect(tp.sampleChunk({ state }, { noise })).rejects.toThrow(/none was given/);
      await expect(tp.sampleChunk({ state }, { noise, prompt: "x" })).rejects.toThrow(/unknown prompt "x"/);
      tp.setPrompt(PROMPTS[0]!);
      expect(Array.from(await tp.sampleChunk({ state }, { noise }))).toEqual(Array.from(want));
    } finally {
      await tp.close();
    }
  });
});
