/**
 * `bench adamw`: the optimizer step of the onnxruntime trainer (global-norm clipping, AdamW with
 * decoupled weight decay on matrices, warmup + cosine learning rate, EMA) on the default head's
 * parameters, two ways: the Float32Array loop the trainer uses (`training/ort/adamw.ts`) and the
 * same update as an ONNX graph in onnxruntime (every parameter flattened into one vector, so the
 * update is ~20 elementwise nodes over all parameters; gradients fed per parameter as the training
 * graph returns them). The graph is timed with fresh outputs (copied into new JS buffers each run,
 * what `session.run` does) and, when onnxruntime-node accepts them, with preallocated outputs
 * (double-buffered state that stays in the same buffers). Both report the median ms of a step and
 * their largest difference after `steps` updates.
 */
import * as ort from "onnxruntime-node";
import { parseHeadConfig } from "../policy/net/config.ts";
import { buildHead } from "../policy/net/network.ts";
import type { NamedArray } from "../policy/net/ops.ts";
import { valueInfo } from "../policy/onnx/ops.ts";
import { DataType, IR_VERSION, OPSET, encodeModel, floatTensor } from "../policy/onnx/proto.ts";
import type { ModelProto, NodeProto, TensorProto } from "../policy/onnx/proto.ts";
import { Rng } from "../policy/random.ts";
import { median } from "../policy/stats/quantiles.ts";
import { useBackend } from "../training/backend/registry.ts";
import { DEFAULT_OPTIM, type OptimConfig } from "../training/optim.ts";
import { AdamW } from "../training/ort/adamw.ts";
import { initialParams } from "../training/ort/trainer.ts";
import { learningRate } from "../training/trainer.ts";

/** Options of {@link benchAdamW}. */
export interface BenchAdamWOptions {
  arch: "transformer" | "mlp";
  /** Timed steps of each version (after 2 untimed). */
  steps: number;
  /** onnxruntime intra-op threads (default: onnxruntime's choice, one per core). */
  threads?: number;
  /** Optimiser settings over `DEFAULT_OPTIM` (with 2 warmup steps); tests use strong ones so every term shows. */
  optim?: Partial<OptimConfig>;
}

/** The flat layout of named parameters: offsets into one vector of all of them, in map order. */
interface FlatLayout {
  names: string[];
  shapes: number[][];
  offsets: number[];
  size: number;
}

function layoutOf(values: ReadonlyMap<string, NamedArray>): FlatLayout {
  const names: string[] = [];
  const shapes: number[][] = [];
  const offsets: number[] = [];
  let size = 0;
  for (const [name, p] of values) {
    names.push(name);
    shapes.push(p.shape.slice());
    offsets.push(size);
    size += p.data.length;
  }
  return { names, shapes, offsets, size };
}

/**
 * The AdamW + EMA + clipping update as one ONNX model over the flat state. Inputs: `grad.<i>` (each
 * parameter's gradient, its shape), `value`, `m`, `v`, `ema` `[size]`, and the step's scalars `lr`,
 * `bc1`, `bc2`, `ema_decay` (`[]`). Outputs: `value_out`, `m_out`, `v_out`, `ema_out` `[size]` and
 * `grad_norm` `[]`. Weight decay applies where the constant `wd_mask` is 1 (matrices).
 */
