/**
 * A scripted stand-in for a trained policy: the task's expert wrapped as a {@link ChunkPolicy} (so
 * closed-loop evaluation works, and is tested, without a trained network). It lives in `sim/`
 * because it reads the task's privileged state.
 */
import type { ChunkPolicy, ChunkRequest, Observation } from "../policy/chunk-policy.ts";
import { createExpert } from "./experts/index.ts";
import type { Expert } from "./experts/index.ts";
import type { Task } from "./tasks/task.ts";

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

  /** Starts a new expert for the task's current episode (the expert is deterministic: `seed` is unused). */
  reset(seed: number): void {
    void seed;
    this.expert?.dispose();
    this.expert = createExpert(this.task);
  }

  /**
   * The next `horizon` expert actions, flat `[horizon * actionDim]`. The observation and the request
   * are unused: the expert plans from the task's privileged state (a prefix is not honoured).
   */
  sampleChunk(obs: Observation, req?: ChunkRequest): Promise<Float32Array> {
    void obs;
    void req;
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
