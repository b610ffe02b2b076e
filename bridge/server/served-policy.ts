/**
 * What both policy servers need from a policy, and what they share: the metadata they announce and
 * the conversion of a decoded observation dict (msgpack-numpy) into the policy's raw observation,
 * with every refusal naming the key.
 */
import type { ChunkPolicy, ChunkRequest, Observation } from "../../policy/chunk-policy.ts";
import type { FeatureIO } from "../../policy/onnx/graphs.ts";
import type { TimedChunk } from "../../policy/runtime/threaded.ts";
import { NdArray, NpScalar, type MsgMap, type MsgValue } from "../codec/msgpack-numpy.ts";
import { matchPrompt } from "../../policy/net/prompt.ts";
import { resizeWithPad } from "./resize-with-pad.ts";

/**
 * A policy a server can serve: a `ChunkPolicy` that names its features and reports timings.
 * `ThreadedPolicy` is the one to use (inference off the event loop, batching); `sampleChunkTimed`
 * may be called concurrently and must reject (never return NaN) on a bad observation.
 */
export interface ServedPolicy extends ChunkPolicy {
  readonly features: readonly FeatureIO[];
  /** The model's padded action dim: a request's noise is `[horizon * modelActionDim]`. */
  readonly modelActionDim: number;
  readonly solver: string;
  readonly steps: number;
  sampleChunkTimed(obs: Observation, req?: ChunkRequest): Promise<TimedChunk>;
}

/** One observation feature in {@link PolicyMetadata}. */
export interface MetadataFeature {
  [key: string]: MsgValue;
  name: string;
  key: string;
  shape: number[];
  kind: "vector" | "image";
  dtype: "float32" | "uint8";
}

/** The metadata both servers announce (openpi: the first frame; ZeroMQ: the `metadata` reply). */
export interface PolicyMetadata {
  [key: string]: MsgValue;
  /**
   * Per observation feature: `shape` is what the policy takes; `kind` `vector` (float32, sent in
   * exactly that shape) or `image` (a camera: uint8 `[height, width, 3]`; any `(h, w, 3)` uint8
   * array is accepted and resized with padding to it, as openpi's `resize_with_pad`).
   */
  features: MetadataFeature[];
  /** Actions per chunk H. */
  horizon: number;
  /** Values per action A. */
  action_dim: number;
  /** The chunk's action rate, Hz, or null when unknown. */
  fps: number | null;
  /**
   * The largest committed prefix (actions) the policy was trained to continue (training-time RTC),
   * 0 when it was not: a remote real-time loop refuses a larger inference delay, as a local one does.
   */
  rtc_max_delay: number;
  solver: string;
  steps: number;
  /** Client key -> dataset key renames the server applies (`observation/state` -> `observation.state`). */
  key_map: Record<string, string>;
  // A prompt-conditioned policy adds `prompts`: the task prompts it knows (a request's `prompt` must
  // be one of them, matched ignoring case, spacing and final punctuation). Absent otherwise. A policy
  // whose prompt comes from a text encoder also has `any_prompt: true`: it takes any prompt text
  // (`prompts` are then those it was trained on).
}

/** The metadata of `policy` served with `keyMap` (with `prompts` for a prompt-conditioned policy). */
export function policyMetadata(policy: ServedPolicy, keyMap: Readonly<Record<string, string>> = {}): PolicyMetadata {
  return {
    features: policy.features.map((f) => ({
      name: f.name,
      key: f.key,
      shape: [...f.rawShape],
      kind: f.kind === "image" ? "image" : "vector",
      dtype: f.kind === "image" ? "uint8" : "float32",
    })),
    horizon: policy.horizon,
    action_dim: policy.actionDim,
    fps: policy.fps ?? null,
    rtc_max_delay: policy.rtcMaxDelay ?? 0,
    solver: policy.solver,
    steps: policy.steps,
    key_map: { ...keyMap },
    ...(policy.prompts !== undefined ? { prompts: [...policy.prompts] } : {}),
    ...(policy.prompts !== undefined && policy.anyPrompt === true ? { any_prompt: true } : {}),
  };
}

/**
 * The task prompt of a decoded observation dict (`prompt`, a string, as openpi's clients send it),
 * checked against the policy's prompts: undefined for a policy without prompts (the key is then
 * ignored) or a dict without one (the policy's own prompt, if it has one set, applies). Throws
 * {@link BadRequestError} naming the known prompts for an unknown one (a policy with `anyPrompt`
 * takes any non-empty text), or naming the type of a prompt that is not a string.
 */
