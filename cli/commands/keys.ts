/**
 * `actionflow keys`: makes a CURVE keypair for the ZeroMQ server or a client (Z85, 40 characters
 * each), and optionally an API key for the openpi WebSocket server.
 */
import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { curveKeyPair } from "../../bridge/server/zap.ts";
import { log, printResult } from "../output.ts";

/** What `actionflow keys` prints. */
export interface KeysResult {
  publicKey: string;
  secretKey: string;
  apiKey?: string;
  /** Written files: `<name>.key` (JSON keypair, mode 0600) and `<name>.pub` (the public key). */
  files?: { secret: string; public: string; apiKey?: string };
}

/** Registers the `keys` command. */
export function registerKeys(program: Command): void {
  program
    .command("keys")
    .description(
      "make a CURVE keypair (Z85) for `serve --zmq` and its clients, and optionally an API key for `serve --openpi`",
    )
    .option("--out <dir>", "write <name>.key (keypair JSON, mode 0600) and <name>.pub (public key) into this folder")
    .option("--name <name>", "file name stem for --out", "actionflow")
    .option("--api-key", "also make a random API key (written to <name>.apikey with --out)")
    .option("--json", "print one JSON object as the last stdout line")
    .action(async (o: { out?: string; name: string; apiKey?: boolean; json?: boolean }) => {
      if (!/^[\w.-]+$/.test(o.name)) throw new Error(`--name '${o.name}' must be letters, digits, '.', '_' or '-'`);
      const pair = curveKeyPair();
      const result: KeysResult = { ...pair };
      if (o.apiKey) result.apiKey = randomBytes(32).toString("base64url");
      if (o.out !== undefined) {
        const dir = resolve(o.out);
        await mkdir(dir, { recursive: true });
        const secret = join(dir, `${o.name}.key`);
        const pub = join(dir, `${o.name}.pub`);
        await writeFile(secret, JSON.stringify(pair) + "\n", { mode: 0o600, flag: "wx" });
        await writeFile(pub, pair.publicKey + "\n", { flag: "wx" });
        result.files = { secret, public: pub };
        if (result.apiKey !== undefined) {
          const apiFile = join(dir, `${o.name}.apikey`);
          await writeFile(apiFile, result.apiKey + "\n", { mode: 0o600, flag: "wx" });
          result.files.apiKey = apiFile;
        }
        if (!o.json) log(`wrote ${secret} (keep it secret) and ${pub} (give it out)`);
      }
      printResult(result, { json: o.json ?? false }, (r: KeysResult) =>
        [
          `public key ${r.publicKey}`,
          `secret key ${r.secretKey}`,
          ...(r.apiKey !== undefined ? [`api key    ${r.apiKey}`] : []),
        ].join("\n"),
      );
    });
}
