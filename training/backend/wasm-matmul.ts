/**
 * The tfjs-wasm `BatchMatMul` fixes.
 *
 * 1. Transposed operands. tfjs-wasm's `BatchMatMul` has a fast path only for plain operands: with
 *    `transposeA` or `transposeB` the same product runs 10-20x slower (measured: 1.7 ms vs
 *    15-23 ms at 256^3), and every matMul gradient uses those flags. We materialise the transpose
 *    (a cheap memory pass) and call the original kernel without flags.
 * 2. Batched products. Only batch 1 reaches XNNPACK; any batch > 1 (attention:
 *    `[batch * heads, 50, 32] x [batch * heads, 32, 50]`) runs a naive loop at ~1-1.7 GFLOP/s. We run
 *    it as one batch-1 XNNPACK product per batch entry instead, on zero-copy views: each slice of
 *    the operands and of the output is registered with the wasm backend under a fresh tensor id
 *    pointing into the tensor's own memory, multiplied, and unregistered (which frees nothing but
 *    the id and its cached XNNPACK operator). Measured 3-5x faster on attention shapes; products
 *    with fewer than 4 rows or fewer than 4096 multiply-adds per slice keep the naive loop (there
 *    XNNPACK's per-call weight packing costs more than it saves).
 *
 * Fixing it at the kernel covers every caller: forward passes, gradients, attention. The batched
 * route relies on tfjs-backend-wasm internals (`dataIdMap`, `_register_tensor`, `_BatchMatMul`,
 * `_dispose_data`, checked at install); without them only fix 1 is installed.
 */
import * as tf from "@tensorflow/tfjs";
import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from "@tensorflow/tfjs";

let installed = false;

/** The parts of tfjs-backend-wasm's `BackendWasm` the batched route uses. */
interface WasmInternals {
  dataIdMap: { get(dataId: object): { id: number; memoryOffset: number } | undefined };
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: "float32"): TensorInfo;
  wasm: {
    HEAPU8: Uint8Array;
    _malloc(bytes: number): number;
    _register_tensor(id: number, size: number, offset: number): void;
    _dispose_data(id: number): void;
    _BatchMatMul(
      aId: number,
      aShape: number,
      aRank: number,
      bId: number,
      bShape: number,
      bRank: number,
      transposeA: number,
      transposeB: number,
      outId: number,
    ): void;
  };
}

function wasmInternals(backend: unknown): WasmInternals | undefined {
  const b = backend as Partial<WasmInternals> | undefined;
  const w = b?.wasm as Partial<WasmInternals["wasm"]> | undefined;
  const ok =
    b !== undefined &&
    typeof b.dataIdMap?.get === "function" &&
    typeof b.dataIdNextNumber === "number" &&
    typeof b.makeOutput === "function" &&
    w !== undefined &&
    typeof w._malloc === "function" &&
    typeof w._register_tensor === "function" &&
    typeof w._dispose_data === "function" &&
    typeof w._BatchMatMul === "function";
  return ok ? (b as WasmInternals) : undefined;
}

/** Minimum rows and multiply-adds per batch entry for the per-slice XNNPACK route. */
const MIN_ROWS = 4;
const MIN_MACS = 4096;

/**
 * `a` `[...batch, m, k]` x `b` `[...batch, k, n]` (no transpose flags) as one XNNPACK product per
 * batch entry on views; `undefined` when the product should stay on the original kernel (batch 1,
 * small slices, or outer shapes that broadcast other than one side being a single matrix).
 */
