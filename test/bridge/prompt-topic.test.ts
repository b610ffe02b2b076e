/**
 * Task prompts over rosbridge: a `std_msgs/String` on the profile's prompt topic sets the prompt of
 * a prompt-conditioned policy from its next chunk on; a prompt the policy does not know is refused
 * (the log line names the known ones) and the current one stays; a policy without prompts refuses
 * every one.
 */
import { describe, expect, it } from "vitest";
import { driveRobot } from "../../bridge/drive.ts";
import { realScheduler } from "../../bridge/scheduler.ts";
import type { ChunkRequest, Observation } from "../../policy/chunk-policy.ts";
import { promptIndex } from "../../policy/net/prompt.ts";
import { FakePolicy, testProfile } from "./fakes.ts";
import { TestRosbridge } from "./rosbridge-server.ts";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A policy with two prompts whose chunks go to +0.3 ("go left") or -0.3 ("go right") on joint a. */
class PromptedPolicy extends FakePolicy {
  readonly prompts = ["go left", "go right"];
  private current = 0;
  readonly used: string[] = [];
  setPrompt(text: string): void {
    this.current = promptIndex(this.prompts, text);
  }
  override sampleChunk(obs: Observation, req?: ChunkRequest): Promise<Float32Array> {
    this.used.push(this.prompts[this.current]!);
    return super.sampleChunk(obs, req);
  }
  target(): number {
    return this.current === 0 ? 0.3 : -0.3;
  }
}

async function withBridge(profileOver: Record<string, unknown>) {
  const server = await TestRosbridge.create({ dialect: 2 });
  server.declareTopic("/joint_states", "sensor_msgs/JointState");
  server.declareTopic("/task/prompt", "std_msgs/String");
  const js = setInterval(
    () => server.publishFromRos("/joint_states", "sensor_msgs/JointState", { name: ["a", "b"], position: [0, 0] }),
    5,
  );
  const profile = testProfile({
    ros: { version: 2, joint_states: "/joint_states", command: "/arm/joint_trajectory", ...profileOver },
  });
  return { server, profile, stop: async () => (clearInterval(js), await server.stop()) };
}

describe("the prompt topic", () => {
  it("switches the policy's prompt at its next chunk and refuses an unknown one, naming the known ones", async () => {
    const { server, profile, stop } = await withBridge({ prompt: "/task/prompt" });
    const sched = realScheduler();
    let policy!: PromptedPolicy;
    policy = new PromptedPolicy({
      horizon: 10,
      actionDim: 2,
      scheduler: sched,
      latencyS: 0.01,
      chunk: () => Float32Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? policy.target() : 0)),
    });
    const lines: string[] = [];
    try {
      const run = driveRobot({
        url: server.url,
        profile,
        policy,
        merge: { mode: "sync", nActionSteps: 5 },
        seconds: 1.6,
        scheduler: sched,
        log: (l) => lines.push(l),
      });
      await sleep(600);
      const before = policy.used.length;
      server.publishFromRos("/task/prompt", "std_msgs/String", { data: "Go right." });
      await sleep(400);
      server.publishFromRos("/task/prompt", "std_msgs/String", { data: "fly away" });
      const res = await run;
      expect(before).toBeGreaterThan(2);
      expect(policy.used.slice(0, before).every((p) => p === "go left")).toBe(true);
      // every chunk after the switch (allowing the one in flight) is conditioned on the new prompt
      const after = policy.used.slice(before + 1);
      expect(after.length).toBeGreaterThan(2);
      expect(after.every((p) => p === "go right")).toBe(true);
      expect(res.loop.prompts).toEqual({ accepted: 1, rejected: 1, current: "Go right." });
      expect(lines.some((l) => /prompt at step \d+: "Go right\."/.test(l))).toBe(true);
      expect(lines.some((l) => /prompt "fly away" refused .*"go left", "go right"/.test(l))).toBe(true);
      // the arm went where the new prompt says (from +0.3; the smoothing joins the chunks, so it
      // approaches -0.3 over a few steps rather than jumping)
      const last = server.received("/arm/joint_trajectory").at(-1)!.msg as { points: { positions: number[] }[] };
      expect(last.points[0]!.positions[0]).toBeCloseTo(-0.3, 2);
    } finally {
      await stop();
    }
  }, 20_000);

  it("refuses prompts for a policy that takes none", async () => {
    const { server, profile, stop } = await withBridge({ prompt: "/task/prompt" });
    const sched = realScheduler();
    const lines: string[] = [];
    try {
      const run = driveRobot({
        url: server.url,
        profile,
        policy: new FakePolicy({ horizon: 10, actionDim: 2, scheduler: sched, latencyS: 0.01 }),
        seconds: 0.8,
        scheduler: sched,
        log: (l) => lines.push(l),
      });
      await sleep(400);
      server.publishFromRos("/task/prompt", "std_msgs/String", { data: "go left" });
      const res = await run;
      expect(res.loop.prompts).toEqual({ accepted: 0, rejected: 1, current: null });
      expect(lines.some((l) => /refused .*the policy takes no prompt/.test(l))).toBe(true);
    } finally {
      await stop();
    }
  }, 20_000);
});
