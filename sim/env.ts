/**
 * A compiled robot scene stepped at a control rate: joint position targets in, joint positions out.
 *
 * One control step advances the physics until `time >= k / fps` (so at 30 Hz with a 0.002 s
 * timestep it alternates 16 and 17 substeps and keeps exact 30 Hz on average). Everything is
 * deterministic: the same reset and the same actions give the same trajectory bit for bit.
 */
import type { Mujoco, MjData, MjModel } from "./mujoco.ts";
import { compileMjcf, f64, i32, loadMujoco, requireId } from "./mujoco.ts";
import type { RobotScene } from "./scene/robot.ts";

/** A point or vector in world coordinates (metres). */
export type Vec3 = [number, number, number];

/** Options for {@link SimEnv.create}. */
export interface SimEnvOptions {
  /** The robot and its mapping. */
  scene: RobotScene;
  /** Task objects (MJCF bodies/geoms) added to the worldbody. */
  worldbodyExtras?: string;
  /** Control rate in Hz; default 30. */
  fps?: number;
}

/** The compiled scene plus its current state; free it with {@link SimEnv.dispose}. */
export class SimEnv {
  /** Control rate in Hz. */
  readonly fps: number;
  /** Physics timestep in seconds (from the MJCF). */
  readonly timestep: number;
  /** Length of `observation.state` and of the action (one per mapped joint/actuator). */
  readonly dim: number;
  /** qpos addresses of the mapped joints, in state order. */
  readonly qposAdr: number[];
  /** dof addresses of the mapped joints, in state order. */
  readonly dofAdr: number[];
  /** Actuator ids, in action order. */
  readonly actuatorIds: number[];
  /** Joint ranges [min, max] of the mapped joints ([-inf, inf] when unlimited). */
  readonly ranges: [number, number][];
  /** The end-effector site id. */
  readonly eeSiteId: number;
  private controlSteps = 0;
  private disposed = false;
  private readonly watched = new Set<number>();
  private readonly touchedWatched = new Set<number>();

  private constructor(
    readonly mj: Mujoco,
    readonly model: MjModel,
    readonly data: MjData,
    readonly scene: RobotScene,
    fps: number,
  ) {
    const src = scene.source;
    if (scene.joints.length !== scene.actuators.length) {
      throw new Error(
        `${src}: ${scene.joints.length} joints but ${scene.actuators.length} actuators; the mapping needs one actuator per joint`,
      );
    }
    this.fps = fps;
    this.timestep = model.opt.timestep;
    this.dim = scene.joints.length;
    const jntQpos = i32(model.jnt_qposadr);
    const jntDof = i32(model.jnt_dofadr);
    const jntType = i32(model.jnt_type);
    const jntLimited = model.jnt_limited as Uint8Array;
    const jntRange = f64(model.jnt_range);
    this.qposAdr = [];
    this.dofAdr = [];
    this.ranges = [];
    for (const name of scene.joints) {
      const j = requireId(mj, model, "joint", name, src);
      const type = jntType[j] ?? -1;
      if (type !== 2 && type !== 3)
        throw new Error(`${src}: joint '${name}' must be a hinge or slide joint (type ${type})`);
      this.qposAdr.push(jntQpos[j] ?? 0);
      this.dofAdr.push(jntDof[j] ?? 0);
      this.ranges.push(
        jntLimited[j] ? [jntRange[2 * j] ?? -Infinity, jntRange[2 * j + 1] ?? Infinity] : [-Infinity, Infinity],
      );
    }
    this.actuatorIds = scene.actuators.map((a) => requireId(mj, model, "actuator", a, src));
    this.eeSiteId = requireId(mj, model, "site", scene.eeSite, src);
  }

