/**
 * `sim run --log`: runSim writes the run log of the in-process transports (one command message per
 * command sent, the metadata records) and refuses it for `--via ros` before starting anything.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { McapIndexedReader } from "@mcap/core";
import { afterAll, describe, expect, it } from "vitest";
import { runSim, type SimRunOptions } from "../../../sim/run.ts";

const dir = mkdtempSync(join(tmpdir(), "actionflow-simlog-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base: SimRunOptions = {
  task: "reach",
  policy: "expert",
  via: "direct",
  merge: "sync",
  publish: "step",
  seconds: 10,
  seed: 2,
  horizon: 16,
  provider: "cpu",
};

describe("runSim with a run log", () => {
  it("writes one command message per command sent, and the profile, policy and command line", async () => {
    const path = join(dir, "reach.mcap");
    const r = await runSim({ ...base, runLog: path, argv: ["sim", "run", "--log", path] });
    expect(r.success).toBe(true);
    expect(r.runLog).toMatchObject({ file: path, dropped: 0 });
    const bytes = new Uint8Array(readFileSync(path));
    expect(r.runLog?.bytes).toBe(bytes.length);
    const reader = await McapIndexedReader.Initialize({
      readable: {
        size: async () => BigInt(bytes.length),
        read: async (offset, length) => bytes.subarray(Number(offset), Number(offset + length)),
      },
    });
    const counts: Record<string, number> = {};
    let n = 0;
    for await (const m of reader.readMessages()) {
      const topic = reader.channelsById.get(m.channelId)?.topic ?? "?";
      counts[topic] = (counts[topic] ?? 0) + 1;
      n++;
    }
    expect(counts["/arm_controller/joint_trajectory"]).toBe(r.sent);
    expect(counts["/joint_states"]).toBeGreaterThan(0);
    expect(n + 3).toBe(r.runLog?.records);
    expect(reader.metadataIndexes.map((m) => m.name)).toEqual(["profile", "policy", "command line"]);
  }, 60_000);

  it("is refused for --via ros, naming the flag", async () => {
    await expect(runSim({ ...base, via: "ros", ros: "ws://127.0.0.1:1", runLog: join(dir, "x.mcap") })).rejects.toThrow(
      /--log: run logs are written for the in-process transports, not --via ros/,
    );
  });
});
