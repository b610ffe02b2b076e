import { copyFile, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Command } from "commander";
import WebSocket from "ws";
import { NdArray, decodeMsgpackNumpy, encodeMsgpackNumpy, type MsgMap } from "../../../bridge/codec/msgpack-numpy.ts";
import { OpenpiPolicyServer } from "../../../bridge/server/openpi-server.ts";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { registerExport } from "../../../cli/commands/export.ts";
import { embedDataset } from "../../../datasets/embed/embed.ts";
import { frozenEncodersFor } from "../../../datasets/embed/frozen.ts";
import { openDataset } from "../../../datasets/open.ts";
import { ffmpegAvailable } from "../../../datasets/video/ffmpeg.ts";
import { loadEpisodeFrames } from "../../../datasets/video/frames.ts";
import { loadCheckpoint } from "../../../policy/checkpoint/checkpoint.ts";
import { composeEncoders, loadEncoderModel, type FrozenEncoder } from "../../../policy/onnx/compose.ts";
import { exportOnnx } from "../../../policy/onnx/export.ts";
import { decodeModel, encodeModel, metadataOf } from "../../../policy/onnx/proto.ts";
import { Rng } from "../../../policy/random.ts";
import { OnnxPolicy } from "../../../policy/runtime/onnx-policy.ts";
import { ThreadedPolicy } from "../../../policy/runtime/threaded.ts";
import { policyCameras } from "../../../sim/camera.ts";
import { collect } from "../../../sim/collect.ts";
import { createTask } from "../../../sim/tasks/index.ts";
import { trainRun } from "../../../training/run.ts";
import { removeDir, tempDir } from "../../datasets/lerobot/helpers.ts";
import { convEncoder, writeConvEncoder } from "../../datasets/embed/encoders.ts";
import type { ConvEncoderSpec } from "../../datasets/embed/encoders.ts";
import { checkOnnxFile, maxAbsDiff, onnxCheckerUnavailable } from "./helpers.ts";

const CAM = "observation.images.front";
const EMB = "observation.embeddings.front";
// a non-ImageNet mean and std, recorded by dataset embed, so the graph must use the recorded ones
const ENC: ConvEncoderSpec = {
  width: 32,
  height: 32,
  dim: 8,
  kernel: 4,
  output: "pooled",
  seed: 1,
  metadata: { image_mean: "0.5,0.4,0.3", image_std: "0.2,0.25,0.3" },
};
const TINY = { transformer: { width: 32, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 16 } };

const why = ffmpegAvailable()
  ? undefined
  : "ffmpeg/ffprobe not on the PATH (test/setup/install-ffmpeg.sh installs them)";
if (why) console.warn(`skipping the encoder composition tests: ${why}`);

let dir: string;
let encoder: string;
let run: string;
beforeAll(async () => {
  dir = await tempDir("compose");
  if (why) return;
  await collect({
    task: "reach",
    episodes: 3,
    seed: 0,
    out: join(dir, "D"),
    cameras: [{ name: "front", width: 32, height: 32 }],
    vcodec: "h264",
  });
  encoder = join(dir, "enc.onnx");
  await writeConvEncoder(encoder, ENC);
  await embedDataset({
    dataset: join(dir, "D"),
    encoder,
    camera: CAM,
    out: join(dir, "E"),
    cache: false,
    log: () => {},
  });
  run = join(dir, "R");
  await trainRun({
    dataset: join(dir, "E"),
    out: run,
    obs: `state=observation.state,front=${EMB}`,
    config: TINY,
    steps: 40,
    batch: 8,
    horizon: 8,
    valEpisodes: "2:3",
    backend: "ort",
  });
}, 300_000);
afterAll(async () => {
  await removeDir(dir);
});