  /** Compiles the scene (with task objects) and returns an environment at the model's default state. */
  static async create(opts: SimEnvOptions): Promise<SimEnv> {
    const mj = await loadMujoco();
    const fps = opts.fps ?? 30;
    if (!(fps > 0)) throw new RangeError(`sim: fps must be > 0, got ${fps}`);
    const xml = opts.scene.buildXml(opts.worldbodyExtras ?? "");
    const model = compileMjcf(mj, xml, { source: opts.scene.source, assets: opts.scene.assets });
    const data = new mj.MjData(model);
    try {
      return new SimEnv(mj, model, data, opts.scene, fps);
    } catch (err) {
      data.delete();
      model.delete();
      throw err;
    }
  }

  /** Number of control steps since the last reset. */
  get steps(): number {
    return this.controlSteps;
  }

  /** Simulated time in seconds. */
  get time(): number {
    return this.data.time;
  }

  /**
   * Resets physics, puts the mapped joints at `q` (state order; defaults to the scene's home) and
   * sets the actuators to hold it. Other state (free bodies, mocap) is set by the caller afterwards,
   * followed by {@link SimEnv.forward}.
   */
  reset(q?: ArrayLike<number>): void {
    const { mj, model, data } = this;
    mj.mj_resetData(model, data);
    const home = q ?? this.scene.home ?? new Array<number>(this.dim).fill(0);
    if (home.length !== this.dim)
      throw new Error(`${this.scene.source}: reset pose has ${home.length} values, expected ${this.dim}`);
    const qpos = f64(data.qpos);
    for (let i = 0; i < this.dim; i++) qpos[this.qposAdr[i] ?? 0] = home[i] ?? 0;
    this.setCtrl(home);
    this.syncCoupledJoints();
    this.controlSteps = 0;
    this.touchedWatched.clear();
    mj.mj_forward(model, data);
  }

  /** Recomputes derived quantities (positions, contacts) after state was written directly. */
  forward(): void {
    this.mj.mj_forward(this.model, this.data);
  }

  /**
   * Applies joint position targets (action order, clamped by the actuators' ctrlrange) and advances one control
   * period.
   */
  step(action: ArrayLike<number>): void {
    if (action.length !== this.dim) {
      throw new Error(`${this.scene.source}: action has ${action.length} dims, the scene takes ${this.dim}`);
    }
    this.setCtrl(action);
    this.controlSteps++;
    const until = this.controlSteps / this.fps - 0.25 * this.timestep;
    const { mj, model, data } = this;
    // Time is counted from the reset; data.time starts at 0 there.
    while (data.time < until) {
      mj.mj_step(model, data);
      if (this.watched.size > 0 && data.ncon > 0) this.recordWatchedContacts();
    }
  }

  /**
   * Watches a geom for contacts at every physics substep (not only at control steps), so a brief
   * touch is never missed; see {@link SimEnv.wasTouched}. Cleared by {@link SimEnv.reset}.
   */
  watch(geomId: number): void {
    this.watched.add(geomId);
  }

  /** True if a watched geom was in contact at any substep since the last reset. */
  wasTouched(geomId: number): boolean {
    return this.touchedWatched.has(geomId);
  }

  /** Joint positions of the mapped joints (radians/metres), as float32 for `observation.state`. */
  jointPositions(): Float32Array {
    const qpos = f64(this.data.qpos);
    const out = new Float32Array(this.dim);
    for (let i = 0; i < this.dim; i++) out[i] = qpos[this.qposAdr[i] ?? 0] ?? 0;
    return out;
  }

  /** Joint positions in float64 (for planning). */
  jointPositions64(): number[] {
    const qpos = f64(this.data.qpos);
    return this.qposAdr.map((a) => qpos[a] ?? 0);
  }

  /** World position of a site (metres). */
  sitePos(siteId: number): Vec3 {
    const p = f64(this.data.site_xpos);
    return [p[3 * siteId] ?? 0, p[3 * siteId + 1] ?? 0, p[3 * siteId + 2] ?? 0];
  }

  /** World position of the end-effector site (metres). */
  eePos(): Vec3 {
    return this.sitePos(this.eeSiteId);
  }

  /** World position of a body's frame (metres). */
  bodyPos(bodyId: number): Vec3 {
    const p = f64(this.data.xpos);
    return [p[3 * bodyId] ?? 0, p[3 * bodyId + 1] ?? 0, p[3 * bodyId + 2] ?? 0];
  }

