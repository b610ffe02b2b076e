/**
 * The loop's local policy takes the chunk rate and the trained prefix length from the threaded
 * policy, which parsed them from the export's metadata once.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLocalPolicy } from "../../bridge/local-policy.ts";
import { exportOnnx } from "../../policy/onnx/export.ts";
import { tinyModel, writeTinyCheckpoint } from "../policy/onnx/fixture.ts";

let root: string;
let prefixTrained: string;
let plain: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "actionflow-local-policy-"));
  const m = tinyModel("mlp", { features: "state" });
  prefixTrained = join(root, "rtc");
  await writeTinyCheckpoint(prefixTrained, { ...m, config: { ...m.config, rtcMaxDelay: 1, fps: 20 } });
  await exportOnnx(prefixTrained, { steps: 2, solver: "euler" });
  plain = join(root, "plain");
  await writeTinyCheckpoint(plain, m);
  await exportOnnx(plain, { steps: 2, solver: "euler" });
}, 120_000);
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("startLocalPolicy", () => {
  it("announces the export's fps and rtcMaxDelay, as the threaded policy read them", async () => {
    const lp = await startLocalPolicy(prefixTrained, { threads: 1, warmupRuns: 1 });
    try {
      expect([lp.fps, lp.rtcMaxDelay]).toEqual([20, 1]);
      expect([lp.threaded.fps, lp.threaded.rtcMaxDelay]).toEqual([20, 1]);
    } finally {
      await lp.close();
    }
  }, 60_000);

  it("an fps option overrides the export's; an export without them has no fps and rtcMaxDelay 0", async () => {
    const over = await startLocalPolicy(prefixTrained, { threads: 1, warmupRuns: 0, fps: 10 });
    try {
      expect(over.fps).toBe(10);
    } finally {
      await over.close();
    }
    const lp = await startLocalPolicy(plain, { threads: 1, warmupRuns: 0 });
    try {
      expect("fps" in lp).toBe(false);
      expect(lp.rtcMaxDelay).toBe(0);
    } finally {
      await lp.close();
    }
  }, 60_000);
});
