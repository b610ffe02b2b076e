import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SimEnv } from "../../sim/env.ts";
import { SiteIk } from "../../sim/experts/ik.ts";
import { MjcfCompileError, compileMjcf, f64, loadMujoco } from "../../sim/mujoco.ts";
import { ARM_HOME, ARM_JOINTS, armScene } from "../../sim/scene/arm.ts";
import { loadUserScene, parseRobotMapping } from "../../sim/scene/user.ts";

describe("arm scene", () => {
  let env: SimEnv;
  beforeAll(async () => {
    env = await SimEnv.create({ scene: armScene() });
  });
  afterAll(() => env.dispose());

  it("compiles with 6 mapped joints, 6 position actuators and a 0.002 s timestep", () => {
    expect(env.dim).toBe(6);
    expect(env.model.nu).toBe(6);
    expect(env.model.nq).toBe(7); // + the mirrored finger
    expect(env.timestep).toBeCloseTo(0.002, 12);
    expect(env.scene.joints).toEqual([...ARM_JOINTS]);
  });

  it("home pose puts the end effector 16 cm forward, 10 cm up, pointing down, and holds it", () => {
    env.reset(ARM_HOME);
    const ee = env.eePos();
    expect(ee[0]).toBeCloseTo(0.16, 3);
    expect(ee[1]).toBeCloseTo(0, 6);
    expect(ee[2]).toBeCloseTo(0.1, 3);
    const R = f64(env.data.site_xmat);
    expect(R[9 * env.eeSiteId + 8]).toBeLessThan(-0.999); // site z axis = world -z
    for (let k = 0; k < 30; k++) env.step(ARM_HOME);
    expect(env.time).toBeCloseTo(1, 9); // 30 control steps at 30 Hz = 1 s exactly
    const after = env.eePos();
    expect(Math.hypot(after[0] - ee[0], after[1] - ee[1], after[2] - ee[2])).toBeLessThan(1e-3);
  });

  it("rejects an action of the wrong length, naming both sizes", () => {
    env.reset();
    expect(() => env.step([0, 0, 0])).toThrow(/action has 3 dims, the scene takes 6/);
  });

  it("IK reaches table-top points with the gripper down", () => {
    const ik = new SiteIk(env);
    try {
      for (const t of [
        [0.12, 0, 0.03],
        [0.22, 0.1, 0.03],
        [0.1, -0.1, 0.05],
        [0.2, 0.05, 0.08],
      ] as [number, number, number][]) {
        const r = ik.solve(t, ARM_HOME);
        expect(r.error).toBeLessThan(1e-3);
        const fk = ik.forward(r.q);
        expect(Math.hypot(fk[0] - t[0], fk[1] - t[1], fk[2] - t[2])).toBeLessThan(1e-3);
        expect(r.q[5]).toBe(ARM_HOME[5]); // gripper untouched
      }
    } finally {
      ik.dispose();
    }
  });
});

describe("MJCF errors and user scenes", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "actionflow-sim-scene-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("an MJCF that fails to compile gives MuJoCo's message", async () => {
    const mj = await loadMujoco();
    const bad = `<mujoco><worldbody><body><geom type="nosuch" size="0.1"/></body></worldbody></mujoco>`;
    expect(() => compileMjcf(mj, bad, { source: "bad.xml" })).toThrow(MjcfCompileError);
    expect(() => compileMjcf(mj, bad, { source: "bad.xml" })).toThrow(
      /bad\.xml: MJCF does not compile: XML Error: invalid keyword: 'nosuch'/,
    );
    const badActuator = `<mujoco><worldbody><body><joint name="j"/><geom size="0.1"/></body></worldbody><actuator><position joint="zzz"/></actuator></mujoco>`;
    expect(() => compileMjcf(mj, badActuator, { source: "b2.xml" })).toThrow(/unknown transmission target 'zzz'/);
    // The module still works after errors.
    const ok = compileMjcf(mj, `<mujoco><worldbody><geom size="0.1"/></worldbody></mujoco>`, { source: "ok.xml" });
    expect(ok.ngeom).toBe(1);
    ok.delete();
  });

  it("loads a user MJCF with an included file and a mapping, and runs it", async () => {
    await writeFile(
      join(dir, "arm2.xml"),
      `<mujoco><compiler angle="radian"/><include file="parts/option.xml"/><default><joint damping="0.5"/></default><worldbody>
        <body name="l1" pos="0 0 0.1"><joint name="a" axis="0 0 1" range="-2 2"/><geom type="capsule" fromto="0 0 0 0.15 0 0" size="0.01"/>
          <body name="l2" pos="0.15 0 0"><joint name="b" axis="0 1 0" range="-2 2"/><geom type="capsule" fromto="0 0 0 0.1 0 0" size="0.01"/>
            <site name="tip" pos="0.1 0 0"/></body></body></worldbody>
        <actuator><position name="ma" joint="a" kp="20"/><position name="mb" joint="b" kp="20"/></actuator></mujoco>`,
    );
    await import("node:fs/promises").then((fs) => fs.mkdir(join(dir, "parts"), { recursive: true }));
    await writeFile(join(dir, "parts", "option.xml"), `<mujoco><option timestep="0.004"/></mujoco>`);
    await writeFile(
      join(dir, "map.json"),
      JSON.stringify({ joints: ["a", "b"], actuators: ["ma", "mb"], eeSite: "tip" }),
    );
    const scene = await loadUserScene({ mjcf: join(dir, "arm2.xml"), mapping: join(dir, "map.json") });
    const env = await SimEnv.create({
      scene,
      worldbodyExtras: `<geom name="marker" type="sphere" size="0.01" pos="0.3 0 0" contype="0" conaffinity="0"/>`,
    });
    try {
      expect(env.dim).toBe(2);
      expect(env.timestep).toBeCloseTo(0.004, 12);
      env.reset();
      for (let k = 0; k < 60; k++) env.step([0.5, 0]);
      expect(env.jointPositions()[0]).toBeCloseTo(0.5, 2);
      expect(env.id("geom", "marker")).toBeGreaterThanOrEqual(0);
    } finally {
      env.dispose();
    }
  });

  it("mapping errors name the file and the field", async () => {
    expect(() => parseRobotMapping({ joints: ["a"], actuators: ["x", "y"], eeSite: "s" }, "m.json")).toThrow(
      /m\.json: 'joints' has 1 names but 'actuators' has 2/,
    );
    expect(() => parseRobotMapping({ joints: ["a"], actuators: ["x"] }, "m.json")).toThrow(
      /m\.json: bad robot mapping: eeSite: missing/,
    );
    await writeFile(
      join(dir, "map-bad.json"),
      JSON.stringify({ joints: ["a", "nope"], actuators: ["ma", "mb"], eeSite: "tip" }),
    );
    const scene = await loadUserScene({ mjcf: join(dir, "arm2.xml"), mapping: join(dir, "map-bad.json") });
    await expect(SimEnv.create({ scene })).rejects.toThrow(/arm2\.xml: no joint named 'nope'/);
  });
});
