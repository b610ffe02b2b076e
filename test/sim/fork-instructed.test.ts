import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openLeRobot } from "../../datasets/lerobot/reader.ts";
import { collect, type ActionflowMeta } from "../../sim/collect.ts";
import { evaluate } from "../../sim/eval.ts";
import { ExpertChunkPolicy } from "../../sim/policy.ts";
import { createTask, taskInfo } from "../../sim/tasks/index.ts";
import type { ChunkPolicy } from "../../policy/chunk-policy.ts";
import { createExpert, type Expert } from "../../sim/experts/index.ts";
import type { Task } from "../../sim/tasks/index.ts";

const LEFT = "pass through the left gap";
const RIGHT = "pass through the right gap";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "actionflow-fork-instructed-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("fork-instructed", () => {
  it("draws each episode's instruction from its seed, keeps the fork's scene, and matches prompts normalised", async () => {
    expect(taskInfo("fork-instructed").instructions).toEqual({ left: LEFT, right: RIGHT });
    const told = await createTask("fork-instructed");
    const plain = await createTask("fork");
    try {
      const modes = new Set<string>();
      for (let s = 0; s < 16; s++) {
        told.reset(s);
        plain.reset(s);
        expect(told.observe()["observation.environment_state"]).toEqual(
          plain.observe()["observation.environment_state"],
        );
        modes.add(told.instructedMode!);
        expect(told.prompt).toBe(told.instructedMode === "left" ? LEFT : RIGHT);
      }
      expect([...modes].sort()).toEqual(["left", "right"]);
      expect(plain.instructedMode).toBeUndefined();
      expect(plain.prompt).toBe(taskInfo("fork").description);
      expect(told.modeOfPrompt("  Pass through the LEFT gap.")).toBe("left");
      expect(() => told.modeOfPrompt("go around")).toThrow(
        /unknown instruction "go around" \(known: "pass through the left gap", "pass through the right gap"\)/,
      );
      expect(() => plain.instruct("left")).toThrow(/takes no instruction/);
    } finally {
      told.dispose();
      plain.dispose();
    }
  });

  it("paired collection records both instructions for every scene as the episodes' tasks", async () => {
    const out = join(dir, "paired");
    const r = await collect({ task: "fork-instructed", episodes: 4, seed: 3, out, paired: true });
    expect(r.modeShare).toEqual([0.5, 0.5]);
    const meta = JSON.parse(await readFile(join(out, "meta", "actionflow.json"), "utf8")) as ActionflowMeta;
    expect(meta.episodes.map((e) => [e.seed, e.mode, e.prompt])).toEqual([
      [3, "left", LEFT],
      [3, "right", RIGHT],
      [4, "left", LEFT],
      [4, "right", RIGHT],
    ]);
    const ds = await openLeRobot(out);
    try {
      expect([...ds.tasks].sort()).toEqual([LEFT, RIGHT]);
      expect(new Set(await ds.readTasks(1))).toEqual(new Set([RIGHT]));
    } finally {
      ds.close();
    }
  });

  it("scores the instructed way: the expert follows every instruction, a policy ignoring it half the time", async () => {
    const expert = await evaluate({
      task: "fork-instructed",
      policy: (t) => new ExpertChunkPolicy(t),
      episodes: 4,
      seed: 20,
      outDir: join(dir, "eval-expert"),
      prompt: "Pass through the right gap",
    });
    expect(expert.aggregated.instructed_share).toBe(1);
    expect(expert.per_episode.map((e) => [e.mode, e.instructed, e.prompt])).toEqual(
      Array(4).fill(["right", "right", RIGHT]),
    );
    // A policy that always goes left whatever it is told: the instructed share is the share of left instructions.
    const alwaysLeft = (t: Task): ChunkPolicy => {
      let expert: Expert | undefined;
      return {
        horizon: 16,
        actionDim: t.env.dim,
        reset: () => {
          expert?.dispose();
          expert = createExpert(t, "left");
        },
        sampleChunk: () => Promise.resolve(expert!.plan!(16)),
      };
    };
    const own = await evaluate({
      task: "fork-instructed",
      policy: alwaysLeft,
      episodes: 8,
      seed: 20,
      outDir: join(dir, "eval-left"),
    });
    const toldLeft = own.per_episode.filter((e) => e.instructed === "left").length;
    expect(own.per_episode.every((e) => e.mode === "left")).toBe(true);
    expect(own.aggregated.instructed_share).toBe(toldLeft / 8);
    expect(toldLeft).toBeGreaterThan(0);
    expect(toldLeft).toBeLessThan(8);
    await expect(
      evaluate({
        task: "fork-instructed",
        policy: (t) => new ExpertChunkPolicy(t),
        episodes: 1,
        seed: 0,
        outDir: join(dir, "bad"),
        prompt: "fly",
      }),
    ).rejects.toThrow(/unknown instruction "fly"/);
  });

  it("switches the prompt mid-episode: the task is told the new way, the policy gets it from its next chunk", async () => {
    const seen: string[] = [];
    let current = "";
    const recorder = (t: Task): ChunkPolicy => ({
      horizon: 4,
      actionDim: t.env.dim,
      prompts: [LEFT, RIGHT],
      setPrompt: (text: string) => {
        current = text;
      },
      reset: () => undefined,
      sampleChunk: () => {
        seen.push(current);
        const hold = t.env.jointPositions();
        const out = new Float32Array(4 * t.env.dim);
        for (let i = 0; i < 4; i++) out.set(hold, i * t.env.dim);
        return Promise.resolve(out);
      },
    });
    const info = await evaluate({
      task: "fork-instructed",
      policy: recorder,
      episodes: 1,
      seed: 5,
      outDir: join(dir, "eval-switch"),
      prompt: LEFT,
      promptSwitch: { prompt: "Pass through the right gap.", atStep: 6 },
      merge: "sync",
      nActionSteps: 4,
    });
    // chunks at steps 0, 4 (left), 8, 12, ... (right)
    expect(seen.slice(0, 4)).toEqual([LEFT, LEFT, "Pass through the right gap.", "Pass through the right gap."]);
    expect(info.per_episode[0]).toMatchObject({ instructed: "right", prompt: RIGHT });
  });
});
