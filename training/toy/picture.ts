/**
 * A row of 2-D scatter panels as an SVG document: the toy flows drawn from noise (t = 0) to data
 * (t = 1). Hand-written SVG: a few hundred circles per panel need no plotting library.
 */

/** One panel: a title and points `[n, 2]` (flat). */
export interface ScatterPanel {
  title: string;
  points: Float32Array;
}

/** Renders panels side by side over the square [-range, range]^2. */
export function scatterPanelsSvg(
  panels: ScatterPanel[],
  opts: { range?: number; size?: number; title?: string } = {},
): string {
  const size = opts.size ?? 200;
  const range = opts.range ?? 2.5;
  const pad = 24;
  const width = panels.length * (size + 10) + 10;
  const height = size + pad + (opts.title ? 24 : 0) + 10;
  const top = opts.title ? 24 : 0;
  const parts: string[] = [`<rect width="${width}" height="${height}" fill="white"/>`];
  if (opts.title)
    parts.push(`<text x="10" y="17" font-family="sans-serif" font-size="14">${escapeXml(opts.title)}</text>`);
  panels.forEach((panel, i) => {
    const x0 = 10 + i * (size + 10);
    const y0 = top + pad;
    parts.push(
      `<text x="${x0 + size / 2}" y="${top + 17}" text-anchor="middle" font-family="sans-serif" font-size="13">${escapeXml(panel.title)}</text>`,
    );
    parts.push(`<rect x="${x0}" y="${y0}" width="${size}" height="${size}" fill="#fafafa" stroke="#999"/>`);
    const dots: string[] = [];
    for (let k = 0; k + 1 < panel.points.length; k += 2) {
      const px = x0 + ((panel.points[k]! + range) / (2 * range)) * size;
      const py = y0 + size - ((panel.points[k + 1]! + range) / (2 * range)) * size;
      if (px < x0 || px > x0 + size || py < y0 || py > y0 + size) continue;
      dots.push(`<circle cx="${px.toFixed(1)}" cy="${py.toFixed(1)}" r="1.3"/>`);
    }
    parts.push(`<g fill="#1a5fb4" fill-opacity="0.55">${dots.join("")}</g>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">\n${parts.join("\n")}\n</svg>\n`;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
