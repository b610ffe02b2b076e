/**
 * Finds a Python 3 with the given modules (Debian's `/usr/bin/python3` first: the project installs
 * `python3-msgpack`, `python3-numpy`, `python3-zmq`, `python3-websockets` there, see
 * `test/setup/install-python-deps.sh`), and runs scripts with it.
 */
import { spawn, spawnSync } from "node:child_process";

/** The first Python that imports every module in `modules`, or undefined. */
export function findPython(modules: string[]): string | undefined {
  for (const exe of ["/usr/bin/python3", "python3"]) {
    const r = spawnSync(exe, ["-c", `import ${modules.join(", ")}`], { encoding: "utf8", timeout: 20_000 });
    if (r.status === 0) return exe;
  }
  return undefined;
}

/** The message a skipped Python test prints. */
export function pythonMissing(modules: string[]): string {
  return `skipped: no python3 with ${modules.join(", ")} (run test/setup/install-python-deps.sh)`;
}

/** Runs `code` with `python`, `stdin` as its input; returns stdout bytes (throws with stderr on failure). */
export function runPython(python: string, code: string, stdin?: Uint8Array, args: string[] = []): Buffer {
  const r = spawnSync(python, ["-c", code, ...args], { input: stdin, timeout: 60_000, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`python failed (${r.status}): ${r.stderr.toString()}`);
  return r.stdout;
}

/** openpi's msgpack_numpy (the few lines that matter), for Python scripts to prepend. */
export const OPENPI_MSGPACK_NUMPY = `
import functools, msgpack, numpy as np
def pack_array(obj):
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in ("V", "O", "c"):
        raise ValueError(f"Unsupported dtype: {obj.dtype}")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj
def unpack_array(obj):
    if b"__ndarray__" in obj:
        return np.ndarray(buffer=obj[b"data"], dtype=np.dtype(obj[b"dtype"]), shape=obj[b"shape"])
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj
packb = functools.partial(msgpack.packb, default=pack_array)
unpackb = functools.partial(msgpack.unpackb, object_hook=unpack_array)
`;

/** `runPython` without blocking the event loop (for scripts that talk to a server in this process). */
export function runPythonAsync(python: string, code: string, args: string[] = [], timeoutMs = 60_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, ["-c", code, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new Error(`python failed (${code}): ${Buffer.concat(err).toString()}`));
    });
  });
}
