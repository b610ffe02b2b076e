/**
 * The configuration of an action head: which observation features condition it, the chunk
 * size, the architecture and its sizes. Stored as `config.json` in every checkpoint.
 */
import { z } from "zod";
import { parseValue } from "../io/json.ts";
import { normalizePrompt } from "./prompt.ts";

/**
 * One observation feature that conditions the head: a vector `[d]` is one token, `[n, d]` is n
 * tokens, a camera (`kind: "image"`, shape `[height, width, 3]`) is the tokens of the head's image
 * encoder (`vision`, see `policy/net/vision.ts`).
 */
export const ObsFeatureSchema = z.object({
  /** Name inside the model (`state`, `env`, `emb`). */
  name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "feature names are identifiers"),
  /** Source column in the dataset (`observation.state`); informational for the network. */
  key: z.string(),
  /** `[d]` or `[n, d]` after padding; `[height, width, 3]` for a camera. */
  shape: z.array(z.number().int().positive()).min(1).max(3),
  /** `image`: a camera, RGB `[height, width, 3]` (normalised per channel), encoded by `vision`. */
  kind: z.literal("image").optional(),
  /**
   * A prompt feature only: the K task strings the head knows, in vocabulary order; the feature is
   * then the one-hot `[K]` of the prompt (see `policy/net/prompt.ts`). Absent on every other feature.
   */
  prompts: z.array(z.string().min(1)).min(1).optional(),
  /**
   * A prompt feature only: the prompt is an embedding `[D]` (the feature's shape) instead of the
   * one-hot, `vectors` holding one per prompt of `prompts`; `table` (a `--task-embeddings` file: other
   * prompts refused) or `encoder` (the run's text encoder embeds any prompt; `normalize`: its output
   * is L2-normalised). See `policy/net/prompt.ts`.
   */
  promptEmbedding: z
    .object({
      source: z.enum(["table", "encoder"]),
      vectors: z.array(z.array(z.number()).min(1)).min(1),
      normalize: z.boolean().optional(),
    })
    .optional(),
});
export type ObsFeature = z.infer<typeof ObsFeatureSchema>;

/** Transformer sizes (pi0-style action expert), each with its default. */
export const TransformerSchema = z.object({
  width: z.number().int().positive().default(128),
  depth: z.number().int().positive().default(3),
  heads: z.number().int().positive().default(4),
  mlpRatio: z.number().int().positive().default(4),
  timeEmbedDim: z.number().int().positive().default(64),
});

/** MLP sizes, each with its default. */
export const MlpSchema = z.object({
  width: z.number().int().positive().default(256),
  depth: z.number().int().positive().default(3),
  timeEmbedDim: z.number().int().positive().default(16),
});

/**
 * The image encoder trained with the head (one per camera, weights not shared): a patchify stem (a
 * `stem` x `stem` convolution of stride `stem`), then per stage a 3x3 convolution and a 2x2
 * stride-2 convolution, each followed by GroupNorm and SiLU, a last 3x3 convolution, and a spatial
 * softmax turning each of the `channels` feature maps into an expected image position (x, y): its
 * keypoint (Diffusion Policy's and robomimic's spatial softmax). Convolutions are unpadded; a
 * stride-2 convolution drops an odd last row or column. The `2 * channels` keypoint coordinates are grouped into `tokens` observation tokens.
 */
export const VisionSchema = z.object({
  /** Patch size of the stem convolution (its kernel and stride). */
  stem: z.number().int().positive().default(4),
  /** Channels of the stem and of each stage. */
  width: z.number().int().positive().default(64),
  /** Down-sampling stages after the stem (default 0: a 96 px image keeps a 22x22 keypoint map). */
  stages: z.number().int().min(0).default(0),
  /** Feature maps of the last convolution: the keypoints. */
  channels: z.number().int().positive().default(64),
  /** GroupNorm groups (divides `width` and `channels`). */
  groups: z.number().int().positive().default(8),
  /** Observation tokens per camera (divides `channels`). */
  tokens: z.number().int().positive().default(8),
});
/** Image encoder sizes (see {@link VisionSchema}). */
export type VisionConfig = z.infer<typeof VisionSchema>;

/** The network architectures: `transformer` (default) or `mlp`. */
export const ArchSchema = z.enum(["transformer", "mlp"]);
/** A network architecture name. */
export type Arch = z.infer<typeof ArchSchema>;