export function promptFrom(dict: MsgMap, policy: Pick<ServedPolicy, "prompts" | "anyPrompt">): string | undefined {
  const prompts = policy.prompts;
  if (prompts === undefined) return undefined;
  const v = dict["prompt"];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string")
    throw new BadRequestError(
      `'prompt' must be a string, got ${v instanceof NdArray ? `an array of ${v.dtype}` : Array.isArray(v) ? "a list" : typeof v}`,
    );
  try {
    return matchPrompt({ prompts, anyPrompt: policy.anyPrompt }, v);
  } catch (err) {
    throw new BadRequestError((err as Error).message);
  }
}

/** A request the server refuses; `message` names the key and the value. */
export class BadRequestError extends Error {
  override readonly name = "BadRequestError";
}

/** openpi's key for the one camera of a LIBERO-style client (`examples/libero/main.py`). */
export const OPENPI_IMAGE_KEY = "observation/image";

/**
 * The client keys a feature is looked up under: its dataset key and its model name; a camera also
 * under the slash form of its key (`observation/images/front`), and the one camera of a policy
 * with a single camera also under openpi's {@link OPENPI_IMAGE_KEY}.
 */
export function featureAliases(f: FeatureIO, features: readonly FeatureIO[]): string[] {
  const out = [f.key];
  if (f.name !== f.key) out.push(f.name);
  if (f.kind === "image") {
    const slash = f.key.replaceAll(".", "/");
    if (!out.includes(slash)) out.push(slash);
    if (features.filter((x) => x.kind === "image").length === 1 && !out.includes(OPENPI_IMAGE_KEY))
      out.push(OPENPI_IMAGE_KEY);
  }
  return out;
}

/**
 * The policy's raw observation from a decoded dict: each feature is looked up under its
 * {@link featureAliases} or a client key that `keyMap` renames to one of them; other keys (a
 * prompt, images the policy does not use, such as LIBERO's `observation/wrist_image` for a
 * one-camera policy) are ignored. A vector feature must be a numeric array of exactly its raw
 * shape (a numpy scalar or a plain list of numbers counts as shape `[n]`; a 1-D feature may carry
 * unit dims, `(1, n)`), all values finite. A camera must be a uint8 array `(h, w, 3)`; one of
 * another size than the policy's is resized with padding ({@link resizeWithPad}, openpi's
 * `resize_with_pad`). `observation/image` sent to a policy with several cameras is ambiguous: an
 * error, unless `keyMap` maps it to one of them.
 * Throws {@link BadRequestError} naming the key.
 */
export function observationFrom(
  dict: MsgMap,
  features: readonly FeatureIO[],
  keyMap: Readonly<Record<string, string>> = {},
): Observation {
  const renamed: Record<string, { client: string; value: MsgValue }> = {};
  for (const [k, v] of Object.entries(dict)) {
    const target = keyMap[k] ?? k;
    const seen = renamed[target];
    if (seen !== undefined)
      throw new BadRequestError(`observation '${target}' is given twice (as '${seen.client}' and as '${k}')`);
    renamed[target] = { client: k, value: v };
  }
  const obs: Observation = {};
  const cameras = features.filter((f) => f.kind === "image");
  for (const f of features) {
    const hits = featureAliases(f, features).flatMap((a) => {
      const hit = renamed[a];
      return hit ? [hit] : [];
    });
    if (hits.length > 1)
      throw new BadRequestError(
        `observation feature '${f.key}' is given ${hits.length === 2 ? "twice" : `${hits.length} times`} (as ${hits.map((h) => `'${h.client}'`).join(" and ")})`,
      );
    const hit = hits[0];
    if (!hit) {
      const got = Object.keys(dict).join(", ") || "nothing";
      if (f.kind === "image" && cameras.length > 1 && renamed[OPENPI_IMAGE_KEY] !== undefined)
        throw new BadRequestError(
          `observation '${OPENPI_IMAGE_KEY}' is ambiguous: the policy has ${cameras.length} cameras (${cameras.map((c) => c.key).join(", ")}); send each under its key (e.g. '${f.key.replaceAll(".", "/")}') or map it with a key map entry ${OPENPI_IMAGE_KEY}=${f.key}`,
        );
      const what = f.kind === "image" ? "camera" : "observation feature";
      throw new BadRequestError(
        `${what} '${f.key}' (model name '${f.name}', shape [${f.rawShape.join(", ")}]${f.kind === "image" ? ", uint8" : ""}) is missing; got ${got}`,
      );
    }
    obs[f.key] =
      f.kind === "image" ? imageValues(hit.value, hit.client, f) : featureValues(hit.value, hit.client, f.rawShape);
  }
  return obs;
}

