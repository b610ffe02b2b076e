/**
 * A camera for the simulator without OpenGL: every pixel is a ray cast into the real MuJoCo
 * geometry with one `mj_multiRay` call (mujoco-js has no `mjr_*` rendering in Node). A pixel's
 * colour is its geom's RGBA (or its material's) shaded by a point light, `ambient + diffuse *
 * max(0, n · l)` with the surface normal n computed from the geom's primitive shape, and a second
 * `mj_multiRay` from the light tells which hit points are in shadow (so the image shows how high an
 * object floats above the table). Depth is the distance along the camera's viewing axis, metres.
 *
 * Frames: MuJoCo's camera convention (the camera looks along its frame's -z, +x is right, +y is
 * up); image row 0 is the top. The pose comes from a `<camera name=...>` of the scene (following
 * its body when it moves) or from `pos`/`lookAt`; `fovy` is the vertical field of view in degrees.
 */
import type { SimEnv, Vec3 } from "./env.ts";
import { f64, i32 } from "./mujoco.ts";

/** What a camera looks like and where it is. */
export interface CameraSpec {
  /** The camera's name: its image is `observation.images.<name>`; a scene camera of this name gives the pose. */
  name: string;
  /** Image width in pixels. */
  width: number;
  /** Image height in pixels. */
  height: number;
  /** Camera position in world metres (overrides the scene camera). */
  pos?: Vec3;
  /** The point the camera looks at, world metres (with `pos`). */
  lookAt?: Vec3;
  /** Vertical field of view, degrees (default: the scene camera's, else 45). */
  fovy?: number;
  /** Point light position, world metres (default 0.3 m behind and 1.6 m above the base). */
  light?: Vec3;
  /** Cast shadows (a second ray per pixel; default true). */
  shadows?: boolean;
}

/** A rendered frame: uint8 RGB `[height, width, 3]` and depth `[height, width]` in metres (Infinity: no hit). */
export interface CameraFrame {
  width: number;
  height: number;
  rgb: Uint8Array;
  depth: Float32Array;
}

/** Default pose of a camera the scene does not define: in front of the arm, looking down at the workspace. */
export const DEFAULT_CAMERA_POSE = { pos: [0.55, 0, 0.4] as Vec3, lookAt: [0.14, 0, 0.03] as Vec3, fovy: 45 };

const AMBIENT = 0.35;
const DIFFUSE = 0.65;
const SKY: Vec3 = [0.62, 0.68, 0.76];
/** MuJoCo's visible geom groups by default (0, 1, 2); 3-5 hold collision-only geoms in many models. */
const VISIBLE_GROUPS = new Uint8Array([1, 1, 1, 0, 0, 0]);
const FAR = 20;

/** Parses a `WxH` size such as "96x96"; throws naming the flag and value. */
export function parseCameraSize(text: string, where = "--camera-size"): { width: number; height: number } {
  const m = /^(\d+)x(\d+)$/.exec(text.trim());
  const width = Number(m?.[1]);
  const height = Number(m?.[2]);
  if (!m || width < 8 || height < 8 || width > 1024 || height > 1024)
    throw new Error(`${where}: '${text}' is not a size WxH between 8x8 and 1024x1024 (e.g. 96x96)`);
  return { width, height };
}

/** A ray-cast camera over one {@link SimEnv}; call {@link RayCamera.dispose} when done. */
export class RayCamera {
  /** The spec it was made from. */
  readonly spec: Readonly<CameraSpec>;
  private readonly camId: number;
  private readonly fovy: number;
  private readonly n: number;
  private readonly local: Float64Array;
  private readonly world: Float64Array;
  private readonly geomid;
  private readonly dist;
  private readonly shadowGeom;
  private readonly shadowDist;
  private disposed = false;

