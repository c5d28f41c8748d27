/**
 * Just enough charting for the load-test plots: line and bar charts with linear or log axes, a legend,
 * and a grid of panels, drawn as SVG and rasterised to PNG by sharp (librsvg), so no chart library
 * and no browser are needed.
 */
import sharp from "sharp";

export interface ChartPoint {
  x: number;
  y: number;
  /** A small label drawn next to the point. */
  note?: string;
}

export interface ChartSeries {
  label: string;
  points: ChartPoint[];
  dashed?: boolean;
  /** Defaults to the palette colour of the series' position. */
  colour?: string;
}

export interface ChartAxis {
  label: string;
  log?: boolean;
  /** Linear axes: stretch the range to include zero. */
  zero?: boolean;
  min?: number;
  max?: number;
  /** Where the tick marks go; by default round values over the range. */
  ticks?: number[];
  format?: (value: number) => string;
}

export interface LineChart {
  title: string;
  x: ChartAxis;
  y: ChartAxis;
  series: ChartSeries[];
}

export interface BarChart {
  title: string;
  x: ChartAxis;
  y: ChartAxis;
  /** bars[i] is drawn at x = firstX + i. */
  bars: number[];
  firstX: number;
  colour?: string;
}

export interface Frame {
  width: number;
  height: number;
  /** Position inside an enclosing grid. */
  left?: number;
  top?: number;
}

export const PALETTE = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#17becf",
];

const FONT = 'font-family="DejaVu Sans, sans-serif"';
interface Margin {
  left: number;
  right: number;
  top: number;
  bottom: number;
}

const MARGIN: Margin = { left: 64, right: 24, top: 34, bottom: 46 };
/** DejaVu Sans at 12px averages about this many pixels a character. */
const CHAR_WIDTH = 7;

export const xmlText = (text: string) => text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);

// Tick values are already round (linearTicks, logTicks): print them whole, so that steps of 0.05 or a
// log axis's 0.002 do not all read "0.1" or "0.0".
const num = (v: number) => String(Number(v.toPrecision(6)));

/** Round tick values for a linear range: steps of 1, 2 or 5 times a power of ten. */
export function linearTicks(min: number, max: number, target = 5): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / target;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * power >= raw) ?? 10) * power;
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step - 1e-9) * step; v <= max + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

/** 1, 2 and 5 times each power of ten over a short range; powers of ten only over a long one. */
export function logTicks(min: number, max: number): number[] {
  const lo = Math.floor(Math.log10(min));
  const hi = Math.ceil(Math.log10(max));
  const multipliers = hi - lo <= 3 ? [1, 2, 5] : [1];
  const ticks: number[] = [];
  for (let p = lo; p <= hi; p++) {
    for (const m of multipliers) {
      const v = Number((m * 10 ** p).toPrecision(12));
      if (v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9)) ticks.push(v);
    }
  }
  return ticks;
}

interface Scale {
  at(value: number): number;
  ticks: number[];
}

/** Room around the data, as a fraction of its span, so that no point sits on the frame. */
const PAD = 0.06;

function scale(axis: ChartAxis, values: number[], from: number, to: number): Scale {
  const finite = values.filter((v) => Number.isFinite(v) && (!axis.log || v > 0));
  let lo = finite.length ? Math.min(...finite) : axis.log ? 1 : 0;
  let hi = finite.length ? Math.max(...finite) : axis.log ? 10 : 1;
  if (axis.log) {
    if (hi / lo < 2) [lo, hi] = [lo / 1.5, hi * 1.5];
    const span = Math.log10(hi) - Math.log10(lo);
    const a = Math.log10(axis.min ?? lo) - (axis.min === undefined ? PAD * span : 0);
    const b = Math.log10(axis.max ?? hi) + (axis.max === undefined ? PAD * span : 0);
    return {
      at: (v) => from + ((Math.log10(Math.max(v, 10 ** a)) - a) / (b - a)) * (to - from),
      ticks: axis.ticks ?? logTicks(10 ** a, 10 ** b),
    };
  }
  if (axis.zero) {
    lo = Math.min(lo, 0);
    hi = Math.max(hi, 0);
  }
  if (hi === lo) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const span = hi - lo;
  // A zero the axis was asked to include stays on the frame: bars and throughput start there.
  lo = axis.min ?? (axis.zero && lo === 0 ? 0 : lo - PAD * span);
  hi = axis.max ?? (axis.zero && hi === 0 ? 0 : hi + PAD * span);
  const ticks = axis.ticks ?? linearTicks(lo, hi);
  return { at: (v) => from + ((v - lo) / (hi - lo)) * (to - from), ticks };
}

function open(frame: Frame, title: string, margin: Margin): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" x="${frame.left ?? 0}" y="${frame.top ?? 0}" width="${frame.width}" height="${frame.height}" ${FONT} font-size="12">`,
    `<rect width="${frame.width}" height="${frame.height}" fill="white"/>`,
    `<text x="${margin.left}" y="22" font-size="14">${xmlText(title)}</text>`,
  ];
}

