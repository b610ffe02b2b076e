import * as tf from "@tensorflow/tfjs";
import { describe, expect, it } from "vitest";
import { useBackend } from "../../../training/backend/registry.ts";

type Case = { a: number[]; b: number[]; ta?: boolean; tb?: boolean };

/**
 * Batched products: per-slice XNNPACK route (large slices), broadcast, transposed, and the naive-loop ones (few rows,
 * tiny).
 */
const CASES: Case[] = [
  { a: [12, 50, 16], b: [12, 16, 20] },
  { a: [3, 4, 20, 16], b: [3, 4, 16, 24] },
  { a: [6, 20, 16], b: [16, 24] },
  { a: [20, 16], b: [6, 16, 24] },
  { a: [1, 20, 16], b: [5, 16, 24] },
  { a: [5, 16, 20], b: [5, 24, 16], ta: true, tb: true },
  { a: [5, 20, 16], b: [5, 24, 16], tb: true },
  { a: [7, 1, 32], b: [7, 32, 50] },
  { a: [7, 8, 8], b: [7, 8, 8] },
];

async function products(backend: "wasm" | "cpu"): Promise<Float32Array[]> {
  await useBackend(backend);
  return CASES.map((c, i) =>
    tf.tidy(() => {
      const a = tf.randomNormal(c.a, 0, 1, "float32", 10 + i);
      const b = tf.randomNormal(c.b, 0, 1, "float32", 100 + i);
      return tf.matMul(a, b, c.ta ?? false, c.tb ?? false).dataSync() as Float32Array;
    }),
  );
}

/** Loss of a two-head self-attention block and its gradients for q, k, v `[batch, 50, 32]`. */
function attentionGrads(): Float32Array[] {
  const [q, k, v] = [1, 2, 3].map((s) => tf.randomNormal([8, 50, 32], 0, 1, "float32", s));
  const f = (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor): tf.Scalar => {
    const split = (x: tf.Tensor): tf.Tensor => tf.transpose(tf.reshape(x, [8, 50, 2, 16]), [0, 2, 1, 3]);
    const scores = tf.matMul(split(q), split(k), false, true);
    const out = tf.matMul(tf.softmax(tf.mul(scores, tf.scalar(0.25))), split(v));
    return tf.sum(tf.square(out));
  };
  const grads = tf.grads((q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) => f(q, k, v))([q!, k!, v!]);
  const out = grads.map((g) => g.dataSync() as Float32Array);
  tf.dispose([q!, k!, v!, ...grads]);
  return out;
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / scale;
}

describe("wasm BatchMatMul fix, batched products", () => {
  it("matches the cpu backend on batched, broadcast and transposed products and attention gradients, leaking nothing", async () => {
    const wasm = await products("wasm");
    const before = tf.memory().numTensors;
    const wasmGrads = attentionGrads();
    expect(tf.memory().numTensors).toBe(before);
    const cpu = await products("cpu");
    const cpuGrads = attentionGrads();
    await useBackend("wasm");
    for (const [i, c] of CASES.entries()) {
      expect(wasm[i]!.length, JSON.stringify(c)).toBe(cpu[i]!.length);
      expect(maxRelDiff(wasm[i]!, cpu[i]!), JSON.stringify(c)).toBeLessThan(1e-5);
    }
    for (const [i, g] of wasmGrads.entries()) expect(maxRelDiff(g, cpuGrads[i]!)).toBeLessThan(1e-4);
  });
});