export function buildAdamWModel(layout: FlatLayout, o: OptimConfig): ModelProto {
  const nodes: NodeProto[] = [];
  const inits: TensorProto[] = [];
  const c = (name: string, x: number): string => {
    inits.push(floatTensor(name, Float32Array.of(x), []));
    return name;
  };
  const node = (opType: string, input: string[], output: string, attribute?: NodeProto["attribute"]): string => {
    nodes.push({ opType, input, output: [output], ...(attribute ? { attribute } : {}) });
    return output;
  };
  inits.push({ name: "flat_shape", dims: [1], dataType: DataType.INT64, int64Data: [-1] });
  const mask = new Float32Array(layout.size);
  layout.shapes.forEach((s, i) => {
    if (s.length >= 2) mask.fill(1, layout.offsets[i]!, layout.offsets[i]! + s.reduce((a, b) => a * b, 1));
  });
  inits.push(floatTensor("wd_mask", mask, [layout.size]));
  const flats = layout.names.map((_, i) => node("Reshape", [`grad.${i}`, "flat_shape"], `gflat.${i}`));
  const g = node("Concat", flats, "g", [{ name: "axis", type: 2, i: 0 }]);
  const sumSq = node("ReduceSumSquare", [g], "sum_sq", [{ name: "keepdims", type: 2, i: 0 }]);
  const norm = node("Sqrt", [sumSq], "grad_norm");
  const clip = node(
    "Min",
    [c("one", 1), node("Div", [c("clip_norm", o.clipNorm), node("Add", [norm, c("tiny", 1e-6)], "norm_eps")], "ratio")],
    "clip",
  );
  const gc = node("Mul", [g, clip], "gc");
  const m = node(
    "Add",
    [node("Mul", ["m", c("beta1", o.beta1)], "m_b"), node("Mul", [gc, c("one_minus_beta1", 1 - o.beta1)], "g_b")],
    "m_out",
  );
  const gg = node("Mul", [gc, gc], "gg");
  const v = node(
    "Add",
    [node("Mul", ["v", c("beta2", o.beta2)], "v_b"), node("Mul", [gg, c("one_minus_beta2", 1 - o.beta2)], "gg_b")],
    "v_out",
  );
  const denom = node("Add", [node("Sqrt", [node("Div", [v, "bc2"], "v_hat")], "v_sqrt"), c("eps", o.eps)], "denom");
  const update = node("Div", [node("Div", [m, "bc1"], "m_hat"), denom], "update");
  const lrwd = node("Mul", ["lr", c("weight_decay", o.weightDecay)], "lr_wd");
  const decay = node("Sub", ["one", node("Mul", ["wd_mask", lrwd], "decay_amount")], "decay");
  const value = node(
    "Sub",
    [node("Mul", ["value", decay], "value_decayed"), node("Mul", [update, "lr"], "step_size")],
    "value_out",
  );
  node(
    "Add",
    [
      node("Mul", ["ema", "ema_decay"], "ema_kept"),
      node("Mul", [value, node("Sub", ["one", "ema_decay"], "ema_rate")], "ema_new"),
    ],
    "ema_out",
  );
  const flat = (n: string): ReturnType<typeof valueInfo> => valueInfo(n, [layout.size]);
  return {
    irVersion: IR_VERSION,
    opsetImport: [{ domain: "", version: OPSET }],
    producerName: "actionflow-bench",
    graph: {
      name: "adamw",
      node: nodes,
      initializer: inits,
      input: [
        ...layout.shapes.map((s, i) => valueInfo(`grad.${i}`, s)),
        ...["value", "m", "v", "ema"].map(flat),
        ...["lr", "bc1", "bc2", "ema_decay"].map((n) => valueInfo(n, [])),
      ],
      output: [...["value_out", "m_out", "v_out", "ema_out"].map(flat), valueInfo("grad_norm", [])],
    },
  };
}

