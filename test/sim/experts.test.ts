import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createExpert } from "../../sim/experts/index.ts";
import { continueEpisode } from "../../sim/rollout.ts";
import type { EpisodeResult } from "../../sim/rollout.ts";
import { avoidMode } from "../../sim/tasks/avoid.ts";
import type { AvoidTask } from "../../sim/tasks/avoid.ts";
import { createTask, taskInfo } from "../../sim/tasks/index.ts";
import type { Task, TaskName } from "../../sim/tasks/index.ts";

async function expertEpisode(task: Task, seed: number): Promise<{ ep: EpisodeResult; mode: string | undefined }> {
  task.reset(seed);
  const expert = createExpert(task);
  try {
    const ep = await continueEpisode(task, () => expert.act());
    return { ep, mode: expert.mode };
  } finally {
    expert.dispose();
  }
}

describe.each(["reach", "push", "avoid"] as TaskName[])("%s expert", (name) => {
  let task: Task;
  beforeAll(async () => {
    task = await createTask(name);
  });
  afterAll(() => task.dispose());

  it("solves >= 95% of 20 seeded episodes within the step limit", async () => {
    let ok = 0;
    for (let i = 0; i < 20; i++) {
      const { ep } = await expertEpisode(task, 100 + i);
      expect(ep.length).toBeLessThanOrEqual(taskInfo(name).maxSteps);
      if (ep.success) ok++;
    }
    expect(ok / 20).toBeGreaterThanOrEqual(0.95);
  });

  it("observations have fixed shapes and float32 values", async () => {
    const lengths = new Set<number>();
    for (const seed of [1, 2, 3]) {
      task.reset(seed);
      const obs = task.observe();
      expect(obs["observation.state"]).toBeInstanceOf(Float32Array);
      expect(obs["observation.state"]?.length).toBe(6);
      lengths.add(obs["observation.environment_state"]?.length ?? -1);
    }
    expect([...lengths]).toEqual([taskInfo(name).envStateNames.length]);
  });

  it("is deterministic: the same seed gives the same trajectory bit for bit, another seed does not", async () => {
    const a = (await expertEpisode(task, 7)).ep;
    const b = (await expertEpisode(task, 7)).ep;
    const c = (await expertEpisode(task, 8)).ep;
    expect(b.length).toBe(a.length);
    expect(Array.from(b.state)).toEqual(Array.from(a.state));
    expect(Array.from(b.action)).toEqual(Array.from(a.action));
    expect(Array.from(b.envState)).toEqual(Array.from(a.envState));
    expect(Array.from(c.envState.subarray(0, 3))).not.toEqual(Array.from(a.envState.subarray(0, 3)));
  });
});

describe("avoid modes", () => {
  it("the expert goes left or right about 50/50, and the path agrees with its mode", async () => {
    const task = (await createTask("avoid")) as AvoidTask;
    try {
      const counts = { left: 0, right: 0 };
      for (let i = 0; i < 40; i++) {
        const { ep, mode } = await expertEpisode(task, 1000 + i);
        expect(mode === "left" || mode === "right").toBe(true);
        counts[mode as "left" | "right"]++;
        expect(avoidMode(ep.eeTrace, task.obstacle)).toBe(mode);
        expect(task.touched).toBe(false);
      }
      // Binomial(40, 0.5): 12..28 holds with probability > 99%.
      expect(counts.left).toBeGreaterThanOrEqual(12);
      expect(counts.left).toBeLessThanOrEqual(28);
    } finally {
      task.dispose();
    }
  });

  it("driving straight at the target (the average of both modes) touches the pillar and fails", async () => {
    const task = (await createTask("avoid")) as AvoidTask;
    try {
      const { IkDriver, stepToward } = await import("../../sim/experts/plan.ts");
      const { Rng } = await import("../../policy/random.ts");
      task.reset(5);
      const driver = new IkDriver(task, new Rng(1), { gripper: 0, actionNoise: 0 });
      let cmd = task.env.eePos();
      const ep = await continueEpisode(task, () => {
        cmd = stepToward(cmd, task.target, 0.004);
        return driver.targetFor(cmd);
      });
      driver.dispose();
      expect(task.touched).toBe(true);
      expect(ep.success).toBe(false);
    } finally {
      task.dispose();
    }
  });
});
