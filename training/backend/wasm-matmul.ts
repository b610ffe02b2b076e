/**
 * The tfjs-wasm transposed-matMul fix.
 *
 * tfjs-wasm's `BatchMatMul` has a fast path only for plain operands: with `transposeA` or
 * `transposeB` the same product runs 10-20x slower (FACTS.md: 1.7 ms vs 15-23 ms at 256^3), and
 * every matMul gradient uses those flags. We replace the wasm kernel with one that materialises the
 * transpose (a cheap memory pass) and calls the original kernel without flags. Fixing it at the
 * kernel covers every caller: forward passes, gradients, attention.
 */
import * as tf from "@tensorflow/tfjs";
import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from "@tensorflow/tfjs";

let installed = false;

/** Installs the fixed `BatchMatMul` on the wasm backend (idempotent). Call after the backend is ready. */
export function installWasmMatMulFix(): void {
  if (installed) return;
  const original = tf.getKernel("BatchMatMul", "wasm");
  const transposeKernel = tf.getKernel("Transpose", "wasm");
  if (!original || !transposeKernel) throw new Error("tfjs-wasm has no BatchMatMul/Transpose kernel to patch");
  const origFunc = original.kernelFunc;
  const transposeFunc = transposeKernel.kernelFunc;

  const kernelFunc: KernelFunc = (args) => {
    const attrs = args.attrs as NamedAttrMap & { transposeA?: boolean; transposeB?: boolean };
    if (!attrs.transposeA && !attrs.transposeB) return origFunc(args);
    const backend = args.backend as { disposeData(id: object): void };
    const inputs = args.inputs as { a: TensorInfo; b: TensorInfo };
    const swapLast = (x: TensorInfo): TensorInfo => {
      const r = x.shape.length;
      const perm = [...Array(r - 2).keys(), r - 1, r - 2];
      return transposeFunc({ inputs: { x }, backend: args.backend, attrs: { perm } }) as TensorInfo;
    };
    const temps: TensorInfo[] = [];
    let a = inputs.a;
    let b = inputs.b;
    if (attrs.transposeA) temps.push((a = swapLast(a)));
    if (attrs.transposeB) temps.push((b = swapLast(b)));
    const out = origFunc({ inputs: { a, b }, backend: args.backend, attrs: { ...attrs, transposeA: false, transposeB: false } });
    for (const t of temps) backend.disposeData(t.dataId);
    return out;
  };

  const fixed: KernelConfig = { ...original, kernelFunc };
  tf.unregisterKernel("BatchMatMul", "wasm");
  tf.registerKernel(fixed);
  installed = true;
}