/**
 * `flow`: velocity field trained by conditional flow matching; `regression`: direct MSE baseline;
 * `meanflow`: average velocity over a step (MeanFlow), for one- or few-step sampling. Each is one
 * strategy in `policy/flow/objective.ts`.
 */
export const ObjectiveSchema = z.enum(["flow", "regression", "meanflow"]);
/** A training objective name. */
export type Objective = z.infer<typeof ObjectiveSchema>;

/**
 * The head configuration (`config.json` of a checkpoint, without its `actionflowVersion`, which is
 * stripped): defaults filled in; transformer width divisible by heads, even time embeddings and
 * distinct observation names are checked, each issue at its field.
 */
export const HeadConfigSchema = z
  .object({
    arch: ArchSchema.default("transformer"),
    objective: ObjectiveSchema.default("flow"),
    /** Action chunk length H. */
    horizon: z.number().int().positive().default(50),
    /** Action dimension A as seen by the network (dataset dims are zero-padded up to it). */
    actionDim: z.number().int().positive().default(32),
    obs: z.array(ObsFeatureSchema).min(1),
    transformer: TransformerSchema.prefault({}),
    mlp: MlpSchema.prefault({}),
    vision: VisionSchema.prefault({}),
    /**
     * Training-time real-time chunking: the largest committed action prefix (in chunk steps) the head
     * was trained to continue. Each training example draws a prefix length d in [0, rtcMaxDelay]; its
     * first d steps are fed clean (per-token time 1, the data end) and left out of the loss. 0 (default):
     * no prefix training; a prefix is then inpainted along the path at sampling time.
     */
    rtcMaxDelay: z.number().int().min(0).default(0),
    /** The rate the chunk's steps are spaced at (the dataset's fps), Hz, when known. */
    fps: z.number().positive().optional(),
    /**
     * The actions a runtime executes from each chunk before the next request when it is not told
     * (`sync`'s `--n-action-steps`; LeRobot's `n_action_steps`), when the run recommends one.
     */
    nActionSteps: z.number().int().positive().optional(),
  })
  .superRefine((cfg, ctx) => {
    if (cfg.nActionSteps !== undefined && cfg.nActionSteps > cfg.horizon)
      ctx.addIssue({
        code: "custom",
        path: ["nActionSteps"],
        message: `${cfg.nActionSteps} must be at most the horizon ${cfg.horizon}`,
      });
    if (cfg.rtcMaxDelay >= cfg.horizon)
      ctx.addIssue({
        code: "custom",
        path: ["rtcMaxDelay"],
        message: `${cfg.rtcMaxDelay} must be less than the horizon ${cfg.horizon}`,
      });
    if (cfg.rtcMaxDelay > 0 && cfg.objective !== "flow")
      ctx.addIssue({
        code: "custom",
        path: ["rtcMaxDelay"],
        message: `prefix training needs the flow objective, not '${cfg.objective}'`,
      });
    if (cfg.arch === "transformer" && cfg.transformer.width % cfg.transformer.heads !== 0)
      ctx.addIssue({
        code: "custom",
        path: ["transformer", "width"],
        message: `${cfg.transformer.width} is not divisible by transformer.heads ${cfg.transformer.heads}`,
      });
    for (const arch of ArchSchema.options)
      if (cfg[arch].timeEmbedDim % 2 !== 0)
        ctx.addIssue({
          code: "custom",
          path: [arch, "timeEmbedDim"],
          message: `timeEmbedDim must be even, got ${cfg[arch].timeEmbedDim}`,
        });
    const names = new Set<string>();
    for (const [i, f] of cfg.obs.entries()) {
      if (names.has(f.name))
        ctx.addIssue({
          code: "custom",
          path: ["obs", i, "name"],
          message: `observation feature '${f.name}' appears twice`,
        });
      names.add(f.name);
      if (f.kind === "image") {
        if (f.shape.length !== 3 || f.shape[2] !== 3)
          ctx.addIssue({
            code: "custom",
            path: ["obs", i, "shape"],
            message: `a camera feature has shape [height, width, 3], got [${f.shape.join(", ")}]`,
          });
        else {
          const issue = visionShapeIssue(cfg.vision, f.shape[0]!, f.shape[1]!);
          if (issue) ctx.addIssue({ code: "custom", path: ["obs", i, "shape"], message: issue });
        }
        if (f.prompts !== undefined)
          ctx.addIssue({ code: "custom", path: ["obs", i, "prompts"], message: "a camera feature takes no prompts" });
      } else if (f.shape.length > 2)
        ctx.addIssue({
          code: "custom",
          path: ["obs", i, "shape"],
          message: `a feature of shape [${f.shape.join(", ")}] must be [d] or [n, d] (or a camera: kind "image")`,
        });
      if (f.promptEmbedding !== undefined && f.prompts === undefined)
        ctx.addIssue({
          code: "custom",
          path: ["obs", i, "promptEmbedding"],
          message: "promptEmbedding needs the feature's prompts",
        });
      if (f.prompts !== undefined) {
        const e = f.promptEmbedding;
        if (e !== undefined) {
          const d = e.vectors[0]!.length;
          if (e.vectors.length !== f.prompts.length)
            ctx.addIssue({
              code: "custom",
              path: ["obs", i, "promptEmbedding", "vectors"],
              message: `a prompt embedding has one vector per prompt (${f.prompts.length}), got ${e.vectors.length}`,
            });
          const bad = e.vectors.findIndex((v) => v.length !== d || v.some((x) => !Number.isFinite(x)));
          if (bad >= 0)
            ctx.addIssue({
              code: "custom",
              path: ["obs", i, "promptEmbedding", "vectors", bad],
              message: `prompt vector ${bad} must have ${d} finite values (as vector 0)`,
            });
          if (f.shape.length !== 1 || f.shape[0] !== d)
            ctx.addIssue({
              code: "custom",
              path: ["obs", i, "shape"],
              message: `a prompt embedding feature has shape [${d}] (the embedding's size), got [${f.shape.join(", ")}]`,
            });
        } else if (f.shape.length !== 1 || f.shape[0] !== f.prompts.length)
          ctx.addIssue({
            code: "custom",
            path: ["obs", i, "shape"],
            message: `a prompt feature has shape [${f.prompts.length}] (one per prompt), got [${f.shape.join(", ")}]`,
          });
        const seen = new Map<string, string>();
        for (const p of f.prompts) {
          const key = normalizePrompt(p);
          const prev = seen.get(key);
          if (prev !== undefined)
            ctx.addIssue({
              code: "custom",
              path: ["obs", i, "prompts"],
              message: `prompts ${JSON.stringify(prev)} and ${JSON.stringify(p)} are the same after normalisation`,
            });
          seen.set(key, p);
        }
      }
    }
    if (cfg.obs.filter((f) => f.prompts !== undefined).length > 1)
      ctx.addIssue({ code: "custom", path: ["obs"], message: "at most one observation feature is a prompt" });
  });
