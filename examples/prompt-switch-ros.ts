/**
 * A task prompt changed mid-episode over ROS: `fork-instructed` driven by a prompt-conditioned policy
 * through the test rosbridge (`sim run --via ros`), started with one instruction; a separate ROS
 * client publishes the other on the prompt topic (`std_msgs/String`) `--after-s` seconds after the
 * first command reached the arm, before the fork's split. Even episodes switch left to right, odd
 * ones right to left. Prints one JSON object: the share of episodes that took the new way, success.
 *
 *   npx tsx examples/prompt-switch-ros.ts --policy runs/fork-instructed --episodes 20 --json
 */
import { parseArgs } from "node:util";
import { Ros, Topic } from "roslib";
import { loadRobotProfile } from "../bridge/profile.ts";
import { defaultSimProfile, runSim } from "../sim/run.ts";
import { TestRosbridge } from "../test/bridge/rosbridge-server.ts";

const { values } = parseArgs({
  options: {
    policy: { type: "string" },
    episodes: { type: "string", default: "20" },
    seed: { type: "string", default: "1000" },
    "after-s": { type: "string", default: "0.25" },
    seconds: { type: "string", default: "15" },
    merge: { type: "string", default: "sync" },
    "n-action-steps": { type: "string", default: "8" },
    json: { type: "boolean", default: false },
  },
});
if (!values.policy) throw new Error("--policy <run>: a policy trained on fork-instructed demonstrations");
const episodes = Number(values.episodes);
const base = Number(values.seed);
const afterS = Number(values["after-s"]);
const LEFT = "pass through the left gap";
const RIGHT = "pass through the right gap";
const TOPIC = "/task/prompt";

const profile = await loadRobotProfile(defaultSimProfile("fork-instructed"));
const server = await TestRosbridge.create({ dialect: 2 });
const ros = new Ros({});
await ros.connect(server.url);
const prompt = new Topic<Record<string, unknown>>({ ros, name: TOPIC, messageType: "std_msgs/String" });
const command = new Topic<unknown>({ ros, name: profile.ros.command, messageType: "trajectory_msgs/JointTrajectory" });
let armed: (() => void) | undefined;
command.subscribe(() => {
  const fire = armed;
  armed = undefined;
  fire?.();
});
const runs: { seed: number; from: string; to: string; mode: string | null; success: boolean; received: string[] }[] =
  [];
try {
  for (let k = 0; k < episodes; k++) {
    const [from, to] = k % 2 === 0 ? [LEFT, RIGHT] : [RIGHT, LEFT];
    armed = () => setTimeout(() => prompt.publish({ data: to }), afterS * 1000);
    const r = await runSim({
      task: "fork-instructed",
      policy: values.policy,
      via: "ros",
      ros: server.url,
      prompt: from,
      promptTopic: TOPIC,
      merge: values.merge as "sync" | "blend" | "ensemble" | "rtc",
      nActionSteps: Number(values["n-action-steps"]),
      publish: "step",
      seconds: Number(values.seconds),
      seed: base + k,
      horizon: 16,
      provider: "cpu",
    });
    armed = undefined;
    runs.push({ seed: base + k, from, to, mode: r.mode, success: r.success, received: r.promptsReceived });
    if (!values.json)
      process.stderr.write(`seed ${base + k}: ${from} -> ${to}: went ${r.mode}, success ${r.success}\n`);
  }
} finally {
  ros.close();
  await server.stop();
}
const wayOf = (text: string): string => (text === LEFT ? "left" : "right");
const result = {
  episodes: runs.length,
  afterS,
  tookNewWay: runs.filter((r) => r.mode === wayOf(r.to)).length / runs.length,
  pc_success: (100 * runs.filter((r) => r.success).length) / runs.length,
  switchedInTime: runs.filter((r) => r.received.length === 1).length,
  runs,
};
process.stdout.write(JSON.stringify(result) + "\n");
