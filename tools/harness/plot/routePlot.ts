/**
 * A PNG of the route a maze model predicts, drawn over the maze: at the answer tick, or (`stream`) one
 * panel per tick in a strip, so that you can watch the route grow as the model thinks.
 *
 * A maze model is one whose output is [route positions, 5] with the reference's moves as labels
 * (up, down, left, right, wait). The route is walked from the start pixel (pure red, as in the
 * reference's maze pictures) one pixel per move until the first wait; a move into a wall or off the
 * picture is drawn as a red cross and ends the walk. Drawn as SVG and rasterised by sharp.
 */
import sharp from "sharp";
import { writePng, xmlText } from "./svgChart.ts";

export const MAZE_MOVES = ["up", "down", "left", "right", "wait"] as const;
const STEP: Record<string, [number, number]> = { up: [-1, 0], down: [1, 0], left: [0, -1], right: [0, 1] };

export interface RouteTick {
  tick: number;
  certainty: number;
  /** One move label per route position, as the tick predicts it. */
  moves: string[];
}

export interface RoutePlot {
  title: string;
  /** The maze picture as the model sees it: RGB bytes, row-major, `side` x `side`. */
  pixels: Uint8Array;
  width: number;
  height: number;
  ticks: RouteTick[];
  answerTick: number;
}

/** Whether a model's output is a route of maze moves (the reference's encoding). */
export function isMazeModel(outputShape: number[], labels: string[]): boolean {
  return outputShape.length === 2 && labels.length === MAZE_MOVES.length && MAZE_MOVES.every((m, i) => labels[i] === m);
}

/** The maze picture at the model's input size: nearest-neighbour, so every maze pixel stays one colour. */
export async function mazePixels(
  image: Uint8Array,
  width: number,
  height: number,
): Promise<{ pixels: Uint8Array; width: number; height: number }> {
  const data = await sharp(image)
    .removeAlpha()
    .toColourspace("srgb")
    .resize(width, height, { kernel: "nearest", fit: "fill" })
    .raw()
    .toBuffer();
  return { pixels: new Uint8Array(data), width, height };
}

export interface Walk {
  /** Pixels visited, start first, as [row, column]. */
  cells: [number, number][];
  /** Where the walk left the open pixels (a wall or off the picture), if it did. */
  blocked: [number, number] | undefined;
  /** Whether the walk ends on the end pixel (pure green). */
  reachedEnd: boolean;
}

const colourAt = (plot: Pick<RoutePlot, "pixels" | "width">, row: number, column: number): [number, number, number] => {
  const i = (row * plot.width + column) * 3;
  return [plot.pixels[i] ?? 0, plot.pixels[i + 1] ?? 0, plot.pixels[i + 2] ?? 0];
};

function find(plot: Pick<RoutePlot, "pixels" | "width" | "height">, red: boolean): [number, number] | undefined {
  for (let row = 0; row < plot.height; row++) {
    for (let column = 0; column < plot.width; column++) {
      const [r, g, b] = colourAt(plot, row, column);
      if (red ? r > 200 && g < 60 && b < 60 : g > 200 && r < 60 && b < 60) return [row, column];
    }
  }
  return undefined;
}

/** Follow `moves` from the start pixel through open pixels (anything not dark), stopping at the first wait. */
export function walkRoute(plot: Pick<RoutePlot, "pixels" | "width" | "height">, moves: string[]): Walk {
  const start = find(plot, true);
  const end = find(plot, false);
  if (!start) return { cells: [], blocked: undefined, reachedEnd: false };
  const cells: [number, number][] = [start];
  let blocked: [number, number] | undefined;
  for (const move of moves) {
    const step = STEP[move];
    if (!step) break; // wait (or an unknown label): the route is over
    const [row, column] = cells[cells.length - 1] as [number, number];
    const next: [number, number] = [row + step[0], column + step[1]];
    const inside = next[0] >= 0 && next[0] < plot.height && next[1] >= 0 && next[1] < plot.width;
    if (!inside || Math.max(...colourAt(plot, next[0], next[1])) < 128) {
      blocked = next;
      break;
    }
    cells.push(next);
  }
  const last = cells[cells.length - 1] as [number, number];
  const reachedEnd = !blocked && end !== undefined && last[0] === end[0] && last[1] === end[1];
  return { cells, blocked, reachedEnd };
}

const PANEL = 240;
const LABEL = 22;
const PER_ROW = 6;

