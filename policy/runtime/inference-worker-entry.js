// The inference worker's entry: registers the TypeScript loader (the worker may start from plain
// node, tsx or vitest), then runs inference-worker.ts.
import { register } from "tsx/esm/api";

register();
await import("./inference-worker.ts");