  /** Builds the camera; the pose comes from the scene camera named `spec.name` unless `spec.pos` is given. */
  constructor(
    private readonly env: SimEnv,
    spec: CameraSpec,
  ) {
    if (!/^[A-Za-z0-9_]+$/.test(spec.name))
      throw new Error(
        `camera name '${spec.name}' must be letters, digits and '_' (it becomes observation.images.<name>)`,
      );
    for (const [k, v] of [
      ["width", spec.width],
      ["height", spec.height],
    ] as const)
      if (!Number.isInteger(v) || v < 1)
        throw new RangeError(`camera '${spec.name}': ${k} must be a positive integer, got ${v}`);
    this.spec = { ...spec };
    const mj = env.mj;
    const camKind = mj.mjtObj.mjOBJ_CAMERA.value;
    const sceneCam = spec.pos ? -1 : mj.mj_name2id(env.model, camKind, spec.name);
    this.camId = sceneCam;
    this.fovy = spec.fovy ?? (sceneCam >= 0 ? (f64(env.model.cam_fovy)[sceneCam] ?? 45) : DEFAULT_CAMERA_POSE.fovy);
    if (!(this.fovy > 0 && this.fovy < 180))
      throw new RangeError(`camera '${spec.name}': fovy ${this.fovy} must be in (0, 180) degrees`);
    this.n = spec.width * spec.height;
    // pixel directions in the camera frame (x right, y up, looking along -z), unnormalised
    this.local = new Float64Array(3 * this.n);
    const t = Math.tan((this.fovy * Math.PI) / 360);
    const aspect = spec.width / spec.height;
    for (let r = 0; r < spec.height; r++)
      for (let c = 0; c < spec.width; c++) {
        const i = r * spec.width + c;
        this.local[3 * i] = ((2 * (c + 0.5)) / spec.width - 1) * t * aspect;
        this.local[3 * i + 1] = (1 - (2 * (r + 0.5)) / spec.height) * t;
        this.local[3 * i + 2] = -1;
      }
    this.world = new Float64Array(3 * this.n);
    this.geomid = new mj.IntBuffer(this.n);
    this.dist = new mj.DoubleBuffer(this.n);
    this.shadowGeom = new mj.IntBuffer(this.n);
    this.shadowDist = new mj.DoubleBuffer(this.n);
  }

  /** The camera's position and rotation (columns: its x, y, z axes in world coordinates) now. */
  pose(): { pos: Vec3; rot: number[] } {
    if (this.camId >= 0) {
      const p = f64(this.env.data.cam_xpos);
      const m = f64(this.env.data.cam_xmat);
      const k = this.camId;
      return {
        pos: [p[3 * k]!, p[3 * k + 1]!, p[3 * k + 2]!],
        rot: Array.from(m.subarray(9 * k, 9 * k + 9)),
      };
    }
    const pos = this.spec.pos ?? DEFAULT_CAMERA_POSE.pos;
    const at = this.spec.lookAt ?? (this.spec.pos ? [0, 0, 0] : DEFAULT_CAMERA_POSE.lookAt);
    return { pos, rot: lookAtRotation(pos, at as Vec3) };
  }

