// The gradient worker's entry: registers the TypeScript loader (the worker may start from plain
// node, tsx or vitest), then runs grad-worker.ts.
import { register } from "tsx/esm/api";

register();
await import("./grad-worker.ts");
