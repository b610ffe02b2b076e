/**
 * The merge flags: their declaration, their mapping to the executor's settings, and that the same
 * flags mean the same in closed-loop evaluation (`sim eval`) and in the real-time loop (`sim run`,
 * `serve --robot`): one request stream for one timeline of inference delays.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addMergeOptions } from "../../cli/merge-options.ts";
import { LoopExecutor, type LoopTicket } from "../../bridge/merge.ts";
import type { ChunkPolicy } from "../../policy/chunk-policy.ts";
import { chunkMergeFrom, type ChunkMerge, type MergeFlags } from "../../policy/runtime/executor.ts";
import { evaluate } from "../../sim/eval.ts";

const parse = (args: string[], defaults: { nActionSteps?: number } = {}): MergeFlags => {
  const cmd = addMergeOptions(new Command().exitOverride(), "blend", defaults);
  cmd.parse(args, { from: "user" });
  return cmd.opts<MergeFlags>();
};

describe("merge options", () => {
  it("maps the flags to the executor's merge settings", () => {
    expect(chunkMergeFrom(parse([]))).toEqual({ mode: "blend" });
    expect(chunkMergeFrom(parse(["--merge", "rtc", "--n-action-steps", "6"]))).toEqual({
      mode: "rtc",
      executionHorizon: 6,
    });
    expect(chunkMergeFrom(parse(["--merge", "rtc", "--prefix-steps", "8"]))).toEqual({
      mode: "rtc",
      prefixSteps: 8,
    });
    expect(chunkMergeFrom(parse(["--merge", "sync", "--n-action-steps", "8"]))).toEqual({
      mode: "sync",
      nActionSteps: 8,
    });
    expect(chunkMergeFrom(parse(["--merge", "sync", "--n-action-steps", "4", "--prefix-steps", "2"]))).toEqual({
      mode: "sync",
      nActionSteps: 4,
      prefixSteps: 2,
    });
    expect(chunkMergeFrom(parse(["--aggregate", "latest_only"]))).toEqual({
      mode: "blend",
      aggregate: "latest_only",
    });
  });

  it("a command's --n-action-steps default applies to the modes that take it (sim eval: 8)", () => {
    const d = { nActionSteps: 8 };
    expect(chunkMergeFrom(parse(["--merge", "sync"], d), d)).toEqual({ mode: "sync", nActionSteps: 8 });
    expect(chunkMergeFrom(parse(["--merge", "rtc"], d), d)).toEqual({ mode: "rtc", executionHorizon: 8 });
    expect(chunkMergeFrom(parse(["--merge", "rtc", "--n-action-steps", "5"], d), d)).toEqual({
      mode: "rtc",
      executionHorizon: 5,
    });
    expect(chunkMergeFrom(parse(["--merge", "ensemble"], d), d)).toEqual({ mode: "ensemble" });
    expect(parse(["--merge", "sync"], d).nActionSteps).toBeUndefined(); // the flag itself has no default
  });

  it("refuses a flag the mode does not use and a mode that does not exist", () => {
    expect(() => chunkMergeFrom(parse(["--merge", "rtc", "--aggregate", "average"]))).toThrow(
      "--aggregate applies to --merge blend, not rtc",
    );
    expect(() => chunkMergeFrom(parse(["--merge", "ensemble", "--n-action-steps", "4"]))).toThrow(
      "--n-action-steps applies to --merge sync or rtc, not ensemble",
    );
    expect(() => chunkMergeFrom(parse(["--merge", "blend", "--prefix-steps", "4"]))).toThrow(
      "--prefix-steps applies to --merge sync or rtc, not blend",
    );
    expect(() => chunkMergeFrom({ merge: "latest" as never })).toThrow(
      "--merge: unknown mode 'latest' (valid: sync, ensemble, blend, rtc)",
    );
    expect(() => parse(["--merge", "latest"])).toThrow(/argument 'latest' is invalid/);
    expect(() => parse(["--n-action-steps", "0"])).toThrow("--n-action-steps: expected a positive integer, got '0'");
  });
});

describe("--prefix-steps means the same in sim eval and in the real-time loop", () => {
  const H = 6;
  const A = 6;
  const DELAY = 1;
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "actionflow-merge-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Chunk k holds 0.001 * (100 k + step) in every dim; records each request's prefix (dim 0). */
  const numbered = (): { policy: ChunkPolicy; prefixes: (number[] | undefined)[] } => {
    const prefixes: (number[] | undefined)[] = [];
    const policy: ChunkPolicy = {
      horizon: H,
      actionDim: A,
      rtcMaxDelay: 3,
      reset: () => undefined,
      sampleChunk: (_obs, req) => Promise.resolve(chunkNo(prefixes.push(dim0(req?.prefix)) - 1)),
    };
    return { policy, prefixes };
  };
  const chunkNo = (k: number): Float32Array => {
    const out = new Float32Array(H * A);
    for (let i = 0; i < H; i++) out.fill(0.001 * (100 * k + i), i * A, (i + 1) * A);
    return out;
  };
  const dim0 = (p: Float32Array | undefined): number[] | undefined =>
    p ? Array.from({ length: p.length / A }, (_, i) => p[i * A]!) : undefined;

  /**
   * The loop's executor over `steps` control steps, each chunk arriving DELAY steps after its
   * request (as the loop sees it between ticks), the measured delay DELAY.
   */
  const loopPrefixes = (merge: ChunkMerge, steps: number): (number[] | undefined)[] => {
    const ex = new LoopExecutor(merge, { horizon: H, actionDim: A, rtcMaxDelay: 3 }, 30);
    const prefixes: (number[] | undefined)[] = [];
    let pending: { ticket: LoopTicket; arrive: number; chunk: Float32Array } | undefined;
    for (let k = 0; k < steps; k++) {
      if (pending && k >= pending.arrive) {
        expect(ex.merge(pending.ticket, pending.chunk, k)).toBe("merged");
        pending = undefined;
      }
      if (!pending && ex.wantsChunk(k)) {
        const ticket = ex.request(k, DELAY);
        prefixes.push(dim0(ticket.prefix));
        pending = { ticket, arrive: k + DELAY, chunk: chunkNo(prefixes.length - 1) };
      }
      ex.actionAt(k);
    }
    return prefixes;
  };

  for (const args of [
    ["--merge", "sync", "--n-action-steps", "3", "--prefix-steps", "2"],
    ["--merge", "rtc", "--n-action-steps", "3", "--prefix-steps", "2"],
    ["--merge", "rtc", "--n-action-steps", "3"],
  ]) {
    it(args.join(" "), async () => {
      const merge = chunkMergeFrom(parse(args));
      const { policy, prefixes } = numbered();
      const info = await evaluate({
        task: "reach",
        policy,
        episodes: 1,
        seed: 0,
        merge,
        delaySteps: DELAY,
        outDir: join(dir, args.join("")),
      });
      const steps = info.per_episode[0]!.length;
      expect(prefixes.length).toBeGreaterThan(10);
      expect(loopPrefixes(merge, steps)).toEqual(prefixes);
      const p = "prefixSteps" in merge ? (merge.prefixSteps ?? 0) : 0;
      // every request after the first commits max(p, d) actions in rtc, exactly p in sync
      const want = merge.mode === "rtc" ? Math.max(p, DELAY) : p;
      expect(prefixes.slice(1).every((x) => x?.length === want)).toBe(true);
    });
  }
});
