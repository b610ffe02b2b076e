/**
 * The onnxruntime execution providers a user may choose (`--provider`), in a module of their own so
 * that the command line can list them without loading onnxruntime.
 *
 * `cpu` is bundled with onnxruntime-node; `cuda` needs its CUDA build (installed with
 * `ONNXRUNTIME_NODE_INSTALL=cuda12`, with CUDA 12 and cuDNN 9 on the machine). Nodes a provider
 * cannot run fall back to the CPU.
 */
export const EXECUTION_PROVIDERS = ["cpu", "cuda"] as const;

/** One of {@link EXECUTION_PROVIDERS}. */
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];