/** Runs the optimizer benchmark; returns the JSON record. */
export async function benchAdamW(o: BenchAdamWOptions): Promise<Record<string, unknown>> {
  await useBackend("auto");
  const config = parseHeadConfig({ arch: o.arch, obs: [{ name: "state", key: "observation.state", shape: [32] }] });
  const values = initialParams(buildHead(config), 0);
  const layout = layoutOf(values);
  const optim = { ...DEFAULT_OPTIM, warmupSteps: 2, ...o.optim };
  const rng = new Rng(1);
  const grads = new Map<string, Float32Array>();
  for (const [name, p] of values)
    grads.set(
      name,
      rng.normalArray(p.data.length).map((x) => x * 1e-3),
    );
  const total = o.steps + 2;

  // Float32Array loop.
  const adam = new AdamW(optim, values);
  const jsTimes: number[] = [];
  for (let s = 0; s < total; s++) {
    const t0 = performance.now();
    adam.update(s, grads);
    if (s >= 2) jsTimes.push(performance.now() - t0);
  }

  // ONNX graph.
  const session = await ort.InferenceSession.create(encodeModel(buildAdamWModel(layout, optim)), {
    executionProviders: ["cpu"],
    graphOptimizationLevel: "all",
    logSeverityLevel: 3,
    ...(o.threads !== undefined ? { intraOpNumThreads: o.threads, interOpNumThreads: 1 } : {}),
  });
  const flatOf = (): Float32Array => {
    const out = new Float32Array(layout.size);
    layout.names.forEach((n, i) => out.set(values.get(n)!.data, layout.offsets[i]!));
    return out;
  };
  const scalars = (s: number): Record<string, ort.Tensor> => {
    const t = s + 1;
    return {
      lr: new ort.Tensor("float32", Float32Array.of(learningRate(optim, s)), []),
      bc1: new ort.Tensor("float32", Float32Array.of(1 - Math.pow(optim.beta1, t)), []),
      bc2: new ort.Tensor("float32", Float32Array.of(1 - Math.pow(optim.beta2, t)), []),
      ema_decay: new ort.Tensor("float32", Float32Array.of(Math.min(optim.emaDecay, (1 + s) / (10 + s))), []),
    };
  };
  const gradFeeds: Record<string, ort.Tensor> = {};
  layout.names.forEach(
    (n, i) => (gradFeeds[`grad.${i}`] = new ort.Tensor("float32", grads.get(n)!, layout.shapes[i]!)),
  );
  const N = [layout.size];
  const names = ["value", "m", "v", "ema"] as const;
  const run = async (preallocated: boolean): Promise<{ ms: number; state: Record<string, Float32Array> }> => {
    // Two sets of state buffers: a step reads one and writes the other (preallocated), or reads the
    // outputs onnxruntime allocated in the previous step.
    const bufs = [0, 1].map(() => ({
      value: flatOf(),
      m: new Float32Array(layout.size),
      v: new Float32Array(layout.size),
      ema: flatOf(),
    }));
    let state: Record<string, Float32Array> = bufs[0]!;
    const times: number[] = [];
    for (let s = 0; s < total; s++) {
      const t0 = performance.now();
      const feeds: Record<string, ort.Tensor> = { ...gradFeeds, ...scalars(s) };
      for (const k of names) feeds[k] = new ort.Tensor("float32", state[k]!, N);
      let next: Record<string, Float32Array>;
      if (preallocated) {
        const into = bufs[(s + 1) % 2]!;
        const fetches: Record<string, ort.Tensor> = { grad_norm: new ort.Tensor("float32", new Float32Array(1), []) };
        for (const k of names) fetches[`${k}_out`] = new ort.Tensor("float32", into[k], N);
        const out = await session.run(feeds, fetches);
        // onnxruntime-node writes into the preallocated buffers (and returns other tensors over the same values).
        const got = out["value_out"]!.data as Float32Array;
        if (s === 0 && got[0] !== into.value[0])
          throw new Error("onnxruntime did not write into the preallocated output");
        next = into;
      } else {
        const out = await session.run(feeds);
        next = Object.fromEntries(names.map((k) => [k, out[`${k}_out`]!.data as Float32Array]));
      }
      state = next;
      if (s >= 2) times.push(performance.now() - t0);
    }
    return { ms: median(times), state };
  };
  const fresh = await run(false);
  const pre = await run(true).then(
    (r) => r,
    (err: unknown) => ({ error: (err as Error).message.split("\n")[0]! }),
  );
  await session.release();

  // Agreement of the graph's state with the loop's after the same updates: the largest difference
  // of each of value, m, v and ema, and the largest change of the value the updates made.
  const snap = adam.snapshot();
  const maxAbsDiff: Record<string, number> = {};
  for (const k of names) {
    const js = snap[k === "value" ? "params" : k];
    let d = 0;
    layout.names.forEach((n, i) => {
      const a = js.get(n)!.data;
      const off = layout.offsets[i]!;
      for (let j = 0; j < a.length; j++) d = Math.max(d, Math.abs(a[j]! - fresh.state[k]![off + j]!));
    });
    maxAbsDiff[k] = d;
  }
  let maxChange = 0;
  layout.names.forEach((n) => {
    const a = snap.params.get(n)!.data;
    const b = values.get(n)!.data;
    for (let j = 0; j < a.length; j++) maxChange = Math.max(maxChange, Math.abs(a[j]! - b[j]!));
  });
  const jsMs = median(jsTimes);
  return {
    arch: o.arch,
    parameters: layout.size,
    tensors: layout.names.length,
    steps: o.steps,
    threads: o.threads ?? "all cores (onnxruntime intra-op threads)",
    float32ArrayMs: jsMs,
    onnxMs: fresh.ms,
    ...("ms" in pre ? { onnxPreallocatedMs: pre.ms } : { onnxPreallocatedError: pre.error }),
    onnxOverFloat32Array: fresh.ms / jsMs,
    maxAbsDiffAfterSteps: maxAbsDiff,
    maxValueChange: maxChange,
  };
}
