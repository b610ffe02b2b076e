/**
 * The actions per chunk a run recommends to runtimes: 16 for a policy with cameras (within the
 * horizon), none for a state policy, the given value otherwise; a value past the horizon is refused.
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_IMAGE_N_ACTION_STEPS, resolveInput } from "../../training/run/settings.ts";

const features = {
  "observation.state": { dtype: "float32", shape: [6] },
  "observation.images.front": { dtype: "video", shape: [96, 96, 3] },
  action: { dtype: "float32", shape: [6] },
};
const camera = "state=observation.state,front=observation.images.front";

describe("a run's recommended actions per chunk", () => {
  it("is 16 with a camera, none without one, and the given value otherwise", () => {
    expect(DEFAULT_IMAGE_N_ACTION_STEPS).toBe(16);
    expect(resolveInput({ obs: camera }, undefined, features).nActionSteps).toBe(16);
    expect(resolveInput({ obs: camera, horizon: 10 }, undefined, features).nActionSteps).toBe(10);
    expect(resolveInput({ obs: "state=observation.state" }, undefined, features).nActionSteps).toBeUndefined();
    expect(resolveInput({ obs: "state=observation.state", nActionSteps: 5 }, undefined, features).nActionSteps).toBe(5);
    expect(resolveInput({ obs: camera, config: { nActionSteps: 8 } }, undefined, features).nActionSteps).toBe(8);
  });

  it("refuses more actions than the horizon", () => {
    expect(() => resolveInput({ obs: camera, horizon: 10, nActionSteps: 12 }, undefined, features)).toThrow(
      "nActionSteps 12 must be at most the horizon 10",
    );
  });
});