  /** Looks up an object id by name or throws naming the scene. */
  id(kind: "body" | "joint" | "geom" | "site" | "actuator", name: string): number {
    return requireId(this.mj, this.model, kind, name, this.scene.source);
  }

  /** Moves a mocap body (call {@link SimEnv.forward} afterwards if positions are read before stepping). */
  setMocapPos(bodyId: number, pos: Vec3): void {
    const mocapId = i32(this.model.body_mocapid)[bodyId] ?? -1;
    if (mocapId < 0) throw new Error(`${this.scene.source}: body ${bodyId} is not a mocap body`);
    const mp = f64(this.data.mocap_pos);
    mp.set(pos, 3 * mocapId);
  }

  /** Sets a free joint's position (metres) and orientation quaternion (w, x, y, z), zeroing its velocity. */
  setFreeJoint(jointId: number, pos: Vec3, quat: [number, number, number, number] = [1, 0, 0, 0]): void {
    const adr = i32(this.model.jnt_qposadr)[jointId] ?? 0;
    const dof = i32(this.model.jnt_dofadr)[jointId] ?? 0;
    f64(this.data.qpos).set([...pos, ...quat], adr);
    f64(this.data.qvel).fill(0, dof, dof + 6);
  }

  /** True if any current contact involves geom `geomId` (with penetration or within margin). */
  touching(geomId: number): boolean {
    const n = this.data.ncon;
    if (n === 0) return false;
    const contacts = this.data.contact;
    for (let i = 0; i < n; i++) {
      const c = contacts.get(i);
      if (!c) continue;
      const hit = (c.geom1 === geomId || c.geom2 === geomId) && c.dist <= 0;
      c.delete();
      if (hit) return true;
    }
    return false;
  }

  private recordWatchedContacts(): void {
    for (const g of this.watched) if (!this.touchedWatched.has(g) && this.touching(g)) this.touchedWatched.add(g);
  }

  /** Frees the wasm model and data; the environment is unusable afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.data.delete();
    this.model.delete();
  }

  private setCtrl(values: ArrayLike<number>): void {
    const ctrl = f64(this.data.ctrl);
    for (let i = 0; i < this.dim; i++) {
      const v = Number(values[i]);
      if (!Number.isFinite(v)) throw new Error(`${this.scene.source}: action dim ${i} is ${values[i]}`);
      ctrl[this.actuatorIds[i] ?? 0] = v;
    }
  }

  /** Places joints coupled by a joint equality (e.g. the mirrored finger) at their coupled value. */
  private syncCoupledJoints(): void {
    const { model, data } = this;
    const neq = model.neq;
    if (neq === 0) return;
    const eqType = i32(model.eq_type);
    const eqObj1 = i32(model.eq_obj1id);
    const eqObj2 = i32(model.eq_obj2id);
    const eqData = f64(model.eq_data);
    const jntQpos = i32(model.jnt_qposadr);
    const qpos = f64(data.qpos);
    const qpos0 = f64(model.qpos0);
    const nEqData = eqData.length / Math.max(1, neq);
    for (let e = 0; e < neq; e++) {
      if (eqType[e] !== 2) continue; // mjEQ_JOINT
      const j1 = eqObj1[e] ?? -1;
      const j2 = eqObj2[e] ?? -1;
      if (j1 < 0 || j2 < 0) continue;
      const a1 = jntQpos[j1] ?? 0;
      const a2 = jntQpos[j2] ?? 0;
      const c = Array.from(eqData.subarray(e * nEqData, e * nEqData + 5));
      const x = (qpos[a2] ?? 0) - (qpos0[a2] ?? 0);
      const y = (c[0] ?? 0) + (c[1] ?? 0) * x + (c[2] ?? 0) * x ** 2 + (c[3] ?? 0) * x ** 3 + (c[4] ?? 0) * x ** 4;
      qpos[a1] = (qpos0[a1] ?? 0) + y;
    }
  }
}
