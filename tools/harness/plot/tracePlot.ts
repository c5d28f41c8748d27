/**
 * A PNG of how a CTM made up its mind: the probability of the leading classes, the certainty and (for a
 * model with a halting head) the halt signal at every tick, with the threshold and the answer tick
 * marked. Drawn as SVG and rasterised by sharp, in the palette and with the escaping of every other plot.
 */
import { PALETTE, writePng, xmlText } from "./svgChart.ts";

export interface PlotSeries {
  label: string;
  /** One value per tick, in [0, 1]. */
  values: number[];
}

export interface TracePlot {
  title: string;
  certainty: number[];
  /** The halting head's output per tick, for a model with one. */
  halt?: number[];
  /** The signal the threshold applies to. */
  signal: "certainty" | "halt";
  classes: PlotSeries[];
  threshold: number;
  answerTick: number;
}

/** The halt signal's own colour: none of the classes' (PALETTE), nor certainty's black. */
export const HALT_COLOUR = "#9400d3";

const WIDTH = 800;
const HEIGHT = 450;
const MARGIN = { left: 60, right: 150, top: 40, bottom: 50 };

export function traceSvg(plot: TracePlot): string {
  const ticks = plot.certainty.length;
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (tick: number) => MARGIN.left + (ticks <= 1 ? plotWidth / 2 : ((tick - 1) / (ticks - 1)) * plotWidth);
  const y = (value: number) => MARGIN.top + (1 - Math.max(0, Math.min(1, value))) * plotHeight;
  const line = (values: number[]) => values.map((v, i) => `${x(i + 1).toFixed(1)},${y(v).toFixed(1)}`).join(" ");

  // The threshold in the colour of the signal it applies to.
  const thresholdColour = plot.signal === "halt" ? HALT_COLOUR : "#000";
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" font-family="DejaVu Sans, sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${MARGIN.left}" y="24" font-size="15">${xmlText(plot.title)}</text>`,
  ];
  for (let v = 0; v <= 1.0001; v += 0.25) {
    parts.push(
      `<line x1="${MARGIN.left}" x2="${MARGIN.left + plotWidth}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`,
      `<text x="${MARGIN.left - 8}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(2)}</text>`,
    );
  }
  const step = Math.max(1, Math.ceil(ticks / 15));
  for (let t = 1; t <= ticks; t += step) {
    parts.push(`<text x="${x(t)}" y="${MARGIN.top + plotHeight + 18}" text-anchor="middle">${t}</text>`);
  }
  parts.push(
    `<text x="${MARGIN.left + plotWidth / 2}" y="${HEIGHT - 12}" text-anchor="middle">tick</text>`,
    `<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotWidth}" height="${plotHeight}" fill="none" stroke="#999"/>`,
    `<line x1="${MARGIN.left}" x2="${MARGIN.left + plotWidth}" y1="${y(plot.threshold)}" y2="${y(plot.threshold)}" stroke="${thresholdColour}" stroke-dasharray="6 4"/>`,
    `<line x1="${x(plot.answerTick)}" x2="${x(plot.answerTick)}" y1="${MARGIN.top}" y2="${MARGIN.top + plotHeight}" stroke="#888" stroke-dasharray="2 3"/>`,
  );
  const legend = (row: number, colour: string, text: string, dashed = false) =>
    parts.push(
      `<line x1="${WIDTH - MARGIN.right + 12}" x2="${WIDTH - MARGIN.right + 36}" y1="${MARGIN.top + 10 + row * 20}" y2="${MARGIN.top + 10 + row * 20}" stroke="${colour}" stroke-width="3"${dashed ? ' stroke-dasharray="6 4"' : ""}/>`,
      `<text x="${WIDTH - MARGIN.right + 42}" y="${MARGIN.top + 14 + row * 20}">${xmlText(text)}</text>`,
    );
  plot.classes.forEach((series, i) => {
    const colour = PALETTE[i % PALETTE.length] as string;
    parts.push(`<polyline points="${line(series.values)}" fill="none" stroke="${colour}" stroke-width="2"/>`);
    legend(i, colour, `p(${series.label})`);
  });
  parts.push(`<polyline points="${line(plot.certainty)}" fill="none" stroke="#000" stroke-width="3"/>`);
  legend(plot.classes.length, "#000", "certainty");
  let row = plot.classes.length + 1;
  if (plot.halt) {
    parts.push(`<polyline points="${line(plot.halt)}" fill="none" stroke="${HALT_COLOUR}" stroke-width="3"/>`);
    legend(row++, HALT_COLOUR, "halt");
  }
  legend(row, thresholdColour, `threshold ${plot.threshold.toFixed(3)} (${plot.signal})`, true);
  parts.push("</svg>");
  return parts.join("\n");
}

export async function renderTracePlot(plot: TracePlot, path: string): Promise<void> {
  await writePng(traceSvg(plot), path);
}