const DTYPE_NAMES: Record<string, string> = {
  "|b1": "bool",
  "|u1": "uint8",
  "|i1": "int8",
  "<u2": "uint16",
  "<i2": "int16",
  "<u4": "uint32",
  "<i4": "int32",
  "<u8": "uint64",
  "<i8": "int64",
  "<f4": "float32",
  "<f8": "float64",
};

/** A camera's value: uint8 `(h, w, 3)`, resized with padding to the feature's `[height, width, 3]`. */
function imageValues(v: MsgValue, key: string, f: FeatureIO): Uint8Array {
  const [height, width] = f.rawShape as [number, number, number];
  const expected = `a uint8 array of shape (height, width, 3) (the policy takes (${height}, ${width}, 3); other sizes are resized with padding)`;
  if (!(v instanceof NdArray)) {
    const kind =
      v === null
        ? "null"
        : v instanceof NpScalar
          ? `a numpy scalar of ${v.dtype}`
          : v instanceof Uint8Array
            ? "raw bytes without a shape"
            : Array.isArray(v)
              ? "a list"
              : typeof v;
    throw new BadRequestError(`camera '${key}' (${f.key}) must be ${expected}, got ${kind}`);
  }
  if (v.dtype !== "|u1" || !(v.data instanceof Uint8Array))
    throw new BadRequestError(
      `camera '${key}' (${f.key}) must be ${expected}, got dtype ${DTYPE_NAMES[v.dtype] ?? v.dtype} ('${v.dtype}') of shape (${v.shape.join(", ")}); convert it with image_tools.convert_to_uint8`,
    );
  if (v.shape.length !== 3 || v.shape[2] !== 3 || v.shape[0] === 0 || v.shape[1] === 0)
    throw new BadRequestError(
      `camera '${key}' (${f.key}) must be ${expected}, got shape (${v.shape.join(", ")})${v.shape.length === 4 ? ": send one sample, without a batch dim" : v.shape.length === 3 && v.shape[0] === 3 ? ": channels last, not first" : ""}`,
    );
  return resizeWithPad(v.data, v.shape[0]!, v.shape[1]!, height, width);
}

function featureValues(v: MsgValue, key: string, shape: readonly number[]): Float32Array {
  let values: Float32Array;
  let got: readonly number[];
  if (v instanceof NdArray) {
    values = v.toFloat32();
    got = v.shape;
  } else if (v instanceof NpScalar) {
    values = Float32Array.of(Number(v.value));
    got = [1];
  } else if (Array.isArray(v) && v.every((x) => typeof x === "number")) {
    values = Float32Array.from(v as number[]);
    got = [v.length];
  } else {
    const kind = v === null ? "null" : Array.isArray(v) ? "a list with non-numbers" : typeof v;
    throw new BadRequestError(
      `observation '${key}' must be a numeric array of shape [${shape.join(", ")}], got ${kind}`,
    );
  }
  const n = shape.reduce((a, b) => a * b, 1);
  const sameShape = got.length === shape.length && got.every((d, i) => d === shape[i]);
  // A 1-D feature may come with unit dims around it ((1, n) from a batched client).
  const flatOk = shape.length === 1 && values.length === n && got.filter((d) => d !== 1).length <= 1;
  if (!sameShape && !flatOk)
    throw new BadRequestError(`observation '${key}' has shape [${got.join(", ")}], expected [${shape.join(", ")}]`);
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]!))
      throw new BadRequestError(`observation '${key}' has a non-finite value ${values[i]} at index ${i}`);
  }
  return values;
}

/** Parses `--key-map` entries `client=dataset` (e.g. `observation/state=observation.state`). */
export function parseKeyMap(entries: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of entries) {
    const at = e.indexOf("=");
    if (at <= 0 || at === e.length - 1)
      throw new Error(`key map entry '${e}' must be client=dataset, e.g. observation/state=observation.state`);
    const client = e.slice(0, at);
    if (out[client] !== undefined) throw new Error(`key map: '${client}' is mapped twice`);
    out[client] = e.slice(at + 1);
  }
  return out;
}

/** Float32 chunk `[H * A]` as the `(H, A)` float32 array both protocols reply with. */
export function chunkArray(actions: Float32Array, horizon: number, actionDim: number): NdArray {
  return NdArray.float32(actions, [horizon, actionDim]);
}
