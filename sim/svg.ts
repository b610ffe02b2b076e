/**
 * A small top-down picture of an episode (hand-written SVG): the table's x-y plane seen from above,
 * +x up the page and +y to the left as a robot's operator facing it would see it, with the arm's
 * base, the end-effector path, and the task's target, goal, puck, obstacle and walls; with a camera,
 * a strip of the images the policy saw at its chunk requests under it.
 */
import type { Vec3 } from "./env.ts";
import { encodePng } from "../eval/frames.ts";
import type { SceneMarkers } from "./tasks/task.ts";

/** Options for {@link episodeSvg}. */
export interface EpisodeSvgOptions {
  /** Title line, e.g. "avoid seed 12: success". */
  title: string;
  /** End-effector positions over the episode (metres). */
  trace: Vec3[];
  /** Objects at the start and at the end of the episode. */
  markers: { start: SceneMarkers; end: SceneMarkers };
  /** Whether the episode succeeded (colours the path). */
  outcome: "success" | "failure";
  /** Half-width of the drawn area around (0.17, 0) in metres; default 0.16. */
  halfWidth?: number;
  /** Camera images (uint8 RGB `[height, width, 3]`) the policy saw, in order; at most 8 are drawn, evenly spread. */
  camera?: { name: string; width: number; height: number; frames: readonly Uint8Array[] };
}

/** Returns an SVG document (about 1-3 kB) for one episode. */
export function episodeSvg(opts: EpisodeSvgOptions): string {
  const size = 320;
  const half = opts.halfWidth ?? 0.16;
  const cx = 0.17;
  const scale = size / (2 * half);
  // World (x forward, y left) -> page (u right, v down): x up the page, y to the left.
  const u = (p: Vec3 | [number, number, ...number[]]): number => size / 2 - (p[1] ?? 0) * scale;
  const v = (p: Vec3 | [number, number, ...number[]]): number => size / 2 - ((p[0] ?? 0) - cx) * scale;
  const f = (n: number): string => n.toFixed(1);
  const parts: string[] = [];
  parts.push(`<rect width="${size}" height="${size + 22}" fill="#f4efe6"/>`);
  // Grid every 5 cm.
  for (let g = -0.15; g <= 0.151; g += 0.05) {
    const gy = f(size / 2 - g * scale);
    const gx = f(size / 2 - g * scale);
    parts.push(`<line x1="0" y1="${gy}" x2="${size}" y2="${gy}" stroke="#e2d8c6" stroke-width="1"/>`);
    parts.push(`<line x1="${gx}" y1="0" x2="${gx}" y2="${size}" stroke="#e2d8c6" stroke-width="1"/>`);
  }
  parts.push(`<circle cx="${f(u([0, 0]))}" cy="${f(v([0, 0]))}" r="${f(0.045 * scale)}" fill="#333"/>`);
  const { start, end } = opts.markers;
  if (start.goal) {
    parts.push(
      `<circle cx="${f(u(start.goal.center))}" cy="${f(v(start.goal.center))}" r="${f(start.goal.radius * scale)}" fill="#3c3" fill-opacity="0.35" stroke="#292"/>`,
    );
  }
  if (start.obstacle) {
    parts.push(
      `<circle cx="${f(u(start.obstacle.center))}" cy="${f(v(start.obstacle.center))}" r="${f(start.obstacle.radius * scale)}" fill="#d32"/>`,
    );
  }
  for (const w of start.walls ?? []) {
    // x runs up the page and y to the left: the box's page width comes from its y size.
    const [hx, hy] = w.halfSize;
    parts.push(
      `<rect x="${f(u(w.center) - hy * scale)}" y="${f(v(w.center) - hx * scale)}" width="${f(2 * hy * scale)}" height="${f(2 * hx * scale)}" fill="#d32"/>`,
    );
  }
  if (start.block) {
    parts.push(
      `<circle cx="${f(u(start.block.center))}" cy="${f(v(start.block.center))}" r="${f(start.block.radius * scale)}" fill="none" stroke="#36c" stroke-dasharray="3 2"/>`,
    );
  }
  if (end.block) {
    parts.push(
      `<circle cx="${f(u(end.block.center))}" cy="${f(v(end.block.center))}" r="${f(end.block.radius * scale)}" fill="#36c" fill-opacity="0.8"/>`,
    );
  }
  if (start.target) {
    parts.push(
      `<circle cx="${f(u(start.target))}" cy="${f(v(start.target))}" r="${f(0.012 * scale)}" fill="#2b2" stroke="#161"/>`,
    );
  }
  if (opts.trace.length > 0) {
    const pts = opts.trace.map((p) => `${f(u(p))},${f(v(p))}`).join(" ");
    const colour = opts.outcome === "success" ? "#1a5fb4" : "#c01c28";
    parts.push(`<polyline points="${pts}" fill="none" stroke="${colour}" stroke-width="2" stroke-linejoin="round"/>`);
    const s = opts.trace[0] as Vec3;
    const e = opts.trace[opts.trace.length - 1] as Vec3;
    parts.push(`<circle cx="${f(u(s))}" cy="${f(v(s))}" r="3" fill="${colour}"/>`);
    parts.push(`<rect x="${f(u(e) - 3)}" y="${f(v(e) - 3)}" width="6" height="6" fill="${colour}"/>`);
  }
  parts.push(`<rect y="${size}" width="${size}" height="22" fill="#fff"/>`); // the title strip hides what lies below the view
  parts.push(
    `<text x="6" y="${size + 16}" font-family="sans-serif" font-size="13" fill="#222">${escapeXml(opts.title)}</text>`,
  );
  let height = size + 22;
  const cam = opts.camera;
  if (cam && cam.frames.length > 0) {
    // up to 4 per row, 8 in all, spread over the episode
    const pick =
      cam.frames.length <= 8
        ? cam.frames.map((_, i) => i)
        : Array.from({ length: 8 }, (_, k) => Math.round((k * (cam.frames.length - 1)) / 7));
    const w = (size - 5 * 4) / 4;
    const h = (w * cam.height) / cam.width;
    parts.push(
      `<rect y="${height}" width="${size}" height="${18 + Math.ceil(pick.length / 4) * (h + 4)}" fill="#fff"/>`,
    );
    parts.push(
      `<text x="6" y="${height + 13}" font-family="sans-serif" font-size="11" fill="#444">${escapeXml(`observation.images.${cam.name}: what the policy saw at chunks ${pick.map((i) => i + 1).join(", ")}`)}</text>`,
    );
    pick.forEach((fi, k) => {
      const x = 4 + (k % 4) * (w + 4);
      const y = height + 18 + Math.floor(k / 4) * (h + 4);
      const png = Buffer.from(encodePng(cam.frames[fi]!, cam.width, cam.height)).toString("base64");
      parts.push(
        `<image x="${f(x)}" y="${f(y)}" width="${f(w)}" height="${f(h)}" style="image-rendering:pixelated" href="data:image/png;base64,${png}"/>`,
      );
    });
    height += 18 + Math.ceil(pick.length / 4) * (h + 4);
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${height}" viewBox="0 0 ${size} ${height}">\n${parts.join("\n")}\n</svg>\n`;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}
