// The camera decoder worker's entry: registers the TypeScript loader (the worker may start from
// plain node, tsx or vitest), then runs image-decoder-worker.ts.
import { register } from "tsx/esm/api";

register();
await import("./image-decoder-worker.ts");
