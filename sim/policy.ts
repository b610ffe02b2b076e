/**
 * The policy interface closed-loop evaluation drives, and a scripted stand-in: the task's expert
 * wrapped as a chunk policy (so evaluation works, and is tested, without a trained network).
 */
import { createExpert } from "./experts/index.ts";
import type { Expert } from "./experts/index.ts";
import type { Task } from "./tasks/task.ts";

/** A policy that predicts a chunk of future actions from one observation. */
export interface ChunkPolicy {
  /** Actions per chunk. */
  horizon: number;
  /** Values per action (must equal the scene's action dim). */
  actionDim: number;
  /**
   * obs: feature name -> raw (unnormalised) values, e.g. {"observation.state": Float32Array(6),
   * "observation.environment_state": Float32Array(k)}; returns [horizon * actionDim] raw actions.
   * `prefix` ([d * actionDim] raw actions, when given) are the chunk's first d actions, already
   * committed: the policy keeps them and samples the rest to continue them (real-time chunking).
   */
  sampleChunk(obs: Record<string, Float32Array>, prefix?: Float32Array): Promise<Float32Array>;
  /** Called at the start of every episode with its seed (optional; stateless policies omit it). */
  reset?(seed: number): void;
}

/** Options for {@link ExpertChunkPolicy}. */
export interface ExpertChunkPolicyOptions {
  /** Actions per chunk; default 16. */
  horizon?: number;
}

/**
 * The scripted expert of a live task as a {@link ChunkPolicy}. It reads the task's privileged state,
 * so it must wrap the very task being evaluated. Timed experts (reach, avoid) return their planned
 * next `horizon` actions; the closed-loop push expert repeats its current action (a zero-order hold).
 */
export class ExpertChunkPolicy implements ChunkPolicy {
  readonly horizon: number;
  readonly actionDim: number;
  private expert: Expert | undefined;

  /** Wraps `task`'s expert; call {@link ExpertChunkPolicy.reset} after each `task.reset`. */
  constructor(
    private readonly task: Task,
    opts: ExpertChunkPolicyOptions = {},
  ) {
    this.horizon = opts.horizon ?? 16;
    this.actionDim = task.env.dim;
  }

  /** Starts a new expert for the task's current episode. */
  reset(): void {
    this.expert?.dispose();
    this.expert = createExpert(this.task);
  }

  /** The next `horizon` expert actions, flat [horizon * actionDim]. */
  sampleChunk(obs: Record<string, Float32Array>): Promise<Float32Array> {
    void obs;
    this.expert ??= createExpert(this.task);
    const ex = this.expert;
    if (ex.plan) return Promise.resolve(ex.plan(this.horizon));
    const a = ex.act();
    const out = new Float32Array(this.horizon * this.actionDim);
    for (let i = 0; i < this.horizon; i++) out.set(a, i * this.actionDim);
    return Promise.resolve(out);
  }

  /** Frees the expert's IK solver. */
  dispose(): void {
    this.expert?.dispose();
    this.expert = undefined;
  }
}
