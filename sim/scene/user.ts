/**
 * A user-supplied robot: an MJCF file plus a JSON mapping from its joints and actuators to the
 * state and action dims. Files the MJCF refers to (`file="..."`, looked up next to the MJCF and in
 * the compiler's meshdir/texturedir/assetdir) are copied into MuJoCo's in-memory file system.
 *
 * Mapping file (`--mapping`):
 * ```json
 * { "joints": ["j1", "j2"], "actuators": ["a1", "a2"], "eeSite": "tool",
 *   "gripper": { "joint": "j2", "open": 0.04, "closed": 0 }, "home": [0, 0.02] }
 * ```
 * `actuators[i]` must be a position actuator driving `joints[i]`; the tasks' workspace is sized for
 * a small table-top arm whose base stands at the origin.
 */
import { readFile } from "node:fs/promises";
import { dirname, join, normalize, resolve } from "node:path";
import { parseValue, readJsonFile } from "../../policy/io/json.ts";
import { z } from "zod";
import type { RobotScene } from "./robot.ts";
import { injectWorldbody } from "./robot.ts";

/** The mapping JSON's schema. */
export const RobotMappingSchema = z.object({
  joints: z.array(z.string().min(1)).min(1),
  actuators: z.array(z.string().min(1)).min(1),
  eeSite: z.string().min(1),
  gripper: z.object({ joint: z.string().min(1), open: z.number(), closed: z.number() }).optional(),
  home: z.array(z.number()).optional(),
});

/** A parsed mapping file. */
export type RobotMapping = z.infer<typeof RobotMappingSchema>;

/** Checks a parsed mapping object; errors name the source and the offending field. */
export function parseRobotMapping(raw: unknown, source: string): RobotMapping {
  const m = parseValue(raw, RobotMappingSchema, `${source}: bad robot mapping`);
  if (m.joints.length !== m.actuators.length) {
    throw new Error(
      `${source}: 'joints' has ${m.joints.length} names but 'actuators' has ${m.actuators.length}; need one actuator per joint`,
    );
  }
  if (m.home && m.home.length !== m.joints.length) {
    throw new Error(`${source}: 'home' has ${m.home.length} values, expected ${m.joints.length} (one per joint)`);
  }
  if (m.gripper && !m.joints.includes(m.gripper.joint)) {
    throw new Error(`${source}: 'gripper.joint' '${m.gripper.joint}' is not one of 'joints' (${m.joints.join(", ")})`);
  }
  return m;
}

/** Options for {@link loadUserScene}. */
export interface UserSceneOptions {
  /** Path of the MJCF file. */
  mjcf: string;
  /** Path of the mapping JSON file. */
  mapping: string;
}

/** Reads a user MJCF, its referenced files and its mapping into a {@link RobotScene}. */
export async function loadUserScene(opts: UserSceneOptions): Promise<RobotScene> {
  let xml: string;
  try {
    xml = await readFile(opts.mjcf, "utf8");
  } catch (err) {
    throw new Error(`${opts.mjcf}: cannot read the MJCF file`, { cause: err });
  }
  const m = parseRobotMapping(
    await readJsonFile(opts.mapping, z.unknown(), { missing: "the robot mapping JSON" }),
    opts.mapping,
  );
  const assets = await collectAssets(xml, dirname(opts.mjcf));
  const source = opts.mjcf;
  return {
    source,
    buildXml: (extras) => injectWorldbody(xml, extras, source),
    assets,
    joints: m.joints,
    actuators: m.actuators,
    eeSite: m.eeSite,
    ...(m.gripper
      ? { gripper: { index: m.joints.indexOf(m.gripper.joint), open: m.gripper.open, closed: m.gripper.closed } }
      : {}),
    ...(m.home ? { home: m.home } : {}),
  };
}

/** Reads every `file="..."` an MJCF (and the XML it includes) refers to, keyed by relative path. */
async function collectAssets(xml: string, baseDir: string): Promise<Record<string, string | Uint8Array>> {
  const out: Record<string, string | Uint8Array> = {};
  const dirs = [""];
  for (const attr of ["meshdir", "texturedir", "assetdir"]) {
    const match = new RegExp(`${attr}\\s*=\\s*"([^"]*)"`).exec(xml);
    if (match?.[1]) dirs.push(match[1]);
  }
  const queue: string[] = [xml];
  while (queue.length > 0) {
    const text = queue.pop() ?? "";
    for (const match of text.matchAll(/\bfile\s*=\s*"([^"]+)"/g)) {
      const ref = match[1] ?? "";
      for (const d of dirs) {
        const rel = normalize(join(d, ref));
        if (rel in out || rel.startsWith("..")) continue;
        try {
          const bytes = await readFile(join(baseDir, rel));
          const isXml = rel.toLowerCase().endsWith(".xml");
          out[rel] = isXml ? bytes.toString("utf8") : new Uint8Array(bytes);
          if (isXml) queue.push(bytes.toString("utf8"));
          break;
        } catch {
          // not in this folder; try the next
        }
      }
    }
  }
  return out;
}

/**
 * The user scene of the `--mjcf` and `--mapping` flags (paths resolved against the working
 * directory), or undefined for the built-in arm when neither is given; throws when only one is.
 */
export async function userSceneFrom(o: { mjcf?: string; mapping?: string }): Promise<RobotScene | undefined> {
  if (!o.mjcf && !o.mapping) return undefined;
  if (!o.mjcf || !o.mapping)
    throw new Error("--mjcf and --mapping go together: the MJCF file and its joint/actuator mapping JSON");
  return loadUserScene({ mjcf: resolve(o.mjcf), mapping: resolve(o.mapping) });
}
