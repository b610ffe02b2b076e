/**
 * The configuration of an action head: which observation features condition it, the chunk
 * size, the architecture and its sizes. Stored as `config.json` in every checkpoint.
 */
import { z } from "zod";

/** One observation feature that conditions the head: a vector `[d]` is one token, `[n, d]` is n tokens. */
export const ObsFeatureSchema = z.object({
  /** Name inside the model (`state`, `env`, `emb`). */
  name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "feature names are identifiers"),
  /** Source column in the dataset (`observation.state`); informational for the network. */
  key: z.string(),
  /** `[d]` or `[n, d]` after padding. */
  shape: z.array(z.number().int().positive()).min(1).max(2),
});
export type ObsFeature = z.infer<typeof ObsFeatureSchema>;

export const TransformerSchema = z.object({
  width: z.number().int().positive().default(128),
  depth: z.number().int().positive().default(3),
  heads: z.number().int().positive().default(4),
  mlpRatio: z.number().int().positive().default(4),
  timeEmbedDim: z.number().int().positive().default(64),
});

export const MlpSchema = z.object({
  width: z.number().int().positive().default(256),
  depth: z.number().int().positive().default(3),
  timeEmbedDim: z.number().int().positive().default(16),
});

export const HeadConfigSchema = z.object({
  /** `transformer` (default) or `mlp`. */
  arch: z.enum(["transformer", "mlp"]).default("transformer"),
  /** `flow`: velocity field trained by conditional flow matching; `regression`: direct MSE baseline. */
  objective: z.enum(["flow", "regression"]).default("flow"),
  /** Action chunk length H. */
  horizon: z.number().int().positive().default(50),
  /** Action dimension A as seen by the network (dataset dims are zero-padded up to it). */
  actionDim: z.number().int().positive().default(32),
  obs: z.array(ObsFeatureSchema).min(1),
  transformer: TransformerSchema.prefault({}),
  mlp: MlpSchema.prefault({}),
});
export type HeadConfig = z.infer<typeof HeadConfigSchema>;
export type HeadConfigInput = z.input<typeof HeadConfigSchema>;

/** Zod issues as one line, each prefixed by its field path (`transformer.width: ...; obs: ...`). */
export function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
}

/** Parses and validates a head configuration; errors name the offending field. */
export function parseHeadConfig(input: unknown, source = "config"): HeadConfig {
  const r = HeadConfigSchema.safeParse(input);
  if (!r.success) throw new Error(`${source}: invalid head config: ${describeIssues(r.error)}`);
  const cfg = r.data;
  if (cfg.arch === "transformer" && cfg.transformer.width % cfg.transformer.heads !== 0) {
    throw new Error(
      `${source}: transformer.width ${cfg.transformer.width} is not divisible by transformer.heads ${cfg.transformer.heads}`,
    );
  }
  if (cfg.transformer.timeEmbedDim % 2 !== 0 || cfg.mlp.timeEmbedDim % 2 !== 0) {
    throw new Error(`${source}: timeEmbedDim must be even`);
  }
  const names = new Set<string>();
  for (const f of cfg.obs) {
    if (names.has(f.name)) throw new Error(`${source}: observation feature '${f.name}' appears twice`);
    names.add(f.name);
  }
  return cfg;
}
