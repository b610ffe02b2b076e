import { execFile } from "node:child_process";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openLeRobot } from "../../datasets/lerobot/reader.ts";
import { LeRobotWriter } from "../../datasets/lerobot/writer.ts";
import { writeJsonAtomic } from "../../policy/io/atomic.ts";
import { collect } from "../../sim/collect.ts";
import type { ActionflowMeta } from "../../sim/collect.ts";
import { evaluate } from "../../sim/eval.ts";
import type { EvalInfo } from "../../sim/eval.ts";
import { ExpertChunkPolicy } from "../../sim/policy.ts";
import type { ChunkPolicy } from "../../policy/chunk-policy.ts";
import { readActionflowMeta, replay } from "../../sim/replay.ts";

const run = promisify(execFile);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "actionflow-sim-record-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("sim collect + replay", () => {
  it("records a LeRobot v3.0 dataset whose episodes replay to success with zero tracking error", async () => {
    const out = join(dir, "push");
    const r = await collect({ task: "push", episodes: 3, seed: 40, out });
    expect(r.episodes).toBe(3);
    expect(r.modeShare).toBeNull();
    expect(r.expertSuccess).toBeGreaterThan(0);
    const ds = await openLeRobot(out);
    expect(ds.codebaseVersion).toBe("v3.0");
    expect(ds.fps).toBe(30);
    expect(ds.episodes.length).toBe(3);
    expect(ds.totalFrames).toBe(r.frames);
    expect(ds.features["observation.state"]?.shape).toEqual([6]);
    expect(ds.features["observation.environment_state"]?.shape).toEqual([8]);
    expect(ds.features["action"]?.names).toEqual([
      "shoulder_pan",
      "shoulder_lift",
      "elbow_flex",
      "wrist_flex",
      "wrist_roll",
      "gripper",
    ]);
    expect(ds.tasks).toEqual(["Push the blue puck into the green goal region."]);
    const meta = await readActionflowMeta(out);
    expect(meta.episodes.map((e) => e.episode_index)).toEqual([0, 1, 2]);
    for (let k = 0; k < 3; k++) {
      const rep = await replay({ dataset: out, episode: k });
      expect(rep.success).toBe(true);
      expect(rep.trackingErrorRad).toBe(0);
      expect(rep.frames).toBe(ds.episodes[k]?.length);
      expect(rep.seed).toBe(meta.episodes[k]?.seed);
    }
  });

  it("avoid records the expert's mode per episode and reports the left/right share", async () => {
    const out = join(dir, "avoid");
    const r = await collect({ task: "avoid", episodes: 6, seed: 3, out });
    expect(r.modeShare).not.toBeNull();
    const [left, right] = r.modeShare ?? [0, 0];
    expect(left + right).toBeCloseTo(1, 12);
    const meta = JSON.parse(await readFile(join(out, "meta", "actionflow.json"), "utf8")) as ActionflowMeta;
    expect(meta.episodes.every((e) => e.mode === "left" || e.mode === "right")).toBe(true);
    expect(meta.episodes.filter((e) => e.mode === "left").length / 6).toBeCloseTo(left, 12);
    const rep = await replay({ dataset: out, episode: 5 });
    expect(rep.success).toBe(true);
    expect(rep.trackingErrorRad).toBe(0);
  });

  it("paired avoid demonstrations show every scene both ways round from the same first frame", async () => {
    const out = join(dir, "avoid-paired");
    const r = await collect({ task: "avoid", episodes: 4, seed: 7, out, paired: true });
    expect(r.modeShare).toEqual([0.5, 0.5]);
    const meta = JSON.parse(await readFile(join(out, "meta", "actionflow.json"), "utf8")) as ActionflowMeta;
    expect(meta.episodes.map((e) => [e.seed, e.mode])).toEqual([
      [7, "left"],
      [7, "right"],
      [8, "left"],
      [8, "right"],
    ]);
    const ds = await openLeRobot(out);
    const cols = ["observation.state", "observation.environment_state"];
    const [a, b] = [await ds.readEpisode(0, cols), await ds.readEpisode(1, cols)];
    for (const c of cols) {
      const dim = ds.features[c]!.shape[0]!;
      expect(Array.from((a[c] as Float32Array).subarray(0, dim))).toEqual(
        Array.from((b[c] as Float32Array).subarray(0, dim)),
      );
    }
    // The two sides really differ: the end effector passes the pillar at opposite y.
    const env = ds.features["observation.environment_state"]!.shape[0]!;
    const sideOf = (x: Float32Array): number => {
      const last = x.length / env - 1;
      let y = 0;
      for (let t = 0; t <= last; t++)
        if (Math.abs(x[t * env + 5]! - x[t * env + 3]!) < 0.02) y = x[t * env + 6]! - x[t * env + 4]!;
      return Math.sign(y);
    };
    expect(sideOf(a["observation.environment_state"] as Float32Array)).toBe(1);
    expect(sideOf(b["observation.environment_state"] as Float32Array)).toBe(-1);
    const rep = await replay({ dataset: out, episode: 3 });
    expect(rep.success).toBe(true);
    await expect(
      collect({ task: "reach", episodes: 2, seed: 0, out: join(dir, "reach-paired"), paired: true }),
    ).rejects.toThrow(/paired demonstrations need a task with two modes \(avoid, fork, fork-instructed\), not reach/);
  });

  it("paired fork demonstrations go through both gaps from the same first frame, replay, and evaluate with modes", async () => {
    const out = join(dir, "fork-paired");
    const r = await collect({ task: "fork", episodes: 4, seed: 11, out, paired: true });
    expect(r.modeShare).toEqual([0.5, 0.5]);
    const meta = JSON.parse(await readFile(join(out, "meta", "actionflow.json"), "utf8")) as ActionflowMeta;
    expect(meta.episodes.map((e) => [e.seed, e.mode])).toEqual([
      [11, "left"],
      [11, "right"],
      [12, "left"],
      [12, "right"],
    ]);
    const ds = await openLeRobot(out);
    const col = "observation.environment_state";
    const [a, b] = [await ds.readEpisode(2, [col]), await ds.readEpisode(3, [col])];
    const env = ds.features[col]!.shape[0]!;
    expect(Array.from((a[col] as Float32Array).subarray(0, env))).toEqual(
      Array.from((b[col] as Float32Array).subarray(0, env)),
    );
    const rep = await replay({ dataset: out, episode: 1 });
    expect(rep.success).toBe(true);
    expect(rep.trackingErrorRad).toBe(0);
    const info = await evaluate({
      task: "fork",
      policy: (t) => new ExpertChunkPolicy(t, { horizon: 16 }),
      episodes: 4,
      seed: 2000,
      nActionSteps: 8,
      outDir: join(dir, "eval-fork"),
    });
    expect(info.aggregated.pc_success).toBe(100);
    expect(info.per_episode.every((e) => e.mode === "left" || e.mode === "right")).toBe(true);
    const [left, right] = info.aggregated.mode_share ?? [0, 0];
    expect(left + right).toBeCloseTo(1, 12);
    const svg = await readFile(join(dir, "eval-fork", "pictures", "eval_episode_0.svg"), "utf8");
    expect(svg.match(/<rect [^>]*fill="#d32"/g)?.length).toBe(3);
  });

  it("replay refuses a dataset whose action dims do not match the scene", async () => {
    const out = join(dir, "mismatch");
    const w = await LeRobotWriter.create(out, {
      fps: 30,
      features: {
        "observation.state": { dtype: "float32", shape: [5] },
        "observation.environment_state": { dtype: "float32", shape: [6] },
        action: { dtype: "float32", shape: [5] },
      },
    });
    await w.addEpisode({
      task: "reach",
      length: 2,
      frames: {
        "observation.state": new Float32Array(10),
        "observation.environment_state": new Float32Array(12),
        action: new Float32Array(10),
      },
    });
    await w.finish();
    const meta: ActionflowMeta = {
      format: "actionflow-sim/1",
      task: "reach",
      fps: 30,
      scene: { source: "actionflow-arm", joints: [], actuators: [] },
      seed: 0,
      attempts: 1,
      expertSuccess: 1,
      episodes: [{ episode_index: 0, seed: 0, attempt: 0, success: true }],
    };
    await writeJsonAtomic(join(out, "meta", "actionflow.json"), meta);
    await expect(replay({ dataset: out, episode: 0 })).rejects.toThrow(
      /dataset has 5 action dims and 5 state dims but the actionflow-arm scene takes 6/,
    );
    await expect(replay({ dataset: out, episode: 3 })).rejects.toThrow(/no episode 3/);
    const metaFile = join(out, "meta", "actionflow.json");
    await writeJsonAtomic(metaFile, { ...meta, task: "juggle", episodes: [{ ...meta.episodes[0], seed: null }] });
    await expect(replay({ dataset: out, episode: 0 })).rejects.toThrow(
      `${metaFile}: task: expected one of "reach", "push", "avoid", "fork", "fork-instructed", got "juggle"; episodes[0].seed: expected number, got null; not an actionflow-sim/1 file`,
    );
  });
});

