import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evaluate } from "../../sim/eval.ts";
import { ExpertChunkPolicy } from "../../sim/policy.ts";
import type { Task } from "../../sim/tasks/index.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "actionflow-paraphrase-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("sim eval with a paraphrased instruction", () => {
  it("tells the instructed task the way --instruct names and reports the prompt as given", async () => {
    const r = await evaluate({
      task: "fork-instructed",
      policy: (t) => new ExpertChunkPolicy(t),
      episodes: 2,
      seed: 40,
      outDir: join(dir, "eval"),
      prompt: "take the left gap",
      instruct: "left",
    });
    expect(r.aggregated.instructed_share).toBe(1);
    expect(r.per_episode.map((e) => [e.mode, e.instructed, e.prompt])).toEqual(
      Array(2).fill(["left", "left", "take the left gap"]),
    );
  });

  it("refuses a paraphrase without --instruct, and a mode the task does not have", async () => {
    const base = {
      task: "fork-instructed" as const,
      policy: (t: Task) => new ExpertChunkPolicy(t),
      episodes: 1,
      seed: 40,
    };
    await expect(evaluate({ ...base, outDir: join(dir, "a"), prompt: "take the left gap" })).rejects.toThrow(
      /unknown instruction "take the left gap" .*; to evaluate a paraphrase .* give the way it instructs \(instruct, --instruct\)/,
    );
    await expect(
      evaluate({ ...base, outDir: join(dir, "b"), prompt: "take the left gap", instruct: "up" }),
    ).rejects.toThrow(/instruct must be one of the task's modes left, right, got 'up'/);
  });
});