  /** Renders the current state of the scene (after `env.forward()` or a step). */
  render(): CameraFrame {
    if (this.disposed) throw new Error(`camera '${this.spec.name}': rendered after dispose()`);
    const { mj, model, data } = this.env;
    const { width, height } = this.spec;
    const { pos, rot } = this.pose();
    const n = this.n;
    const L = this.local;
    const W = this.world;
    for (let i = 0; i < n; i++) {
      const x = L[3 * i]!;
      const y = L[3 * i + 1]!;
      const z = L[3 * i + 2]!;
      const wx = rot[0]! * x + rot[1]! * y + rot[2]! * z;
      const wy = rot[3]! * x + rot[4]! * y + rot[5]! * z;
      const wz = rot[6]! * x + rot[7]! * y + rot[8]! * z;
      const len = Math.sqrt(wx * wx + wy * wy + wz * wz);
      W[3 * i] = wx / len;
      W[3 * i + 1] = wy / len;
      W[3 * i + 2] = wz / len;
    }
    mj.mj_multiRay(model, data, pos, W as unknown as number[], VISIBLE_GROUPS, 1, -1, this.geomid, this.dist, n, FAR);
    const gid = i32(this.geomid.GetView());
    const dist = f64(this.dist.GetView());
    const geomType = i32(model.geom_type);
    const geomSize = f64(model.geom_size);
    const geomRgba = model.geom_rgba as Float32Array;
    const matId = i32(model.geom_matid);
    const matRgba = model.mat_rgba as Float32Array;
    const gpos = f64(data.geom_xpos);
    const gmat = f64(data.geom_xmat);
    const light = this.spec.light ?? [-0.3, 0.25, 1.6];
    const hits = new Float64Array(3 * n);
    const zAxis: Vec3 = [rot[2]!, rot[5]!, rot[8]!];
    const depth = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const g = gid[i]!;
      const d = dist[i]!;
      if (g < 0 || !(d >= 0)) {
        depth[i] = Infinity;
        continue;
      }
      const dx = W[3 * i]!;
      const dy = W[3 * i + 1]!;
      const dz = W[3 * i + 2]!;
      hits[3 * i] = pos[0] + d * dx;
      hits[3 * i + 1] = pos[1] + d * dy;
      hits[3 * i + 2] = pos[2] + d * dz;
      depth[i] = -d * (dx * zAxis[0] + dy * zAxis[1] + dz * zAxis[2]);
    }
    // shadow rays: from the light to every hit point; lit when the first thing met is the point itself
    let lit: Uint8Array | undefined;
    if (this.spec.shadows !== false) {
      const dirs = new Float64Array(3 * n);
      const lightDist = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        if (gid[i]! < 0) {
          dirs[3 * i + 2] = -1;
          continue;
        }
        const vx = hits[3 * i]! - light[0];
        const vy = hits[3 * i + 1]! - light[1];
        const vz = hits[3 * i + 2]! - light[2];
        const len = Math.sqrt(vx * vx + vy * vy + vz * vz);
        lightDist[i] = len;
        dirs[3 * i] = vx / len;
        dirs[3 * i + 1] = vy / len;
        dirs[3 * i + 2] = vz / len;
      }
      mj.mj_multiRay(
        model,
        data,
        light,
        dirs as unknown as number[],
        VISIBLE_GROUPS,
        1,
        -1,
        this.shadowGeom,
        this.shadowDist,
        n,
        FAR,
      );
      const sg = i32(this.shadowGeom.GetView());
      const sd = f64(this.shadowDist.GetView());
      lit = new Uint8Array(n);
      for (let i = 0; i < n; i++)
        lit[i] = gid[i]! >= 0 && (sg[i] === gid[i] || sd[i]! < 0 || sd[i]! >= lightDist[i]! - 2e-3) ? 1 : 0;
    }
    const rgb = new Uint8Array(3 * n);
    const nrm: Vec3 = [0, 0, 0];
    for (let i = 0; i < n; i++) {
      const g = gid[i]!;
      if (g < 0 || depth[i] === Infinity) {
        rgb[3 * i] = Math.round(255 * SKY[0]);
        rgb[3 * i + 1] = Math.round(255 * SKY[1]);
        rgb[3 * i + 2] = Math.round(255 * SKY[2]);
        continue;
      }
      const hx = hits[3 * i]!;
      const hy = hits[3 * i + 1]!;
      const hz = hits[3 * i + 2]!;
      surfaceNormal(geomType[g]!, geomSize, gpos, gmat, g, hx, hy, hz, nrm);
      const dx = W[3 * i]!;
      const dy = W[3 * i + 1]!;
      const dz = W[3 * i + 2]!;
      if (Number.isNaN(nrm[0])) {
        nrm[0] = -dx;
        nrm[1] = -dy;
        nrm[2] = -dz;
      }
      if (nrm[0] * dx + nrm[1] * dy + nrm[2] * dz > 0) {
        nrm[0] = -nrm[0];
        nrm[1] = -nrm[1];
        nrm[2] = -nrm[2];
      }
      let lx = light[0] - hx;
      let ly = light[1] - hy;
      let lz = light[2] - hz;
      const ll = Math.sqrt(lx * lx + ly * ly + lz * lz);
      lx /= ll;
      ly /= ll;
      lz /= ll;
      const diffuse = lit && !lit[i] ? 0 : Math.max(0, nrm[0] * lx + nrm[1] * ly + nrm[2] * lz);
      const shade = AMBIENT + DIFFUSE * diffuse;
      const m = matId[g]!;
      const src = m >= 0 ? matRgba : geomRgba;
      const o = 4 * (m >= 0 ? m : g);
      rgb[3 * i] = clamp255(src[o]! * shade);
      rgb[3 * i + 1] = clamp255(src[o + 1]! * shade);
      rgb[3 * i + 2] = clamp255(src[o + 2]! * shade);
    }
    return { width, height, rgb, depth };
  }

  /** Frees the wasm buffers. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.geomid.delete();
    this.dist.delete();
    this.shadowGeom.delete();
    this.shadowDist.delete();
  }
}

/** Whether a scene defines a camera of this name (its pose is then the scene's). */
export function sceneHasCamera(env: SimEnv, name: string): boolean {
  return env.mj.mj_name2id(env.model, env.mj.mjtObj.mjOBJ_CAMERA.value, name) >= 0;
}

/** Row-major rotation whose columns are the camera axes for a camera at `pos` looking at `at` (world z up). */
export function lookAtRotation(pos: Vec3, at: Vec3): number[] {
  const f = normalize([at[0] - pos[0], at[1] - pos[1], at[2] - pos[2]]);
  const z: Vec3 = [-f[0], -f[1], -f[2]];
  let x = cross(f, [0, 0, 1]);
  if (Math.hypot(...x) < 1e-9) x = [0, 1, 0]; // looking straight down or up
  x = normalize(x);
  const y = cross(z, x);
  return [x[0], y[0], z[0], x[1], y[1], z[1], x[2], y[2], z[2]];
}

/**
 * The outward unit normal at a hit point on geom g from its primitive shape, into `out`; NaN in
 * `out[0]` for meshes and height fields. (No closures or temporary arrays: it runs per pixel.)
 */
