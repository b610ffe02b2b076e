/**
 * The camera part of a real-time observation: which of the profile's cameras the policy takes, and
 * each one's newest image, fresh and at the policy's size, or why there is none.
 *
 * A camera reaches the policy as it reached the dataset `record` wrote: the link resizes each
 * image to the profile camera's `width` x `height` (box average, `resizeRgb`), and when the
 * policy's `[height, width, 3]` differs from that, the same resize takes it on to the policy's
 * size. An image older than the camera's `max_age_s`, from before the latest reconnect, or not yet
 * received blocks inference exactly as a stale feature does.
 */
import type { ChunkPolicy, Observation } from "../policy/chunk-policy.ts";
import type { RobotProfile } from "./profile.ts";
import type { ImageSample, RobotLink } from "./robot-link.ts";
import { resizeRgb } from "./ros/protocol.ts";

/** A camera a policy takes: its observation key and the size it wants. */
export interface PolicyCamera {
  key: string;
  height: number;
  width: number;
}

/**
 * The cameras `policy` declares: its features of kind `image` (`features` of a local, threaded or
 * served policy, `metadata.features` of a remote one); none for a policy that declares no features.
 */
export function policyCameras(policy: ChunkPolicy): PolicyCamera[] {
  const p = policy as {
    features?: ReadonlyArray<{ key: string; rawShape: readonly number[]; kind?: string }>;
    metadata?: { features?: ReadonlyArray<{ key: string; shape: readonly number[]; kind?: string }> };
  };
  const list = Array.isArray(p.features)
    ? p.features.map((f) => ({ key: f.key, shape: f.rawShape, kind: f.kind }))
    : Array.isArray(p.metadata?.features)
      ? p.metadata.features.map((f) => ({ key: f.key, shape: f.shape, kind: f.kind }))
      : [];
  return list
    .filter((f) => f.kind === "image")
    .map((f) => ({ key: f.key, height: f.shape[0] ?? 0, width: f.shape[1] ?? 0 }));
}

/** Why a camera blocks inference. */
export interface CameraBlock {
  feature: string;
  topic: string;
  why: string;
}

interface Input {
  key: string;
  topic: string;
  maxAgeS: number;
  height: number;
  width: number;
  last?: { sample: ImageSample; rgb: Uint8Array };
}

/** The cameras of one control loop (see the module comment). */
export class CameraInputs {
  private readonly inputs: Input[];

  /**
   * Matches each of `cameras` to the profile's camera of that feature; throws naming the profile
   * and the feature when there is none, or when it has no `max_age_s`.
   */
  constructor(profile: RobotProfile, cameras: readonly PolicyCamera[]) {
    const problems: string[] = [];
    this.inputs = cameras.flatMap((c) => {
      const i = profile.cameras.findIndex((x) => x.feature === c.key);
      const cam = profile.cameras[i];
      if (!cam) {
        problems.push(
          `the policy takes camera ${c.key} ([${c.height}, ${c.width}, 3]); profile '${profile.name}' has no camera for it (cameras: ${profile.cameras.map((x) => x.feature).join(", ") || "none"})`,
        );
        return [];
      }
      if (cam.max_age_s === undefined) {
        problems.push(
          `profile '${profile.name}': cameras.${i}.max_age_s: required, the policy takes ${c.key} (how old an image may be, seconds)`,
        );
        return [];
      }
      return [{ key: c.key, topic: cam.topic, maxAgeS: cam.max_age_s, height: c.height, width: c.width }];
    });
    if (problems.length > 0) throw new Error(problems.join("\n"));
  }

  /** The cameras' topics, in the policy's order. */
  get topics(): string[] {
    return this.inputs.map((c) => c.topic);
  }

  /**
   * Puts each camera's newest image into `obs` (uint8 RGB at the policy's size; resized once per
   * image) when it is of `epoch` and at most `max_age_s` old at `now`; otherwise leaves `obs` and
   * returns the first camera that blocks, with why.
   */
  fill(obs: Observation, link: RobotLink, now: number, epoch: number): CameraBlock | undefined {
    for (const c of this.inputs) {
      const s = link.image?.(c.key);
      if (!s || s.epoch !== epoch || now - s.atS > c.maxAgeS) {
        const why = !link.image
          ? "the link carries no camera images"
          : !s
            ? "no valid image yet"
            : s.epoch !== epoch
              ? "none since the reconnect"
              : `last valid image ${(now - s.atS).toFixed(3)} s ago, max_age_s ${c.maxAgeS}`;
        return { feature: c.key, topic: c.topic, why };
      }
      if (c.last?.sample !== s)
        c.last = {
          sample: s,
          rgb: resizeRgb({ width: s.width, height: s.height, rgb: s.rgb }, c.width, c.height),
        };
      obs[c.key] = c.last.rgb;
    }
    return undefined;
  }
}