function axes(
  parts: string[],
  frame: Frame,
  margin: Margin,
  chart: { x: ChartAxis; y: ChartAxis },
  xs: Scale,
  ys: Scale,
): void {
  const right = frame.width - margin.right;
  const bottom = frame.height - margin.bottom;
  const fx = chart.x.format ?? num;
  const fy = chart.y.format ?? num;
  for (const v of ys.ticks) {
    const y = ys.at(v).toFixed(1);
    parts.push(
      `<line x1="${margin.left}" x2="${right}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`,
      `<text x="${margin.left - 6}" y="${Number(y) + 4}" text-anchor="end">${xmlText(fy(v))}</text>`,
    );
  }
  for (const v of xs.ticks) {
    const x = xs.at(v).toFixed(1);
    parts.push(
      `<line x1="${x}" x2="${x}" y1="${margin.top}" y2="${bottom}" stroke="#f0f0f0"/>`,
      `<text x="${x}" y="${bottom + 16}" text-anchor="middle">${xmlText(fx(v))}</text>`,
    );
  }
  parts.push(
    `<rect x="${margin.left}" y="${margin.top}" width="${right - margin.left}" height="${bottom - margin.top}" fill="none" stroke="#999"/>`,
    `<text x="${(margin.left + right) / 2}" y="${frame.height - 10}" text-anchor="middle">${xmlText(chart.x.label)}</text>`,
    `<text transform="translate(16 ${(margin.top + bottom) / 2}) rotate(-90)" text-anchor="middle">${xmlText(chart.y.label)}</text>`,
  );
}

export function lineChartSvg(chart: LineChart, frame: Frame): string {
  const legendWidth = 48 + CHAR_WIDTH * Math.max(0, ...chart.series.map((s) => s.label.length));
  const margin = { ...MARGIN, right: Math.max(MARGIN.right, legendWidth) };
  const parts = open(frame, chart.title, margin);
  const all = chart.series.flatMap((s) => s.points);
  const xs = scale(
    chart.x,
    all.map((p) => p.x),
    margin.left,
    frame.width - margin.right,
  );
  const ys = scale(
    chart.y,
    all.map((p) => p.y),
    frame.height - margin.bottom,
    margin.top,
  );
  axes(parts, frame, margin, chart, xs, ys);
  chart.series.forEach((series, i) => {
    const colour = series.colour ?? (PALETTE[i % PALETTE.length] as string);
    const points = series.points
      .filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y))
      .sort((a, b) => a.x - b.x)
      .map((p) => ({ ...p, px: xs.at(p.x), py: ys.at(p.y) }));
    const dash = series.dashed ? ' stroke-dasharray="6 4"' : "";
    if (points.length > 1) {
      const path = points.map((p) => `${p.px.toFixed(1)},${p.py.toFixed(1)}`).join(" ");
      parts.push(`<polyline points="${path}" fill="none" stroke="${colour}" stroke-width="2"${dash}/>`);
    }
    for (const p of points) {
      // Every other series gets rings, so a series drawn on top of another does not hide it.
      const marker = i % 2 === 0 ? `r="3" fill="${colour}"` : `r="5" fill="none" stroke="${colour}" stroke-width="1.5"`;
      parts.push(`<circle cx="${p.px.toFixed(1)}" cy="${p.py.toFixed(1)}" ${marker}/>`);
      if (p.note) {
        parts.push(
          `<text x="${(p.px + 5).toFixed(1)}" y="${(p.py - 5).toFixed(1)}" font-size="10" fill="${colour}">${xmlText(p.note)}</text>`,
        );
      }
    }
    const y = margin.top + 10 + i * 18;
    const x = frame.width - margin.right + 10;
    parts.push(
      `<line x1="${x}" x2="${x + 22}" y1="${y}" y2="${y}" stroke="${colour}" stroke-width="2"${dash}/>`,
      `<text x="${x + 28}" y="${y + 4}">${xmlText(series.label)}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n");
}

export function barChartSvg(chart: BarChart, frame: Frame): string {
  const margin = MARGIN;
  const parts = open(frame, chart.title, margin);
  const lastX = chart.firstX + Math.max(0, chart.bars.length - 1);
  const xTicks = linearTicks(chart.firstX, lastX, 8).filter((t) => Number.isInteger(t));
  const xAxis = { ...chart.x, min: chart.firstX - 0.5, max: lastX + 0.5, ticks: xTicks };
  const xs = scale(xAxis, [], margin.left, frame.width - margin.right);
  const ys = scale({ ...chart.y, zero: true }, chart.bars, frame.height - margin.bottom, margin.top);
  axes(parts, frame, margin, chart, xs, ys);
  const width = Math.max(1, xs.at(chart.firstX + 1) - xs.at(chart.firstX) - 2);
  const colour = chart.colour ?? (PALETTE[0] as string);
  chart.bars.forEach((value, i) => {
    if (value <= 0) return;
    const x = xs.at(chart.firstX + i) - width / 2;
    const top = ys.at(value);
    parts.push(
      `<rect x="${x.toFixed(1)}" y="${top.toFixed(1)}" width="${width.toFixed(1)}" height="${(ys.at(0) - top).toFixed(1)}" fill="${colour}"/>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n");
}

/** Panels (each drawn for `panel` size) in rows of `columns`, under one title. */
export function gridSvg(
  title: string,
  panel: { width: number; height: number },
  columns: number,
  draw: Array<(frame: Frame) => string>,
): string {
  const rows = Math.max(1, Math.ceil(draw.length / columns));
  const cols = Math.max(1, Math.min(columns, draw.length));
  const header = 32;
  const width = cols * panel.width;
  const height = header + rows * panel.height;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ${FONT} font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="12" y="22" font-size="16" font-weight="bold">${xmlText(title)}</text>`,
  ];
  draw.forEach((panelSvg, i) => {
    parts.push(
      panelSvg({ ...panel, left: (i % cols) * panel.width, top: header + Math.floor(i / cols) * panel.height }),
    );
  });
  parts.push("</svg>");
  return parts.join("\n");
}

export async function writePng(svg: string, file: string): Promise<void> {
  await sharp(Buffer.from(svg)).png().toFile(file);
}
