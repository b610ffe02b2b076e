import { createRequire } from "node:module";
import * as tf from "@tensorflow/tfjs";
import { describe, expect, it } from "vitest";
import { refuseOrtWorkers, resolveTrainBackend, useBackend } from "../../../training/backend/registry.ts";

/** Whether `pkg` resolves from here (an optional peer that may or may not be installed). */
function resolvable(pkg: string): boolean {
  try {
    createRequire(import.meta.url).resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

describe("tfjs backends and the training backend", () => {
  it("auto picks the best backend that starts (wasm without tfjs-node) and a forced one names every failure", async () => {
    // The optional native backends, highest priority first. Each one forced either starts or fails
    // with the registry's error; one whose package does not resolve must fail. auto must then pick
    // the first that started, or wasm.
    const native = [
      { name: "tensorflow-gpu", pkg: "@tensorflow/tfjs-node-gpu" },
      { name: "tensorflow", pkg: "@tensorflow/tfjs-node" },
    ] as const;
    const started: string[] = [];
    for (const b of native) {
      const r = await useBackend(b.name).then(
        (name) => ({ name }),
        (err: unknown) => ({ error: err as Error }),
      );
      if ("name" in r) {
        expect(resolvable(b.pkg), `${b.name} started without ${b.pkg} resolving`).toBe(true);
        expect(r.name).toBe(b.name);
        started.push(b.name);
      } else {
        expect(r.error.message).toMatch(new RegExp(`^no tfjs backend could be started:\\n\\s+${b.name}:`));
        // Not installed: the failure is the missing package, said so in the message.
        if (!resolvable(b.pkg)) expect(r.error.message).toContain(b.pkg);
      }
    }
    expect(await useBackend("auto")).toBe(started[0] ?? "wasm");
    await expect(useBackend("nope" as never)).rejects.toThrow(
      /unknown backend 'nope' \(valid: auto, tensorflow-gpu, tensorflow, wasm, cpu\)/,
    );
    expect(await useBackend("wasm")).toBe("wasm");

    // Training: auto is the native tfjs backend when one started, else onnxruntime; a tfjs backend is
    // active either way (ort's initial weights come from tfjs). A forced backend is what trains.
    expect(await resolveTrainBackend("auto")).toBe(started[0] ?? "ort");
    expect(["tensorflow-gpu", "tensorflow", "wasm", "cpu"]).toContain(tf.getBackend());
    expect(await resolveTrainBackend("ort")).toBe("ort");
    expect(await resolveTrainBackend("wasm")).toBe("wasm");
    expect(tf.getBackend()).toBe("wasm");
  });

  it("gradient workers are refused when onnxruntime trains, saying how to get tfjs when auto chose it", () => {
    expect(() => refuseOrtWorkers("ort", "ort", 2)).toThrow(/--workers 2: .*--backend ort uses onnxruntime's own/);
    expect(() => refuseOrtWorkers("auto", "ort", 2)).toThrow(/--backend auto chose ort .* pass --backend wasm/);
    expect(() => refuseOrtWorkers("auto", "ort", 1)).not.toThrow();
    expect(() => refuseOrtWorkers("auto", "wasm", 2)).not.toThrow();
  });

  it("the wasm transposed-matMul fix gives the plain product and the same gradients as the cpu backend", async () => {
    await useBackend("wasm");
    const a = tf.randomNormal([2, 5, 7], 0, 1, "float32", 1);
    const b = tf.randomNormal([2, 6, 7], 0, 1, "float32", 2);
    const f = (x: tf.Tensor, y: tf.Tensor): tf.Scalar => tf.sum(tf.square(tf.matMul(x, y, false, true)));
    const before = tf.memory().numTensors;
    let diffB = Infinity;
    let diffA = Infinity;
    let wasmGrads: number[][] = [];
    tf.tidy(() => {
      const fused = tf.matMul(a, b, false, true);
      const plain = tf.matMul(a, tf.transpose(b, [0, 2, 1]));
      const ta = tf.matMul(a, a, true, false);
      const taPlain = tf.matMul(tf.transpose(a, [0, 2, 1]), a);
      const [ga, gb] = tf.grads(f)([a, b]);
      diffB = tf.max(tf.abs(tf.sub(fused, plain))).dataSync()[0]!;
      diffA = tf.max(tf.abs(tf.sub(ta, taPlain))).dataSync()[0]!;
      wasmGrads = [Array.from(ga!.dataSync()), Array.from(gb!.dataSync())];
    });
    // The patched kernel frees its temporary transposes.
    expect(tf.memory().numTensors).toBe(before);
    expect(diffB).toBeLessThan(1e-5);
    expect(diffA).toBeLessThan(1e-4);
    const av = a.arraySync();
    const bv = b.arraySync();
    await useBackend("cpu");
    const [ca, cb] = tf.grads(f)([tf.tensor(av), tf.tensor(bv)]);
    const cpuGrads = [ca!.dataSync(), cb!.dataSync()];
    for (let k = 0; k < 2; k++) {
      for (let i = 0; i < cpuGrads[k]!.length; i++) expect(wasmGrads[k]![i]).toBeCloseTo(cpuGrads[k]![i]!, 3);
    }
    await useBackend("wasm");
  });
});
