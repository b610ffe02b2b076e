/**
 * The MuJoCo WebAssembly module (`mujoco-js`): loaded once per process, MJCF compiled from its
 * in-memory file system, compile errors turned into `Error`s that carry MuJoCo's own message.
 *
 * Views such as `data.qpos` are `Float64Array`s over wasm memory: read them afresh after any call
 * that may allocate (never keep one across a compile), and write through them to set state.
 */
import loadMujocoModule from "mujoco-js";
import type { MainModule, MjData, MjModel } from "mujoco-js";

export type { MainModule as Mujoco, MjData, MjModel };

let modulePromise: Promise<MainModule> | undefined;
let fileCounter = 0;

/** Loads the MuJoCo wasm module once per process (~0.14 s the first time); later calls share it. */
export function loadMujoco(): Promise<MainModule> {
  modulePromise ??= loadMujocoModule({
    // MuJoCo prints XML parse errors and warnings through these; keep stdout for results.
    print: (s: string) => process.stderr.write(`mujoco: ${s}\n`),
    printErr: (s: string) => process.stderr.write(`mujoco: ${s}\n`),
  }).catch((err: unknown) => {
    modulePromise = undefined;
    throw new Error("sim/mujoco.ts: could not load the mujoco-js wasm module", { cause: err });
  });
  return modulePromise;
}

/** Thrown when MuJoCo refuses an MJCF document; `mujocoMessage` is MuJoCo's text. */
export class MjcfCompileError extends Error {
  /** MuJoCo's message, e.g. "XML Error: invalid keyword: 'nosuch'\nElement 'geom', line 1". */
  readonly mujocoMessage: string;
  constructor(source: string, mujocoMessage: string) {
    // No `cause`: the wasm exception carries nothing beyond this message but a wasm stack.
    super(`${source}: MJCF does not compile: ${mujocoMessage.trim()}`);
    this.name = "MjcfCompileError";
    this.mujocoMessage = mujocoMessage;
  }
}

/** Options for {@link compileMjcf}. */
export interface CompileOptions {
  /** Names the document in errors (a file path, or e.g. "arm scene"). */
  source: string;
  /** Extra files the MJCF includes (meshes, included XML), keyed by path relative to the MJCF. */
  assets?: Record<string, string | Uint8Array>;
}

/**
 * Compiles an MJCF document into an `MjModel` through the wasm file system.
 * The caller owns the model and must `delete()` it. Throws {@link MjcfCompileError} with MuJoCo's
 * message when the document does not parse or compile.
 */
export function compileMjcf(mj: MainModule, xml: string, opts: CompileOptions): MjModel {
  const dir = `/actionflow/m${fileCounter++}`;
  const fs = mj.FS;
  fs.mkdirTree(dir, 0o777);
  const path = `${dir}/model.xml`;
  const written: string[] = [];
  try {
    for (const [rel, content] of Object.entries(opts.assets ?? {})) {
      const full = `${dir}/${rel}`;
      fs.mkdirTree(full.slice(0, full.lastIndexOf("/")), 0o777);
      fs.writeFile(full, content);
      written.push(full);
    }
    fs.writeFile(path, xml);
    written.push(path);
    let model: MjModel;
    try {
      model = mj.MjModel.loadFromXML(path);
    } catch (err) {
      throw new MjcfCompileError(opts.source, mujocoErrorText(mj, err));
    }
    if (!model) throw new MjcfCompileError(opts.source, "XML parse error (see the 'mujoco:' lines above)");
    return model;
  } finally {
    for (const f of written) {
      try {
        fs.unlink(f);
      } catch {
        // already gone
      }
    }
  }
}

/**
 * Extracts MuJoCo's message from a wasm C++ exception (`mjXError`/`mjCError` begin with a
 * NUL-terminated `char message[]`, which the bindings do not surface).
 */
function mujocoErrorText(mj: MainModule, err: unknown): string {
  const e = err as { excPtr?: unknown; name?: unknown; message?: unknown };
  if (typeof e.message === "string" && e.message.length > 0) return e.message;
  if (typeof e.excPtr === "number") {
    const probe = new mj.DoubleBuffer(1);
    const heap = new Uint8Array((probe.GetView() as Float64Array).buffer);
    probe.delete();
    const start = e.excPtr;
    let end = start;
    while (end < heap.length && heap[end] !== 0 && end - start < 2000) end++;
    const text = new TextDecoder().decode(heap.subarray(start, end));
    if (text.length > 0) return text;
  }
  return String(e.name ?? err);
}

/** MuJoCo object types used by name lookups. */
export type MjObjectKind = "body" | "joint" | "geom" | "site" | "actuator";

/** Looks up an object id by name; -1 when absent. */
export function nameToId(mj: MainModule, model: MjModel, kind: MjObjectKind, name: string): number {
  const t = mj.mjtObj;
  const type = {
    body: t.mjOBJ_BODY,
    joint: t.mjOBJ_JOINT,
    geom: t.mjOBJ_GEOM,
    site: t.mjOBJ_SITE,
    actuator: t.mjOBJ_ACTUATOR,
  }[kind].value;
  return mj.mj_name2id(model, type, name);
}

/** Looks up an object id by name, throwing an error naming the kind, name and source when absent. */
export function requireId(mj: MainModule, model: MjModel, kind: MjObjectKind, name: string, source: string): number {
  const id = nameToId(mj, model, kind, name);
  if (id < 0) throw new Error(`${source}: no ${kind} named '${name}' in the model`);
  return id;
}

/** Names of all objects of a kind, in id order. */
export function namesOf(mj: MainModule, model: MjModel, kind: MjObjectKind): string[] {
  const t = mj.mjtObj;
  const [type, count] = {
    body: [t.mjOBJ_BODY.value, model.nbody],
    joint: [t.mjOBJ_JOINT.value, model.njnt],
    geom: [t.mjOBJ_GEOM.value, model.ngeom],
    site: [t.mjOBJ_SITE.value, model.nsite],
    actuator: [t.mjOBJ_ACTUATOR.value, model.nu],
  }[kind] as [number, number];
  const out: string[] = [];
  for (let i = 0; i < count; i++) out.push(mj.mj_id2name(model, type, i) ?? "");
  return out;
}

/** A typed view of a numeric model/data field (the bindings type them as `any`). */
export function f64(view: unknown): Float64Array {
  return view as Float64Array;
}

/** A typed view of an integer model/data field. */
export function i32(view: unknown): Int32Array {
  return view as Int32Array;
}