function surfaceNormal(
  type: number,
  size: Float64Array,
  gpos: Float64Array,
  gmat: Float64Array,
  g: number,
  hx: number,
  hy: number,
  hz: number,
  out: Vec3,
): void {
  const px = hx - gpos[3 * g]!;
  const py = hy - gpos[3 * g + 1]!;
  const pz = hz - gpos[3 * g + 2]!;
  const o = 9 * g;
  const r00 = gmat[o]!;
  const r01 = gmat[o + 1]!;
  const r02 = gmat[o + 2]!;
  const r10 = gmat[o + 3]!;
  const r11 = gmat[o + 4]!;
  const r12 = gmat[o + 5]!;
  const r20 = gmat[o + 6]!;
  const r21 = gmat[o + 7]!;
  const r22 = gmat[o + 8]!;
  // local coordinates q = R^T p
  const qx = r00 * px + r10 * py + r20 * pz;
  const qy = r01 * px + r11 * py + r21 * pz;
  const qz = r02 * px + r12 * py + r22 * pz;
  const s0 = size[3 * g]!;
  const s1 = size[3 * g + 1]!;
  const s2 = size[3 * g + 2]!;
  let nx = 0;
  let ny = 0;
  let nz = 1;
  if (type === 2) {
    // sphere
    nx = qx;
    ny = qy;
    nz = qz;
  } else if (type === 3) {
    // capsule: radius s0, half length s1 along z
    nx = qx;
    ny = qy;
    nz = qz - Math.max(-s1, Math.min(s1, qz));
  } else if (type === 4) {
    // ellipsoid
    nx = qx / (s0 * s0);
    ny = qy / (s1 * s1);
    nz = qz / (s2 * s2);
  } else if (type === 5) {
    // cylinder: radius s0, half length s1; the cap or the side, whichever the point is nearer
    if (s1 - Math.abs(qz) < s0 - Math.sqrt(qx * qx + qy * qy)) {
      nx = 0;
      ny = 0;
      nz = qz < 0 ? -1 : 1;
    } else {
      nx = qx;
      ny = qy;
      nz = 0;
    }
  } else if (type === 6) {
    // box: the face the point is nearest
    const ex = Math.abs(Math.abs(qx) - s0);
    const ey = Math.abs(Math.abs(qy) - s1);
    const ez = Math.abs(Math.abs(qz) - s2);
    nx = 0;
    ny = 0;
    nz = 0;
    if (ex <= ey && ex <= ez) nx = qx < 0 ? -1 : 1;
    else if (ey <= ez) ny = qy < 0 ? -1 : 1;
    else nz = qz < 0 ? -1 : 1;
  } else if (type !== 0) {
    // height field, mesh, SDF: no closed form here; the caller faces it to the camera
    out[0] = NaN;
    return;
  }
  // back to world: n = R q (a plane keeps its local +z)
  const wx = r00 * nx + r01 * ny + r02 * nz;
  const wy = r10 * nx + r11 * ny + r12 * nz;
  const wz = r20 * nx + r21 * ny + r22 * nz;
  const len = Math.sqrt(wx * wx + wy * wy + wz * wz) || 1;
  out[0] = wx / len;
  out[1] = wy / len;
  out[2] = wz / len;
}

function clamp255(v: number): number {
  return Math.max(0, Math.min(255, Math.round(255 * v)));
}

function normalize(v: Vec3): Vec3 {
  const l = Math.hypot(v[0], v[1], v[2]);
  return [v[0] / l, v[1] / l, v[2] / l];
}

function cross(a: Vec3, b: Vec3): Vec3 {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

/**
 * Camera specs from command-line values: one name per camera, and either one size for all of them
 * or one size per camera (`WxH`, default 96x96). Throws naming the flags when the counts disagree.
 */
export function cameraSpecs(names: readonly string[], sizes: readonly string[] = []): CameraSpec[] {
  if (sizes.length > 1 && sizes.length !== names.length)
    throw new Error(
      `--camera-size: give one size for all cameras or one per --camera (${names.length}), got ${sizes.length}`,
    );
  if (sizes.length > 0 && names.length === 0) throw new Error("--camera-size needs a --camera <name>");
  return names.map((name, i) => ({ name, ...parseCameraSize(sizes[sizes.length === 1 ? 0 : i] ?? "96x96") }));
}

/**
 * The simulator cameras an image policy reads: one per camera feature keyed
 * `observation.images.<name>`, at the feature's `[height, width, 3]`. Throws naming a camera
 * feature of another key (the simulator names its images `observation.images.<camera>`).
 */
export function policyCameras(
  features: readonly { key: string; rawShape: readonly number[]; kind?: "image" | undefined }[],
): CameraSpec[] {
  const out: CameraSpec[] = [];
  for (const f of features) {
    if (f.kind !== "image") continue;
    const m = /^observation\.images\.(.+)$/.exec(f.key);
    if (!m)
      throw new Error(
        `camera feature '${f.key}' is not named observation.images.<camera>; the simulator cannot render it`,
      );
    out.push({ name: m[1]!, width: f.rawShape[1]!, height: f.rawShape[0]! });
  }
  return out;
}