function perSliceMatMul(be: WasmInternals, a: TensorInfo, b: TensorInfo, shapesPtr: number): TensorInfo | undefined {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const [m, k] = [a.shape[ra - 2]!, a.shape[ra - 1]!];
  const n = b.shape[rb - 1]!;
  if (b.shape[rb - 2] !== k || a.dtype !== "float32" || b.dtype !== "float32") return undefined;
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const batchA = outerA.reduce((x, y) => x * y, 1);
  const batchB = outerB.reduce((x, y) => x * y, 1);
  const batch = Math.max(batchA, batchB);
  if (batch <= 1 || m < MIN_ROWS || m * k * n < MIN_MACS) return undefined;
  // Either the same batch on both sides or one side a single matrix broadcast over the other's batch.
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) return undefined;
  if (batchA === batchB && (outerA.length !== outerB.length || outerA.some((d, i) => d !== outerB[i])))
    return undefined;
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  const ia = be.dataIdMap.get(a.dataId);
  const ib = be.dataIdMap.get(b.dataId);
  if (!ia || !ib) return undefined;
  const out = be.makeOutput([...outer, m, n], "float32");
  const io = be.dataIdMap.get(out.dataId)!;
  // The heap may have grown in makeOutput: take the view now.
  new Int32Array(be.wasm.HEAPU8.buffer, shapesPtr, 6).set([1, m, k, 1, k, n]);
  const w = be.wasm;
  const view = (base: number, index: number, size: number): number => {
    const id = be.dataIdNextNumber++;
    w._register_tensor(id, size, base + index * size * 4);
    return id;
  };
  // A single matrix shared by every batch entry is registered once (its packed weights are reused).
  const sharedA = batchA === 1 ? view(ia.memoryOffset, 0, m * k) : undefined;
  const sharedB = batchB === 1 ? view(ib.memoryOffset, 0, k * n) : undefined;
  try {
    for (let i = 0; i < batch; i++) {
      const idA = sharedA ?? view(ia.memoryOffset, i, m * k);
      const idB = sharedB ?? view(ib.memoryOffset, i, k * n);
      const idO = view(io.memoryOffset, i, m * n);
      w._BatchMatMul(idA, shapesPtr, 3, idB, shapesPtr + 12, 3, 0, 0, idO);
      if (sharedA === undefined) w._dispose_data(idA);
      if (sharedB === undefined) w._dispose_data(idB);
      w._dispose_data(idO);
    }
  } finally {
    if (sharedA !== undefined) w._dispose_data(sharedA);
    if (sharedB !== undefined) w._dispose_data(sharedB);
  }
  return out;
}

/** Installs the fixed `BatchMatMul` on the wasm backend (idempotent). Call after the backend is ready. */
export function installWasmMatMulFix(): void {
  if (installed) return;
  const original = tf.getKernel("BatchMatMul", "wasm");
  const transposeKernel = tf.getKernel("Transpose", "wasm");
  if (!original || !transposeKernel) throw new Error("tfjs-wasm has no BatchMatMul/Transpose kernel to patch");
  const origFunc = original.kernelFunc;
  const transposeFunc = transposeKernel.kernelFunc;
  const internals = wasmInternals(tf.findBackend("wasm"));
  // Two int32[3] shapes ([1, m, k], [1, k, n]) handed to the wasm kernel; allocated once, never freed.
  const shapesPtr = internals ? internals.wasm._malloc(24) >>> 0 : 0;

  const kernelFunc: KernelFunc = (args) => {
    const attrs = args.attrs as NamedAttrMap & { transposeA?: boolean; transposeB?: boolean };
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
    try {
      const sliced = internals && args.backend === internals ? perSliceMatMul(internals, a, b, shapesPtr) : undefined;
      if (sliced) return sliced;
      if (temps.length === 0) return origFunc(args);
      return origFunc({
        inputs: { a, b },
        backend: args.backend,
        attrs: { ...attrs, transposeA: false, transposeB: false },
      });
    } finally {
      for (const t of temps) backend.disposeData(t.dataId);
    }
  };

  const fixed: KernelConfig = { ...original, kernelFunc };
  tf.unregisterKernel("BatchMatMul", "wasm");
  tf.registerKernel(fixed);
  installed = true;
}
