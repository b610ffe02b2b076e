/**
 * Every quick command of the README runs as written. The README marks them with fenced blocks
 * opened by ```` ```sh quick ````: each line is one command (`npx actionflow ...` or
 * `npm run demo -- ...`), run in order in a scratch folder holding a link to the repository's
 * `examples/`, as a newcomer in a fresh clone would. Each must exit 0; one with `--json` must print
 * a JSON object as its last stdout line.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "..");
const CLI = join(ROOT, "cli", "bin.js");

/** The command lines of the README's ```sh quick``` blocks, in order. */
function quickCommands(markdown: string): string[] {
  const out: string[] = [];
  for (const m of markdown.matchAll(/^```sh quick[ \t]*\n([\s\S]*?)^```/gm))
    for (const line of (m[1] ?? "").split("\n")) if (line.trim()) out.push(line.trim());
  return out;
}

/** The argv of a quick command: `npx actionflow` and `npm run demo --` become the repository's CLI. */
function argv(command: string): string[] {
  if (/["'`$|&;<>\\#]/.test(command))
    throw new Error(`README quick command '${command}': no quoting, variables, pipes or comments allowed`);
  const words = command.split(/\s+/);
  if (words[0] === "npx" && words[1] === "actionflow") return [CLI, ...words.slice(2)];
  if (words.slice(0, 4).join(" ") === "npm run demo --") return [CLI, "demo", ...words.slice(4)];
  if (words.join(" ") === "npm run demo") return [CLI, "demo"];
  throw new Error(`README quick command '${command}': must start with 'npx actionflow' or 'npm run demo --'`);
}

const commands = quickCommands(readFileSync(join(ROOT, "README.md"), "utf8"));

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "actionflow-readme-"));
  await symlink(join(ROOT, "examples"), join(scratch, "examples"));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe("README quick commands", () => {
  it("the README has quick commands, each in a form the test can run", () => {
    expect(commands.length).toBeGreaterThanOrEqual(5);
    for (const c of commands) expect(() => argv(c), c).not.toThrow();
  });

  it.each(commands)("%s", { timeout: 300_000 }, async (command) => {
    const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((res) => {
      execFile(
        process.execPath,
        argv(command),
        { cwd: scratch, maxBuffer: 64 << 20, env: { ...process.env, ACTIONFLOW_API_KEY: "" } },
        (err, stdout, stderr) => res({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
    expect(code, `exit code of ${command}\n${stderr.slice(-2000)}`).toBe(0);
    if (command.split(/\s+/).includes("--json")) {
      const last = stdout.trimEnd().split("\n").pop() ?? "";
      const parsed: unknown = JSON.parse(last);
      expect(typeof parsed === "object" && parsed !== null && !Array.isArray(parsed), last).toBe(true);
    }
  });
});
