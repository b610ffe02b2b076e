/**
 * Soak: 8 simulated hours at 50 Hz (1.44 M ticks) through the real ControlLoop on the fake clock,
 * with a policy whose chunks arrive at once and an in-process robot whose joints follow the commands.
 * The loop's memory and the cost of reading its statistics must not grow with the run's length.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import type { ChunkPolicy, Observation } from "../../policy/chunk-policy.ts";
import { ControlLoop } from "../../bridge/loop.ts";
import type { LoopStats } from "../../bridge/loop.ts";
import type {
  FeatureSample,
  JointStateSample,
  LoopDiagnostics,
  RobotCommand,
  RobotLink,
  SendResult,
} from "../../bridge/robot-link.ts";
import type { Scheduler } from "../../bridge/scheduler.ts";
import { FakeScheduler } from "./fake-scheduler.ts";
import { testProfile } from "./fakes.ts";

/** `global.gc`, exposed at run time when the worker was started without `--expose-gc`. */
function collector(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
}

/** A robot in process: its joints reach each command, its joint state is always fresh; keeps counts only. */
class FollowerLink implements RobotLink {
  readonly connected = true;
  readonly epoch = 1;
  readonly estopRequest: string | undefined = undefined;
  sent = 0;
  diagnosticsCount = 0;
  private readonly q: Float64Array;
  constructor(
    private readonly sched: Scheduler,
    joints: number,
  ) {
    this.q = new Float64Array(joints);
  }
  jointState(): JointStateSample {
    return { positions: this.q, atS: this.sched.now(), epoch: this.epoch };
  }
  feature(): FeatureSample | undefined {
    return undefined;
  }
  send(cmd: RobotCommand): SendResult {
    if (cmd.kind === "positions") this.q.set(cmd.positions);
    else this.q.set(cmd.points[0] as Float64Array);
    this.sent++;
    return "sent";
  }
  diagnostics(_d: LoopDiagnostics): void {
    this.diagnosticsCount++;
  }
}

/** A policy whose chunk is ready at once: a small sine around the observed state. */
class InstantPolicy implements ChunkPolicy {
  readonly horizon = 50;
  readonly actionDim = 2;
  calls = 0;
  sampleChunk(obs: Observation): Promise<Float32Array> {
    const s = obs["observation.state"] as Float32Array;
    const out = new Float32Array(this.horizon * this.actionDim);
    const phase = this.calls++ * 0.1;
    for (let i = 0; i < this.horizon; i++)
      for (let a = 0; a < this.actionDim; a++)
        out[i * this.actionDim + a] = (s[a] ?? 0) * 0.5 + 0.01 * Math.sin(phase + i * 0.02 + a);
    return Promise.resolve(out);
  }
  reset(): void {}
}

/** Median wall time (ms) of one `stats()` call over `n` calls. */
function statsCostMs(loop: ControlLoop, n: number): number {
  const times: number[] = [];
  let sink = 0;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const st: LoopStats = loop.stats();
    times.push(performance.now() - t0);
    sink += st.jitterP99Ms;
  }
  expect(Number.isFinite(sink)).toBe(true);
  times.sort((a, b) => a - b);
  return times[Math.floor(n / 2)] as number;
}

describe("ControlLoop soak", () => {
  it("runs 8 simulated hours at 50 Hz in fixed memory, stats() costing the same at hour 1 and 8", async () => {
    const gc = collector();
    const heapMb = (): number => {
      for (let i = 0; i < 3; i++) gc();
      return process.memoryUsage().heapUsed / 2 ** 20;
    };
    const s = new FakeScheduler();
    const link = new FollowerLink(s, 2);
    const policy = new InstantPolicy();
    const loop = new ControlLoop({
      policy,
      link,
      profile: testProfile({ command_interface: "forward" }),
      scheduler: s,
      merge: { mode: "blend", aggregate: "latest_only" },
    });
    // once an hour (the tick due at 30 min 20 ms) a tick runs 3 ms late: 8 samples apart from 0
    const lateS = (t: number): number => (Math.abs((t % 3600) - 1800.02) < 1e-6 ? 0.003 : 0);
    loop.start();
    let hour1 = { heap: 0, cost: 0, st: undefined as LoopStats | undefined };
    for (let h = 1; h <= 8; h++) {
      await s.advance(3600 - (h === 8 ? 1e-9 : 0), { lateS });
      if (h === 1) hour1 = { heap: heapMb(), cost: statsCostMs(loop, 2001), st: loop.stats() };
    }
    const heap8 = heapMb();
    const cost8 = statsCostMs(loop, 2001);
    const st = loop.stop();

    // every deadline of 8 h at 50 Hz ticked, none missed
    expect(st.ticks).toBe(8 * 3600 * 50);
    expect(st.missedDeadlines).toBe(0);
    expect(hour1.st?.ticks).toBe(3600 * 50 + 1);
    expect(st.loopErrors).toBe(0);
    expect(st.inferErrors).toBe(0);
    expect(st.inferCount).toBe(policy.calls);
    expect(st.queueEmptyEvents).toBe(0);
    expect(st.sent).toBe(link.sent);
    expect(st.sent).toBeGreaterThan(st.ticks - 5);
    expect(link.diagnosticsCount).toBeGreaterThanOrEqual(8 * 3600);
    // 8 ticks 3 ms late, the rest on time: p50 and p99 are 0, the max exact
    expect(st.jitterP50Ms).toBe(0);
    expect(st.jitterP99Ms).toBe(0);
    expect(st.jitterMaxMs).toBeCloseTo(3, 6);
    // the recent window holds the latest 10 s of ticks
    expect(st.recent.ticks).toBe(500);
    expect(st.recent.jitterMaxMs).toBe(0);

    // fixed memory: the heap after hour 8 within 5 MB of after hour 1
    expect(Math.abs(heap8 - hour1.heap)).toBeLessThan(5);
    // stats() does not grow with the run (a generous ratio of medians, safe on a loaded machine)
    expect(cost8).toBeLessThan(3 * Math.max(hour1.cost, 0.005));
    console.log(
      `soak: ${st.ticks} ticks, heap ${hour1.heap.toFixed(2)} -> ${heap8.toFixed(2)} MB, stats() median ${(hour1.cost * 1000).toFixed(1)} -> ${(cost8 * 1000).toFixed(1)} us`,
    );
  });
});
