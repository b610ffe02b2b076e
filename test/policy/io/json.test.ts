import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { removeDir, tempDir } from "../../datasets/lerobot/helpers.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { parseJson, readJsonFile, readJsonLinesFile } from "../../../policy/io/json.ts";
import { FeatureStatsSchema } from "../../../policy/normalize.ts";

const Schema = z.object({ observation: z.object({ state: FeatureStatsSchema }) });
const stats = { min: [0, 0], max: [1, 1], mean: [0.5, 0.5], std: [0.1, 0.2], count: 10 };

/** The error a promise rejects with (fails the test when it resolves). */
async function failure(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

let dir: string;
beforeAll(async () => {
  dir = await tempDir("json");
});
afterAll(async () => {
  await removeDir(dir);
});

describe("readJsonFile", () => {
  it("returns the validated value of a good file", async () => {
    const file = join(dir, "good.json");
    await writeFile(file, JSON.stringify({ observation: { state: stats }, extra: 1 }));
    expect(await readJsonFile(file, Schema)).toEqual({ observation: { state: stats } });
  });

  it("names the file and the field path of a NaN (written by JSON as null), with the ZodError as cause", async () => {
    const file = join(dir, "stats.json");
    await writeFile(file, JSON.stringify({ observation: { state: { ...stats, std: [0.1, NaN] } } }));
    const err = await failure(readJsonFile(file, Schema));
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toBe(`${file}: observation.state.std[1]: expected number, got null`);
    expect(err.cause).toBeInstanceOf(z.ZodError);
  });

  it("names a missing field, a wrong length and a wrong type, all at once", async () => {
    const file = join(dir, "stats2.json");
    const { count: _count, ...noCount } = stats;
    await writeFile(file, JSON.stringify({ observation: { state: { ...noCount, min: [0], max: "big" } } }));
    await expect(readJsonFile(file, Schema)).rejects.toThrow(
      `${file}: observation.state.max: expected array, got "big"; observation.state.count: missing (expected number)`,
    );
    await writeFile(file, JSON.stringify({ observation: { state: { ...stats, min: [0] } } }));
    await expect(readJsonFile(file, Schema)).rejects.toThrow(
      `${file}: observation.state.min: has length 1, mean has 2`,
    );
  });

  it("names a file that is not JSON, with the hint", async () => {
    const file = join(dir, "broken.json");
    await writeFile(file, '{"observation": {"state": ');
    const err = await failure(readJsonFile(file, Schema, { invalid: "write it again" }));
    expect(err.message).toMatch(new RegExp(`^${file}: not valid JSON \\(.+\\); write it again$`));
    expect(err.cause).toBeInstanceOf(SyntaxError);
  });

  it("names a missing file, with the hint", async () => {
    const file = join(dir, "nowhere.json");
    const err = await failure(readJsonFile(file, Schema, { missing: "run train first" }));
    expect(err.message).toBe(`${file}: file missing (run train first)`);
    expect((err.cause as NodeJS.ErrnoException).code).toBe("ENOENT");
  });
});

describe("parseJson and readJsonLinesFile", () => {
  it("validate text from elsewhere (ONNX metadata), naming the source", () => {
    const s = z.array(z.object({ name: z.string() }));
    expect(parseJson('[{"name":"state"}]', s, "m.onnx: metadata 'f'")).toEqual([{ name: "state" }]);
    expect(() => parseJson('[{"name":3}]', s, "m.onnx: metadata 'f'")).toThrow(
      "m.onnx: metadata 'f': [0].name: expected string, got 3",
    );
    expect(() => parseJson("", s, "m.onnx: metadata 'f'")).toThrow(/^m\.onnx: metadata 'f': not valid JSON/);
    expect(() => parseJson('"x"', z.enum(["a", "b"]), "w")).toThrow('w: (root): expected one of "a", "b", got "x"');
  });

  it("reads JSON Lines, skipping blank lines and naming the bad line", async () => {
    const file = join(dir, "episodes.jsonl");
    const s = z.object({ length: z.number().int() });
    await writeFile(file, '{"length": 3}\n\n{"length": 4}\n');
    expect(await readJsonLinesFile(file, s)).toEqual([{ length: 3 }, { length: 4 }]);
    await writeFile(file, '{"length": 3}\n{"length": 4.5}\n{"len');
    await expect(readJsonLinesFile(file, s)).rejects.toThrow(`${file}: line 2: length: expected int, got 4.5`);
  });
});