describe("sim eval", () => {
  it("the scripted expert as a chunk policy succeeds and writes eval_info.json in LeRobot's layout plus SVGs", async () => {
    const out = join(dir, "eval-avoid");
    const info = await evaluate({
      task: "avoid",
      policy: (t) => new ExpertChunkPolicy(t, { horizon: 16 }),
      episodes: 4,
      seed: 1000,
      nActionSteps: 8,
      outDir: out,
    });
    expect(info.aggregated.pc_success).toBe(100);
    const onDisk = JSON.parse(await readFile(join(out, "eval_info.json"), "utf8")) as EvalInfo;
    expect(onDisk.per_episode.length).toBe(4);
    for (const [i, e] of onDisk.per_episode.entries()) {
      expect(Object.keys(e)).toEqual(
        expect.arrayContaining(["episode_ix", "sum_reward", "max_reward", "success", "seed"]),
      );
      expect(e.episode_ix).toBe(i);
      expect(e.seed).toBe(1000 + i);
      expect(e.max_reward).toBe(1);
    }
    expect(Object.keys(onDisk.aggregated)).toEqual(
      expect.arrayContaining(["avg_sum_reward", "avg_max_reward", "pc_success", "eval_s", "eval_ep_s"]),
    );
    const pics = (await readdir(join(out, "pictures"))).sort();
    expect(pics).toEqual(["eval_episode_0.svg", "eval_episode_1.svg", "eval_episode_2.svg", "eval_episode_3.svg"]);
    const svg = await readFile(join(out, "pictures", pics[0] ?? ""), "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toContain("<polyline");
    expect(svg.length).toBeLessThan(8000);
  });

  it("a policy that holds still fails, and a wrong action dim or nActionSteps is refused", async () => {
    const still: ChunkPolicy = {
      horizon: 4,
      actionDim: 6,
      reset: () => undefined,
      sampleChunk: (obs) => {
        const s = obs["observation.state"] ?? new Float32Array(6);
        const out = new Float32Array(24);
        for (let i = 0; i < 4; i++) out.set(s, i * 6);
        return Promise.resolve(out);
      },
    };
    const info = await evaluate({
      task: "reach",
      policy: still,
      episodes: 2,
      seed: 0,
      nActionSteps: 4,
      outDir: join(dir, "eval-still"),
    });
    expect(info.aggregated.pc_success).toBe(0);
    expect(info.per_episode[0]?.length).toBe(150);
    await expect(
      evaluate({
        task: "reach",
        policy: { ...still, actionDim: 7 },
        episodes: 1,
        seed: 0,
        nActionSteps: 1,
        outDir: join(dir, "x"),
      }),
    ).rejects.toThrow(/predicts 7 action dims but the actionflow-arm scene takes 6/);
    await expect(
      evaluate({ task: "reach", policy: still, episodes: 1, seed: 0, nActionSteps: 5, outDir: join(dir, "x") }),
    ).rejects.toThrow(/nActionSteps must be an integer in \[1, horizon=4\]/);
  });

  it("refuses a chunk of the wrong length or holding NaN, naming the episode and step", async () => {
    const chunkOf = (values: number[]): ChunkPolicy => ({
      horizon: 2,
      actionDim: 6,
      reset: () => undefined,
      sampleChunk: () => Promise.resolve(Float32Array.from(values)),
    });
    const opts = { task: "reach" as const, episodes: 1, seed: 7, nActionSteps: 2, outDir: join(dir, "x") };
    await expect(evaluate({ ...opts, policy: chunkOf(new Array<number>(11).fill(0)) })).rejects.toThrow(
      /sim eval \(reach, seed 7, step 0\): chunk executor: the chunk has 11 values, expected horizon\*actionDim = 2\*6 = 12/,
    );
    const nan = new Array<number>(12).fill(0);
    nan[9] = Number.NaN;
    await expect(evaluate({ ...opts, policy: chunkOf(nan) })).rejects.toThrow(
      /seed 7, step 0\): .*non-finite action NaN at chunk step 1, dim 3; refused/,
    );
  });

  it("a simulated inference delay: sync waits for each chunk, rtc keeps executing its committed prefix", async () => {
    const H = 6;
    const calls: (number[] | undefined)[] = [];
    const numbered: ChunkPolicy = {
      horizon: H,
      actionDim: 6,
      rtcMaxDelay: 2,
      reset: () => undefined,
      sampleChunk: (_obs, req) => {
        const k = calls.length;
        calls.push(req?.prefix ? Array.from(req.prefix) : undefined);
        const out = new Float32Array(H * 6);
        for (let i = 0; i < H; i++) out.fill(0.001 * (100 * k + i), i * 6, (i + 1) * 6);
        return Promise.resolve(out);
      },
    };
    // smoothing off: the prefixes below are the chunks' own values
    const base = {
      task: "reach" as const,
      policy: numbered,
      episodes: 1,
      seed: 0,
      nActionSteps: 3,
      delaySteps: 2,
      smoothing: 0,
    };
    // sync: 3 actions, then a request whose chunk arrives 2 steps later: one request every 5 of 150 steps.
    const sync = await evaluate({ ...base, merge: "sync", outDir: join(dir, "eval-sync-delay") });
    expect(sync.per_episode[0]?.length).toBe(150);
    expect(calls).toHaveLength(30);
    expect(calls.every((c) => c === undefined)).toBe(true);
    // rtc: a request every 3 steps, each carrying the 2 actions that execute while it is computed.
    calls.length = 0;
    await evaluate({ ...base, merge: "rtc", outDir: join(dir, "eval-rtc-delay") });
    expect(calls).toHaveLength(50);
    expect(calls[0]).toBeUndefined();
    const planned = (k: number, steps = [3, 4]) =>
      steps.flatMap((i) => new Array<number>(6).fill(Math.fround(0.001 * (100 * k + i))));
    // The first chunk (the arm held while it was computed) starts at its arrival, step 2, from its action 0,
    // so at step 3 its actions 1 and 2 are committed; from then on each chunk runs from its action d = 2.
    expect(calls[1]).toEqual(planned(0, [1, 2]));
    expect(calls[2]).toEqual(planned(1));
    expect(calls[7]).toEqual(planned(6));
    // prefixSteps commits more than the delay: at a delay of 1, each request still carries 2 actions
    calls.length = 0;
    await evaluate({ ...base, merge: "rtc", delaySteps: 1, prefixSteps: 2, outDir: join(dir, "eval-rtc-commit") });
    expect(calls[0]).toBeUndefined();
    expect(calls.slice(1).every((c) => c?.length === 2 * 6)).toBe(true);
    expect(calls[2]).toEqual(planned(1));
    // A delay past what a prefix-trained policy learned to continue is refused.
    await expect(evaluate({ ...base, merge: "rtc", delaySteps: 3, outDir: join(dir, "x") })).rejects.toThrow(
      /a committed prefix of 3 steps \(inference delay 3, prefixSteps 0\) exceeds the 2 the policy was trained to continue/,
    );
  });

  it("with prefixSteps hands each new chunk the previous chunk's next planned actions, and restarts them per episode", async () => {
    const H = 6;
    const prefixes: (number[] | undefined)[] = [];
    let calls = 0;
    // Chunk k holds the values 100k + step in every action dim.
    const numbered: ChunkPolicy = {
      horizon: H,
      actionDim: 6,
      reset: () => undefined,
      sampleChunk: (_obs, req) => {
        prefixes.push(req?.prefix ? Array.from(req.prefix) : undefined);
        const k = calls++;
        const out = new Float32Array(H * 6);
        for (let i = 0; i < H; i++) out.fill(0.001 * (100 * k + i), i * 6, (i + 1) * 6);
        return Promise.resolve(out);
      },
    };
    await evaluate({
      task: "reach",
      policy: numbered,
      episodes: 2,
      seed: 0,
      nActionSteps: 3,
      prefixSteps: 2,
      smoothing: 0, // the prefixes are then the chunks' own planned values
      outDir: join(dir, "eval-prefix"),
    });
    expect(prefixes[0]).toBeUndefined();
    const expected = (k: number) =>
      [3, 4].flatMap((i) => new Array<number>(6).fill(Math.fround(0.001 * (100 * k + i))));
    expect(prefixes[1]).toEqual(expected(0));
    expect(prefixes[2]).toEqual(expected(1));
    // Episode 2 starts afresh: some call after the first episode's 50 has no prefix again.
    expect(prefixes.filter((p) => p === undefined)).toHaveLength(2);
    await expect(
      evaluate({
        task: "reach",
        policy: numbered,
        episodes: 1,
        seed: 0,
        nActionSteps: 3,
        prefixSteps: 4,
        outDir: join(dir, "x"),
      }),
    ).rejects.toThrow(/nActionSteps \+ prefixSteps <= horizon \(3 \+ 4 > 6\)/);
  });
});

describe("actionflow sim CLI", () => {
  it("collect --json prints one JSON object last, and the dataset replays", async () => {
    const out = join(dir, "cli-reach");
    const cli = join(process.cwd(), "cli", "main.ts");
    const tsx = join(process.cwd(), "node_modules", ".bin", "tsx");
    const c = await run(tsx, [
      cli,
      "sim",
      "collect",
      "--task",
      "reach",
      "--episodes",
      "2",
      "--seed",
      "5",
      "--out",
      out,
      "--json",
    ]);
    const lines = c.stdout.trim().split("\n");
    const res = JSON.parse(lines[lines.length - 1] ?? "") as {
      episodes: number;
      frames: number;
      expertSuccess: number;
      modeShare: unknown;
    };
    expect(res.episodes).toBe(2);
    expect(res.expertSuccess).toBe(1);
    expect(res.modeShare).toBeNull();
    // (One CLI process keeps the test fast; replay's CLI is the same call as here.)
    expect(await replay({ dataset: out, episode: 1 })).toMatchObject({ success: true, trackingErrorRad: 0 });
  });
});
