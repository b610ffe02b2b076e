/**
 * Scripted push expert, closed loop on the puck's position: move above a point behind the puck
 * (on the far side from the goal), descend, then push along the puck-to-goal line, re-aiming every
 * step; if the puck slips sideways off the pusher, lift and re-approach. Random push speed, approach
 * height and hover offsets give variation.
 */
import type { Rng } from "../../policy/random.ts";
import type { Vec3 } from "../env.ts";
import { BLOCK_RADIUS, type PushTask } from "../tasks/push.ts";
import { uniform } from "../tasks/task.ts";
import type { Expert } from "./plan.ts";
import { IkDriver, stepToward } from "./plan.ts";

/** Distance from the end-effector site to the closed fingers' face (metres). */
const PUSHER_RADIUS = 0.013;
/** End-effector height while pushing (fingertips ~1.5 cm above the table). */
const PUSH_Z = 0.022;

type Phase = "approach" | "descend" | "push" | "lift";

/** Creates the push expert for the task's current episode (call right after `task.reset`). */
export function pushExpert(task: PushTask, rng: Rng): Expert {
  const closed = task.env.scene.gripper?.closed;
  const driver = new IkDriver(task, rng, closed === undefined ? {} : { gripper: closed });
  const dt = 1 / task.env.fps;
  const travelSpeed = uniform(rng, 0.12, 0.2);
  const pushSpeed = uniform(rng, 0.04, 0.07);
  const hoverZ = uniform(rng, 0.07, 0.09);
  const backoff = uniform(rng, 0.015, 0.03);
  let phase: Phase = "approach";
  let cmd: Vec3 = task.env.eePos();

  const pushDir = (): [number, number] => {
    const b = task.block();
    const g = task.goal;
    const n = Math.hypot(g[0] - b[0], g[1] - b[1]) || 1;
    return [(g[0] - b[0]) / n, (g[1] - b[1]) / n];
  };
  const prePush = (z: number): Vec3 => {
    const b = task.block();
    const [ux, uy] = pushDir();
    const k = BLOCK_RADIUS + PUSHER_RADIUS + backoff;
    return [b[0] - k * ux, b[1] - k * uy, z];
  };

  const act = (): Float32Array => {
    const b = task.block();
    const [ux, uy] = pushDir();
    switch (phase) {
      case "approach": {
        const goal = prePush(hoverZ);
        // Rise first when low, so the pusher never sweeps through the puck.
        const aim: Vec3 = cmd[2] < hoverZ - 0.01 ? [cmd[0], cmd[1], hoverZ] : goal;
        cmd = stepToward(cmd, aim, travelSpeed * dt);
        if (Math.hypot(cmd[0] - goal[0], cmd[1] - goal[1], cmd[2] - goal[2]) < 1e-3) phase = "descend";
        break;
      }
      case "descend": {
        const goal = prePush(PUSH_Z);
        cmd = stepToward(cmd, goal, 0.1 * dt);
        if (Math.abs(cmd[2] - PUSH_Z) < 1e-3) phase = "push";
        break;
      }
      case "push": {
        const ee = task.env.eePos();
        const rel: [number, number] = [b[0] - ee[0], b[1] - ee[1]];
        const behind = rel[0] * ux + rel[1] * uy;
        const lateral = Math.abs(rel[0] * uy - rel[1] * ux);
        if (behind < 0.5 * BLOCK_RADIUS || lateral > 0.7 * BLOCK_RADIUS) {
          phase = "lift";
          break;
        }
        // Aim slightly into the puck from the contact point behind it; the puck moves away.
        const k = BLOCK_RADIUS + PUSHER_RADIUS - 0.012;
        const aim: Vec3 = [b[0] - k * ux, b[1] - k * uy, PUSH_Z];
        cmd = stepToward(cmd, aim, pushSpeed * dt);
        break;
      }
      case "lift": {
        cmd = stepToward(cmd, [cmd[0], cmd[1], hoverZ], 0.1 * dt);
        if (Math.abs(cmd[2] - hoverZ) < 1e-3) phase = "approach";
        break;
      }
    }
    return driver.targetFor(cmd);
  };
  return { act, dispose: () => driver.dispose() };
}