/** Runs `actionflow export <args>` in this process; returns the parsed last stdout line and stderr. */
async function exportCli(args: string[]): Promise<{ result: Record<string, unknown>; stderr: string }> {
  const program = new Command().exitOverride();
  registerExport(program);
  const out: string[] = [];
  const err: string[] = [];
  const o = vi.spyOn(process.stdout, "write").mockImplementation((c: string | Uint8Array) => {
    out.push(String(c));
    return true;
  });
  const e = vi.spyOn(process.stderr, "write").mockImplementation((c: string | Uint8Array) => {
    err.push(String(c));
    return true;
  });
  try {
    await program.parseAsync(["export", ...args], { from: "user" });
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
  const lines = out.join("").trimEnd().split("\n");
  return { result: JSON.parse(lines[lines.length - 1]!) as Record<string, unknown>, stderr: err.join("") };
}

describe.skipIf(why !== undefined)("export with the frozen encoder composed in front of the head", () => {
  it("takes the camera as uint8 pixels and gives the vector policy's chunk on the embedding dataset embed wrote", async () => {
    const vectorFile = join(dir, "vector.onnx");
    await exportOnnx(run, { out: vectorFile });
    const { result, stderr } = await exportCli([run, "--json"]);
    expect(stderr).toBe("");
    expect(result.onnx).toBe(join(run, "policy.onnx"));
    expect(result.inputs).toContain("obs.front");
    expect((result.encoders as Record<string, { file: string; camera: string }>).front).toMatchObject({
      file: encoder,
      camera: CAM,
      feature: EMB,
      size: { width: 32, height: 32 },
      mean: [0.5, 0.4, 0.3],
      std: [0.2, 0.25, 0.3],
    });

    // (b) the official checker on the composed file
    const unavailable = onnxCheckerUnavailable();
    if (unavailable === undefined) expect(checkOnnxFile(join(run, "policy.onnx"))).toBe("");
    else console.warn(`ONNX checker skipped: ${unavailable}`);
    const model = decodeModel(await readFile(join(run, "policy.onnx")));
    const input = model.graph.input.find((i) => i.name === "obs.front")!;
    expect(input.type.tensorType.elemType).toBe(2); // uint8
    expect(input.type.tensorType.shape!.dim).toEqual([
      { dimParam: "batch" },
      { dimValue: 32 },
      { dimValue: 32 },
      { dimValue: 3 },
    ]);

    const composed = await OnnxPolicy.load(run, { threads: 1 });
    const vector = await OnnxPolicy.load(vectorFile, { threads: 1 });
    const src = await openDataset(join(dir, "D"));
    const emb = await openDataset(join(dir, "E"));
    try {
      expect(composed.features.find((f) => f.name === "front")).toEqual({
        name: "front",
        key: CAM,
        shape: [32, 32, 3],
        rawShape: [32, 32, 3],
        kind: "image",
      });
      expect(policyCameras(composed.features)).toEqual([{ name: "front", width: 32, height: 32 }]);
      expect(vector.features.find((f) => f.name === "front")).toMatchObject({ key: EMB, rawShape: [8] });

      // (a) the same frames, as dataset embed decoded them, and the embeddings it wrote
      const frames = (await loadEpisodeFrames(src, 1, CAM, { width: 32, height: 32 }, { cache: false }))!;
      if (emb.format !== "lerobot") throw new Error("expected a LeRobot dataset");
      const cols = await emb.dataset.readEpisode(1, [EMB, "observation.state"]);
      const e = cols[EMB] as Float32Array;
      const state = cols["observation.state"] as Float32Array;
      const sd = state.length / frames.count;
      const rng = new Rng(7);
      let worst = 0;
      let spread = 0;
      for (const t of [0, Math.floor(frames.count / 2), frames.count - 1]) {
        const noise = Float32Array.from({ length: composed.horizon * composed.modelActionDim }, () => rng.normal());
        const s = state.slice(t * sd, (t + 1) * sd);
        const pixels = frames.data.slice(t * 32 * 32 * 3, (t + 1) * 32 * 32 * 3);
        const a = await composed.sampleChunk({ "observation.state": s, [CAM]: pixels }, { noise });
        const b = await vector.sampleChunk({ "observation.state": s, [EMB]: e.slice(t * 8, (t + 1) * 8) }, { noise });
        worst = Math.max(worst, maxAbsDiff(a, b));
        // another image gives another chunk: the pixels do reach the head
        const dark = await composed.sampleChunk(
          { "observation.state": s, [CAM]: new Uint8Array(32 * 32 * 3) },
          { noise },
        );
        spread = Math.max(spread, maxAbsDiff(a, dark));
      }
      expect(worst).toBeLessThanOrEqual(1e-4);
      expect(spread).toBeGreaterThan(1e-3);

      // the simulator's own observation drives it, as an end-to-end image policy
      const task = await createTask("reach", { camera: { name: "front", width: 32, height: 32 } });
      task.reset(3);
      const chunk = await composed.sampleChunk(task.observe(), { seed: 1 });
      expect(chunk.every(Number.isFinite)).toBe(true);

      // (c) a wrong image size is refused naming the camera
      await expect(
        composed.sampleChunk(
          { "observation.state": state.slice(0, sd), [CAM]: new Uint8Array(16 * 16 * 3) },
          { seed: 1 },
        ),
      ).rejects.toThrow(`camera '${CAM}' has 768 bytes, expected 3072`);
    } finally {
      src.dataset.close();
      emb.dataset.close();
      await composed.release();
      await vector.release();
    }

    // the composed camera at a native size, resized inside the graph
    const native = await exportCli([run, "--camera-input", "front=80x56", "--out", join(dir, "native.onnx"), "--json"]);
    expect(native.result.cameraInputs).toEqual({ front: { width: 80, height: 56 } });
    const big = await OnnxPolicy.load(join(dir, "native.onnx"), { threads: 1 });
    try {
      expect(big.features.find((f) => f.name === "front")).toMatchObject({ key: CAM, rawShape: [56, 80, 3] });
      const chunk = await big.sampleChunk(
        {
          "observation.state": new Float32Array(big.features.find((f) => f.name === "state")!.rawShape[0]!),
          [CAM]: new Uint8Array(56 * 80 * 3),
        },
        { seed: 2 },
      );
      expect(chunk.every(Number.isFinite)).toBe(true);
    } finally {
      await big.release();
    }
    if (unavailable === undefined) expect(checkOnnxFile(join(dir, "native.onnx"))).toBe("");

    // --no-encoder: the vector export, byte for byte
    const plain = await exportCli([run, "--no-encoder", "--out", join(dir, "plain.onnx"), "--json"]);
    expect(plain.result.encoders).toBeUndefined();
    expect(Buffer.compare(await readFile(join(dir, "plain.onnx")), await readFile(vectorFile))).toBe(0);
    expect(
      Buffer.compare(
        await readFile(join(dir, "plain.velocity.onnx")),
        await readFile(join(run, "policy.velocity.onnx")),
      ),
    ).toBe(0);
  }, 300_000);

  it("refuses a wrong or missing encoder file naming the file and the hashes", async () => {
    const ckpt = await loadCheckpoint(run);
    const recorded = (await frozenEncodersFor(ckpt.dir, ckpt.config.obs)).front!;
    const other = join(dir, "other.onnx");
    await writeConvEncoder(other, { ...ENC, seed: 5 });
    const otherSha = (await frozenEncodersFor(ckpt.dir, ckpt.config.obs, { encoder: other, force: true })).front!
      .sha256;
    expect(otherSha).not.toBe(recorded.sha256);
    await expect(frozenEncodersFor(ckpt.dir, ckpt.config.obs, { encoder: other })).rejects.toThrow(
      `--encoder ${other}: SHA-256 ${otherSha} differs from the encoder that embedded feature 'front' (${EMB}, from camera ${CAM}): ${encoder} with SHA-256 ${recorded.sha256}`,
    );
    await expect(exportCli([run, "--encoder", other, "--json"])).rejects.toThrow("pass --force");
    await expect(frozenEncodersFor(ckpt.dir, ckpt.config.obs, { encoder: join(dir, "nope.onnx") })).rejects.toThrow(
      `${join(dir, "nope.onnx")}: cannot read the encoder`,
    );

    // the recorded file gone, then replaced by another: export asks for --encoder
    const kept = join(dir, "kept.onnx");
    await rename(encoder, kept);
    try {
      await expect(exportCli([run, "--json"])).rejects.toThrow(
        `feature 'front' (${EMB}, from camera ${CAM}) was embedded by ${encoder} (SHA-256 ${recorded.sha256}`,
      );
      await copyFile(other, encoder);
      await expect(exportCli([run, "--json"])).rejects.toThrow(
        `was embedded by ${encoder} with SHA-256 ${recorded.sha256} (${join(dir, "E", "meta", "embedding.json")}), but the file now has SHA-256 ${otherSha}`,
      );
      // the original given by hand composes
      const { result } = await exportCli([run, "--encoder", kept, "--out", join(dir, "kept-policy.onnx"), "--json"]);
      expect((result.encoders as Record<string, { sha256: string }>).front!.sha256).toBe(recorded.sha256);
    } finally {
      await rename(kept, encoder);
    }
  }, 120_000);

  it("refuses an encoder whose opset or domain cannot be merged, naming it", async () => {
    const ckpt = await loadCheckpoint(run);
    const enc = (await frozenEncodersFor(ckpt.dir, ckpt.config.obs)).front!;
    const sampleFile = join(dir, "vector.onnx");
    const sample = decodeModel(await readFile(sampleFile));
    const withOpsets = (opsetImport: FrozenEncoder["model"]["opsetImport"]): FrozenEncoder => ({
      ...enc,
      model: { ...enc.model, opsetImport },
    });
    expect(() => composeEncoders(sample, { front: withOpsets([{ domain: "", version: 11 }]) })).toThrow(
      `${encoder}: the encoder is opset 11 of the default domain (ai.onnx)`,
    );
    expect(() => composeEncoders(sample, { front: withOpsets([{ domain: "", version: 18 }]) })).toThrow(
      /opset 18 of the default domain \(ai.onnx\); the export is opset 17/,
    );
    const clash = { ...sample, opsetImport: [...sample.opsetImport, { domain: "com.microsoft", version: 1 }] };
    expect(() =>
      composeEncoders(clash, {
        front: withOpsets([
          { domain: "", version: 17 },
          { domain: "com.microsoft", version: 2 },
        ]),
      }),
    ).toThrow("imports domain 'com.microsoft' at version 2, the head at version 1");
    // the metadata of the vector graph stays as it was; the composed one names the camera
    const { model } = composeEncoders(sample, { front: enc });
    expect(metadataOf(sample)["actionflow.encoders"]).toBeUndefined();
    expect(JSON.parse(metadataOf(model)["actionflow.features"]!)).toContainEqual({
      name: "front",
      key: CAM,
      shape: [32, 32, 3],
      rawShape: [32, 32, 3],
      kind: "image",
    });
    // a graph whose output does not match the embedding shape
    expect(() => composeEncoders(sample, { front: { ...enc, shape: [9] } })).toThrow(
      `${encoder}: embedding '${EMB}' is [9] per frame, the head's feature 'front' takes [8]`,
    );
  });

  it("inlines weights stored as external data beside the encoder, and refuses data outside its folder", async () => {
    const model = convEncoder(ENC);
    const big = model.graph.initializer.reduce((a, b) =>
      (a.rawData?.length ?? 0) >= (b.rawData?.length ?? 0) ? a : b,
    );
    const raw = big.rawData!;
    await writeFile(join(dir, "ext.bin"), Buffer.concat([Buffer.alloc(16), Buffer.from(raw)]));
    const external = (location: string) => ({
      ...model,
      graph: {
        ...model.graph,
        initializer: model.graph.initializer.map((t) =>
          t === big
            ? {
                ...t,
                rawData: new Uint8Array(0),
                externalData: [
                  { key: "location", value: location },
                  { key: "offset", value: "16" },
                  { key: "length", value: String(raw.length) },
                ],
              }
            : t,
        ),
      },
    });
    await writeFile(join(dir, "ext.onnx"), encodeModel(external("ext.bin")));
    const loaded = await loadEncoderModel(join(dir, "ext.onnx"));
    const t = loaded.model.graph.initializer.find((x) => x.name === big.name)!;
    expect(Buffer.from(t.rawData!).equals(Buffer.from(raw))).toBe(true);
    expect((t as { externalData?: unknown[] }).externalData ?? []).toEqual([]);
    await writeFile(join(dir, "ext-up.onnx"), encodeModel(external("../ext.bin")));
    await expect(loadEncoderModel(join(dir, "ext-up.onnx"))).rejects.toThrow(
      `initializer '${big.name}' names its external data at '../ext.bin'; it must be a file beside the model`,
    );
  });

  it("composes a [T, D] token encoder as dataset embed used it, without pooling", async () => {
    const tokens: ConvEncoderSpec = { ...ENC, dim: 6, kernel: 8, output: "tokens", seed: 4 };
    const file = join(dir, "tokens.onnx");
    await writeConvEncoder(file, tokens);
    await embedDataset({
      dataset: join(dir, "D"),
      encoder: file,
      camera: CAM,
      out: join(dir, "ET"),
      cache: false,
      log: () => {},
    });
    const r = join(dir, "RT");
    await trainRun({
      dataset: join(dir, "ET"),
      out: r,
      obs: `state=observation.state,front=${EMB}`,
      config: TINY,
      steps: 40,
      batch: 8,
      horizon: 8,
      valEpisodes: "2:3",
      backend: "ort",
    });
    const vectorFile = join(dir, "tokens-vector.onnx");
    await exportOnnx(r, { out: vectorFile });
    const ckpt = await loadCheckpoint(r);
    const ex = await exportOnnx(r, { encoders: await frozenEncodersFor(ckpt.dir, ckpt.config.obs) });
    expect(ex.encoders?.front).toMatchObject({ output: "last_hidden_state", shape: [16, 6] });
    const unavailable = onnxCheckerUnavailable();
    if (unavailable === undefined) expect(checkOnnxFile(ex.onnx)).toBe("");
    const composed = await OnnxPolicy.load(r, { threads: 1 });
    const vector = await OnnxPolicy.load(vectorFile, { threads: 1 });
    const src = await openDataset(join(dir, "D"));
    const emb = await openDataset(join(dir, "ET"));
    try {
      if (emb.format !== "lerobot") throw new Error("expected a LeRobot dataset");
      const frames = (await loadEpisodeFrames(src, 0, CAM, { width: 32, height: 32 }, { cache: false }))!;
      const cols = await emb.dataset.readEpisode(0, [EMB, "observation.state"]);
      const e = cols[EMB] as Float32Array;
      const state = cols["observation.state"] as Float32Array;
      const sd = state.length / frames.count;
      const t = 5;
      const noise = Float32Array.from({ length: composed.horizon * composed.modelActionDim }, (_, i) => Math.cos(i));
      const s = state.slice(t * sd, (t + 1) * sd);
      const a = await composed.sampleChunk(
        { "observation.state": s, [CAM]: frames.data.slice(t * 3072, (t + 1) * 3072) },
        { noise },
      );
      const b = await vector.sampleChunk({ "observation.state": s, [EMB]: e.slice(t * 96, (t + 1) * 96) }, { noise });
      expect(maxAbsDiff(a, b)).toBeLessThanOrEqual(1e-4);
    } finally {
      src.dataset.close();
      emb.dataset.close();
      await composed.release();
      await vector.release();
    }
  }, 120_000);

  it("is served over the openpi protocol as an image policy: uint8 pixels in, a float image refused naming the key", async () => {
    await exportCli([run, "--json"]);
    const policy = await ThreadedPolicy.start(run, { threads: 1 });
    const server = await OpenpiPolicyServer.start({
      policy,
      url: "ws://127.0.0.1:0",
      auth: { mode: "insecure" },
      keyMap: { "observation/state": "observation.state" },
      log: () => undefined,
    });
    const exchange = (frame: MsgMap): Promise<{ meta: MsgMap; reply: MsgMap | string; close: number }> => {
      const ws = new WebSocket(server.url);
      let meta: MsgMap | undefined;
      let reply: MsgMap | string = "";
      return new Promise((resolve, reject) => {
        ws.on("error", reject);
        ws.on("message", (data: Buffer, binary: boolean) => {
          if (!meta) {
            meta = decodeMsgpackNumpy(data) as MsgMap;
            ws.send(encodeMsgpackNumpy(frame));
            return;
          }
          reply = binary ? (decodeMsgpackNumpy(data) as MsgMap) : data.toString();
          ws.close(1000);
        });
        ws.on("close", (close) => resolve({ meta: meta!, reply, close }));
      });
    };
    try {
      const sd = policy.features.find((f) => f.name === "state")!.rawShape[0]!;
      const state = NdArray.float32(new Float32Array(sd).fill(0.1));
      const image = new NdArray("|u1", [32, 32, 3], new Uint8Array(32 * 32 * 3).fill(120));
      const ok = await exchange({ "observation/state": state, "observation/image": image });
      expect(ok.close).toBe(1000);
      expect((ok.meta["features"] as MsgMap[]).filter((f) => f["kind"] === "image")).toEqual([
        { name: "front", key: CAM, shape: [32, 32, 3], kind: "image", dtype: "uint8" },
      ]);
      const actions = ((ok.reply as MsgMap)["actions"] as NdArray).toFloat32();
      expect(actions).toHaveLength(policy.horizon * policy.actionDim);
      expect(actions.every(Number.isFinite)).toBe(true);
      const bad = await exchange({
        "observation/state": state,
        "observation/image": NdArray.float32(new Float32Array(32 * 32 * 3), [32, 32, 3]),
      });
      expect(bad.close).toBe(1011);
      expect(bad.reply).toMatch(/camera 'observation\/image' \(observation\.images\.front\) must be a uint8 array/);
    } finally {
      await server.close();
      await policy.close();
    }
  }, 60_000);

  it("samples a batch of camera observations in one run, each as it would alone", async () => {
    await exportCli([run, "--json"]);
    const policy = await OnnxPolicy.load(run, { threads: 1 });
    try {
      const sd = policy.features.find((f) => f.name === "state")!.rawShape[0]!;
      const noise = Float32Array.from({ length: policy.horizon * policy.modelActionDim }, (_, i) => Math.sin(i));
      const items = [30, 220].map((v) => ({
        observation: { "observation.state": new Float32Array(sd).fill(v / 255), [CAM]: new Uint8Array(3072).fill(v) },
        options: { noise },
      }));
      const batch = await policy.sampleBatch(items);
      for (const [k, item] of items.entries()) {
        const alone = await policy.sampleChunk(item.observation, { noise });
        const got = batch[k]!;
        if (got instanceof Error) throw got;
        expect(maxAbsDiff(got, alone)).toBeLessThanOrEqual(1e-5);
      }
      expect(maxAbsDiff(batch[0] as Float32Array, batch[1] as Float32Array)).toBeGreaterThan(1e-4);
    } finally {
      await policy.release();
    }
  });
});