/**
 * Why an image of `height` x `width` does not fit the encoder `v` (undefined when it does): the stem
 * must divide both sides, every stage and the last 3x3 convolution need a map of at least 4x4 (so the
 * spatial softmax sees at least 2x2 positions), and the groups and tokens must divide the channels.
 */
export function visionShapeIssue(v: VisionConfig, height: number, width: number): string | undefined {
  if (v.width % v.groups !== 0 || v.channels % v.groups !== 0)
    return `vision.groups ${v.groups} must divide vision.width ${v.width} and vision.channels ${v.channels}`;
  if (v.channels % v.tokens !== 0) return `vision.tokens ${v.tokens} must divide vision.channels ${v.channels}`;
  if (height % v.stem !== 0 || width % v.stem !== 0)
    return `the image ${width}x${height} is not a multiple of the stem patch ${v.stem}`;
  let h = height / v.stem;
  let w = width / v.stem;
  for (let s = 0; s < v.stages; s++) {
    if (h < 4 || w < 4)
      return `the image ${width}x${height} is too small for ${v.stages} vision stages (a ${w}x${h} map before stage ${s})`;
    h = Math.floor((h - 2) / 2);
    w = Math.floor((w - 2) / 2);
  }
  if (h < 4 || w < 4)
    return `the image ${width}x${height} leaves a ${w}x${h} map, too small for the last 3x3 convolution and a spatial softmax over at least 2x2 positions`;
  return undefined;
}

/** A validated head configuration, defaults filled in. */
export type HeadConfig = z.infer<typeof HeadConfigSchema>;
/** What {@link parseHeadConfig} accepts: a head configuration whose defaulted fields may be left out. */
export type HeadConfigInput = z.input<typeof HeadConfigSchema>;

/** Parses and validates a head configuration; errors name `source` and the offending field. */
export function parseHeadConfig(input: unknown, source = "config"): HeadConfig {
  return parseValue(input, HeadConfigSchema, `${source}: invalid head config`);
}