function panelSvg(plot: RoutePlot, tick: RouteTick, x0: number, y0: number, size: number): string[] {
  const scale = size / Math.max(plot.width, plot.height);
  const parts: string[] = [];
  for (let row = 0; row < plot.height; row++) {
    for (let column = 0; column < plot.width; column++) {
      const [r, g, b] = colourAt(plot, row, column);
      parts.push(
        `<rect x="${(x0 + column * scale).toFixed(2)}" y="${(y0 + row * scale).toFixed(2)}" width="${scale.toFixed(2)}" height="${scale.toFixed(2)}" fill="rgb(${r},${g},${b})"/>`,
      );
    }
  }
  const walk = walkRoute(plot, tick.moves);
  const centre = ([row, column]: [number, number]) =>
    `${(x0 + (column + 0.5) * scale).toFixed(1)},${(y0 + (row + 0.5) * scale).toFixed(1)}`;
  const colour = walk.reachedEnd ? "#1f5fd6" : "#e08a00";
  if (walk.cells.length > 1) {
    parts.push(
      `<polyline points="${walk.cells.map(centre).join(" ")}" fill="none" stroke="${colour}" stroke-width="${Math.max(2, scale * 0.35).toFixed(1)}" stroke-linecap="round" stroke-linejoin="round" opacity="0.85"/>`,
    );
  }
  if (walk.blocked) {
    const [row, column] = walk.blocked;
    const cx = x0 + (column + 0.5) * scale;
    const cy = y0 + (row + 0.5) * scale;
    const d = scale * 0.4;
    parts.push(
      `<path d="M${cx - d},${cy - d} L${cx + d},${cy + d} M${cx - d},${cy + d} L${cx + d},${cy - d}" stroke="#e00000" stroke-width="${Math.max(2, scale * 0.2).toFixed(1)}"/>`,
    );
  }
  const status = walk.reachedEnd ? "reaches the end" : walk.blocked ? "hits a wall" : "stops short";
  parts.push(
    `<text x="${x0}" y="${y0 + size + 16}">tick ${tick.tick}, certainty ${tick.certainty.toFixed(3)}: ${status}</text>`,
  );
  return parts;
}

/** The SVG: one panel (the answer tick), or with `stream` every tick in rows of six. */
export function routeSvg(plot: RoutePlot, stream: boolean): string {
  const shown = stream ? plot.ticks : plot.ticks.filter((t) => t.tick === plot.answerTick);
  if (shown.length === 0) throw new Error(`no prediction for the answer tick ${plot.answerTick}`);
  const size = stream ? PANEL : PANEL * 2;
  const columns = Math.min(PER_ROW, shown.length);
  const rows = Math.ceil(shown.length / columns);
  const gap = 16;
  const width = columns * (size + gap) + gap;
  const height = 36 + rows * (size + LABEL + gap);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, sans-serif" font-size="12" shape-rendering="crispEdges">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${gap}" y="22" font-size="14">${xmlText(plot.title)}</text>`,
  ];
  shown.forEach((tick, i) => {
    const x0 = gap + (i % columns) * (size + gap);
    const y0 = 36 + Math.floor(i / columns) * (size + LABEL + gap);
    parts.push(...panelSvg(plot, tick, x0, y0, size));
  });
  parts.push("</svg>");
  return parts.join("\n");
}

export async function renderRoutePlot(plot: RoutePlot, stream: boolean, path: string): Promise<void> {
  await writePng(routeSvg(plot, stream), path);
}

interface RouteSource {
  name: string;
  version: number;
  input: { image: { width: number; height: number } | null };
}

interface RouteUpdate {
  tick: number;
  certainty: number;
  positions: { label: string }[];
}

/** `npm run classify -- maze.png --plot route.png [--stream]`: the hook classify.ts calls for a maze model. */
export async function plotRoute(
  path: string,
  model: RouteSource,
  image: Uint8Array,
  trace: RouteUpdate[],
  result: { answer_tick: number; certainty: number; ticks_used: number },
  stream: boolean,
): Promise<void> {
  const size = model.input.image;
  if (!size) throw new Error(`${model.name} does not take images; a route can only be drawn over a maze picture`);
  const maze = await mazePixels(image, size.width, size.height);
  const ticks = trace.map((t) => ({ tick: t.tick, certainty: t.certainty, moves: t.positions.map((p) => p.label) }));
  const answer = ticks.find((t) => t.tick === result.answer_tick);
  const walk = answer ? walkRoute(maze, answer.moves) : undefined;
  const verdict = walk?.reachedEnd ? "reaches the end" : walk?.blocked ? "hits a wall" : "does not reach the end";
  await renderRoutePlot(
    {
      title: `${model.name}/${model.version}: route from tick ${result.answer_tick} of ${result.ticks_used} (certainty ${result.certainty.toFixed(3)}) ${verdict}`,
      ...maze,
      ticks,
      answerTick: result.answer_tick,
    },
    stream,
    path,
  );
}
