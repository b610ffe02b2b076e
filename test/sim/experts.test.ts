import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createExpert } from "../../sim/experts/index.ts";
import { continueEpisode } from "../../sim/rollout.ts";
import type { EpisodeResult } from "../../sim/rollout.ts";
import { avoidMode } from "../../sim/tasks/avoid.ts";
import type { AvoidTask } from "../../sim/tasks/avoid.ts";
import { FORK_WALL, forkMode } from "../../sim/tasks/fork.ts";
import type { ForkTask } from "../../sim/tasks/fork.ts";
import { createTask, taskInfo } from "../../sim/tasks/index.ts";
import { episodeSvg } from "../../sim/svg.ts";
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

describe.each(["reach", "push", "avoid", "fork"] as TaskName[])("%s expert", (name) => {
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

describe("fork modes", () => {
  let task: ForkTask;
  beforeAll(async () => {
    task = (await createTask("fork")) as ForkTask;
  });
  afterAll(() => task.dispose());

  it("the expert forced either way succeeds through that gap without touching the wall, and forkMode sees it", async () => {
    for (let i = 0; i < 6; i++) {
      for (const mode of ["left", "right"] as const) {
        task.reset(200 + i);
        const expert = createExpert(task, mode);
        let ep: EpisodeResult;
        try {
          ep = await continueEpisode(task, () => expert.act());
        } finally {
          expert.dispose();
        }
        expect(expert.mode).toBe(mode);
        expect(ep.success).toBe(true);
        expect(task.touched).toBe(false);
        expect(task.modeOf(ep.eeTrace)).toBe(mode);
        // Through the gap: at the wall's plane the end effector is about a gap offset off the centre.
        const atWall = ep.eeTrace.filter((p) => Math.abs(p[0] - task.wall[0]) < 0.005);
        expect(atWall.length).toBeGreaterThan(0);
        for (const p of atWall)
          expect(Math.abs(p[1] - task.wall[1] - (mode === "left" ? 1 : -1) * FORK_WALL.gapOffset)).toBeLessThan(0.01);
      }
    }
    expect(() => createExpert(task, "up")).toThrow(/fork mode must be 'left' or 'right', got 'up'/);
  });

  it("forkMode reads the side at the wall's plane, and 'none' for a path that never reaches it", () => {
    const wall: [number, number, number] = [0.16, 0.004, 0.035];
    const path = (y: number): [number, number, number][] =>
      Array.from({ length: 30 }, (_, k) => [0.1 + 0.005 * k, y, 0.05] as [number, number, number]);
    expect(forkMode(path(0.064), wall)).toBe("left");
    expect(forkMode(path(-0.056), wall)).toBe("right");
    expect(forkMode(path(0).slice(0, 10), wall)).toBe("none");
    expect(forkMode([], wall)).toBe("none");
  });

  it("the average of both ways (paired, the same scene: one shared approach, then the split) runs into the wall: the contact ends the episode as a failure", async () => {
    for (const seed of [3, 4]) {
      const plans: Float32Array[] = [];
      for (const mode of ["left", "right"]) {
        task.reset(seed);
        const expert = createExpert(task, mode);
        plans.push(expert.plan?.(task.info.maxSteps) ?? new Float32Array());
        expert.dispose();
      }
      const [a, b] = plans as [Float32Array, Float32Array];
      const dim = task.env.dim;
      // The approach (at least 0.7 s) is shared: the same targets either way, then they part.
      const shared = Math.floor(0.7 * task.env.fps) - 1;
      expect(Array.from(a.subarray(0, shared * dim))).toEqual(Array.from(b.subarray(0, shared * dim)));
      expect(Array.from(a.subarray(60 * dim, 61 * dim))).not.toEqual(Array.from(b.subarray(60 * dim, 61 * dim)));
      task.reset(seed);
      const ep = await continueEpisode(task, (_obs, step) =>
        Float32Array.from({ length: dim }, (_, j) => ((a[step * dim + j] ?? 0) + (b[step * dim + j] ?? 0)) / 2),
      );
      expect(task.touched).toBe(true);
      expect(task.failed && task.done).toBe(true);
      expect(ep.success).toBe(false);
      expect(ep.length).toBeLessThan(60);
      expect(ep.rewards[ep.length - 1]).toBe(0);
      expect(task.modeOf(ep.eeTrace)).toBe("none");
    }
  });

  it("pictures draw the wall's three pieces, leaving the gaps open", () => {
    task.reset(1);
    const m = task.markers();
    expect(m.walls?.length).toBe(3);
    const svg = episodeSvg({
      title: "fork",
      trace: [task.env.eePos()],
      markers: { start: m, end: m },
      outcome: "success",
    });
    expect(svg.match(/<rect [^>]*fill="#d32"/g)?.length).toBe(3);
    // The pieces' inner ends are a gap apart.
    const ys = (m.walls ?? []).map((w) => [w.center[1] - w.halfSize[1], w.center[1] + w.halfSize[1]]);
    const mid = ys[0] as number[];
    const left = ys[1] as number[];
    expect((left[0] ?? 0) - (mid[1] ?? 0)).toBeCloseTo(FORK_WALL.gapWidth, 9);
  });
});
