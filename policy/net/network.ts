/**
 * Builds an action head (`head.ts`) from its config: the one place that knows every architecture.
 */
import type { HeadConfig } from "./config.ts";
import type { ActionHead } from "./head.ts";
import { mlpHead } from "./mlp.ts";
import { transformerHead } from "./transformer.ts";

/** Builds the description named by `config.arch`. */
export function buildHead(config: HeadConfig): ActionHead {
  switch (config.arch) {
    case "transformer":
      return transformerHead(config);
    case "mlp":
      return mlpHead(config);
    default: {
      const never: never = config.arch;
      throw new Error(`unknown architecture '${String(never)}' (valid: transformer, mlp)`);
    }
  }
}
