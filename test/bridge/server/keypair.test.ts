import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curveKeyPair, readCurveKeyPair } from "../../../bridge/server/zap.ts";

describe("readCurveKeyPair", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "actionflow-keys-"));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it("reads a keypair file and names the file and the field of a bad one", async () => {
    const good = join(dir, "good.key");
    const pair = curveKeyPair();
    await writeFile(good, JSON.stringify(pair));
    expect(await readCurveKeyPair(good)).toEqual(pair);
    const bad = join(dir, "bad.key");
    await writeFile(bad, JSON.stringify({ publicKey: pair.publicKey, secretKey: "short" }));
    await expect(readCurveKeyPair(bad)).rejects.toThrow(/bad\.key: secretKey: expected a 40-character Z85 key/);
    await writeFile(bad, "{not json");
    await expect(readCurveKeyPair(bad)).rejects.toThrow(/bad\.key: not valid JSON/);
    await expect(readCurveKeyPair(join(dir, "none.key"))).rejects.toThrow(/none\.key: file missing/);
  });
});
