/**
 * The lowering benchmark's result file, and what docs/benchmarks.md shows of it: a table per model
 * (generated here, from the committed JSON, never typed by hand) and one plot per model of p50/p99
 * latency, refusals, mean ticks and delivered accuracy against the offered load, controller on and off.
 */
import { join } from "node:path";
import type { MachineRecord } from "../../../tools/harness/machine.ts";
import {
  type ChartSeries,
  type Frame,
  gridSvg,
  lineChartSvg,
  PALETTE,
  writePng,
} from "../../../tools/harness/plot/svgChart.ts";
import { guaranteesHeld, JUDGED_ANSWERS, type LoweringPoint } from "./loweringPoint.ts";

export const RESULT_SCHEMA = "ctm-serve/lowering-bench/1";

/** One rung of the requests' ladder as the bench read it from the calibration. */
export interface LadderRung {
  target: number;
  threshold: number;
  meanTicks: number;
}

export interface ModelRun {
  name: string;
  version: number;
  signal: string;
  /** What every request asked: target_accuracy, min_target_accuracy, target_confidence. */
  target: number;
  floor: number;
  confidence: number;
  /** The certified rungs between them (the first is the target's own). */
  ladder: LadderRung[];
  objectiveMs: number;
  /** Answers per second at full depth, closed loop, before the points and after them. */
  /** atFloorRps: every request at the lowest rung (absent from results written before it was measured). */
  capacity: { beforeRps: number; afterRps: number; atFloorRps?: number; callers: number; seconds: number };
  loadAverage: { start: number[]; end: number[] };
  points: LoweringPoint[];
}

export interface LoweringResult {
  schema: string;
  command: string;
  startedAt: string;
  finishedAt: string;
  commit: string;
  /** Results written before the record named the platform read the same. */
  machine: Omit<MachineRecord, "platform" | "arch">;
  settings: {
    loads: number[];
    seconds: number;
    maxBatch: number;
    maxQueue: number;
    workers: number;
    seed: number;
    inputs: "tensor" | "image";
  };
  models: ModelRun[];
}

const percent = (value: number | null) =>
  value === null || Number.isNaN(value) ? "–" : `${(value * 100).toFixed(1)}%`;
const ms = (value: number) => (value >= 100 ? value.toFixed(0) : value.toFixed(1));

/** The stated targets and what each group delivered: "0.85: 87.9% (1,204)". */
function statedCell(point: LoweringPoint): string {
  return point.stated
    .map((g) =>
      g.answers < JUDGED_ANSWERS
        ? `${g.target}: ${g.answers} (too few to judge)`
        : `${g.target}: ${percent(g.accuracy)} ± ${(g.standardError * 100).toFixed(1)} (${g.answers.toLocaleString("en")})${g.met ? "" : " not met"}`,
    )
    .join("; ");
}

/** The table of one model, as docs/benchmarks.md shows it. */
export function modelTable(run: ModelRun): string {
  const rows = [
    "| load | controller | offered/s | answered/s | p50 ms | p99 ms | refused | mean ticks | lowered | accuracy | stated target: delivered (answers) | held |",
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
  ];
  for (const p of run.points) {
    const refused = p.sent > 0 ? `${p.refused} (${percent(p.refused / p.sent)})` : "0";
    const other = Object.entries(p.errors)
      .map(([code, n]) => `${n} ${code}`)
      .join(", ");
    rows.push(
      `| ${p.multiple}x | ${p.mode} | ${p.offeredRps.toFixed(0)} | ${p.answeredRps.toFixed(0)} | ${ms(p.latencyMs.p50)} | ${ms(p.latencyMs.p99)} | ${refused}${other ? `, ${other}` : ""} | ${p.meanTicks.toFixed(1)} | ${percent(p.answered > 0 ? p.lowered / p.answered : 0)} | ${percent(p.accuracy)} | ${statedCell(p)} | ${guaranteesHeld(p.stated) ? "yes" : "**no**"} |`,
    );
  }
  return rows.join("\n");
}

/** The issue's target at 2x, point by point: p99 within the objective, no refusals, guarantees held. */
export function targetVerdict(run: ModelRun): string {
  const at = (mode: string) => run.points.find((p) => p.multiple === 2 && p.mode === mode);
  const on = at("on");
  const off = at("off");
  if (!on || !off) return "no 2x point";
  const checks = [
    `p99 ${ms(on.latencyMs.p99)} ms ${on.latencyMs.p99 <= run.objectiveMs ? "within" : "**over**"} the ${run.objectiveMs} ms objective`,
    on.refused === 0 ? "no refusals" : `**${on.refused} refused**`,
    guaranteesHeld(on.stated)
      ? `every stated guarantee delivered (groups of ${JUDGED_ANSWERS} answers or more)`
      : "**a stated guarantee not delivered**",
  ];
  return `2x, controller on: ${checks.join(", ")}. Off: p99 ${ms(off.latencyMs.p99)} ms, ${off.refused} of ${off.sent} refused (${percent(off.refused / Math.max(1, off.sent))}).`;
}

/** The capacity with every request at its lowest rung, and whether 2x could then be served without refusals. */
function atFloor(run: ModelRun): string {
  const { atFloorRps, beforeRps } = run.capacity;
  if (atFloorRps === undefined) return "";
  const ratio = atFloorRps / beforeRps;
  const verdict =
    ratio >= 2 ? "2x fits at the floor" : "**2x cannot be served without refusals, whatever the controller does**";
  return `; at the floor (every request at the lowest rung) ${atFloorRps.toFixed(0)} answers/s, ${ratio.toFixed(2)}x: ${verdict}`;
}

export function resultMarkdown(result: LoweringResult): string {
  const parts = [
    `${result.command} (${result.startedAt.slice(0, 16).replace("T", " ")} to ${result.finishedAt.slice(11, 16)} UTC, commit ${result.commit}; ${result.machine.cores} x ${result.machine.cpu}, load average ${result.machine.loadAverageAtStart.join(", ")} at the start)`,
  ];
  for (const run of result.models) {
    const ladder = run.ladder
      .map((r) => `${r.target} (threshold ${r.threshold}, ${r.meanTicks.toFixed(1)} ticks)`)
      .join(", ");
    parts.push(
      "",
      `**${run.name}/${run.version}**: target_accuracy ${run.target}, min_target_accuracy ${run.floor}, confidence ${run.confidence}, on ${run.signal}; rungs ${ladder}. Objective ${run.objectiveMs} ms. Full-depth capacity ${run.capacity.beforeRps.toFixed(0)} answers/s before the points, ${run.capacity.afterRps.toFixed(0)} after (closed loop, ${run.capacity.callers} callers, ${run.capacity.seconds} s)${atFloor(run)}; load average ${run.loadAverage.start.join(", ")} at its start, ${run.loadAverage.end.join(", ")} at its end.`,
      "",
      modelTable(run),
      "",
      targetVerdict(run),
    );
  }
  return `${parts.join("\n")}\n`;
}

const PANEL = { width: 560, height: 340 };
const MODES = ["on", "off"] as const;
const COLOURS = { on: PALETTE[0] as string, off: PALETTE[1] as string };

function panel(
  run: ModelRun,
  title: string,
  y: { label: string; log?: boolean; zero?: boolean },
  series: (mode: (typeof MODES)[number], points: LoweringPoint[]) => ChartSeries[],
): (frame: Frame) => string {
  return (frame) =>
    lineChartSvg(
      {
        title,
        x: { label: "offered load (x full-depth capacity)", zero: true, ticks: run.points.map((p) => p.multiple) },
        y,
        series: MODES.flatMap((mode) =>
          series(
            mode,
            run.points.filter((p) => p.mode === mode),
          ),
        ),
      },
      frame,
    );
}

function modelPlot(run: ModelRun): string {
  const line = (mode: (typeof MODES)[number], label: string, points: { x: number; y: number }[], dashed = false) => ({
    label: `${label}, controller ${mode}`,
    points,
    colour: COLOURS[mode],
    dashed,
  });
  return gridSvg(
    `${run.name}/${run.version}: target ${run.target}, floor ${run.floor}, objective ${run.objectiveMs} ms, capacity ${run.capacity.beforeRps.toFixed(0)}/s`,
    PANEL,
    2,
    [
      panel(run, "Latency", { label: "ms", log: true }, (mode, points) => [
        line(
          mode,
          "p99",
          points.map((p) => ({ x: p.multiple, y: Math.max(0.1, p.latencyMs.p99) })),
        ),
        line(
          mode,
          "p50",
          points.map((p) => ({ x: p.multiple, y: Math.max(0.1, p.latencyMs.p50) })),
          true,
        ),
        // Once, under the controller's colour-free grey: the line the p99 is held to.
        ...(mode === "on"
          ? [
              {
                label: `objective ${run.objectiveMs} ms`,
                points: points.map((p) => ({ x: p.multiple, y: run.objectiveMs })),
                colour: "#888888",
                dashed: true,
              },
            ]
          : []),
      ]),
      panel(run, "Refused", { label: "% of requests", zero: true }, (mode, points) => [
        line(
          mode,
          "refused",
          points.map((p) => ({ x: p.multiple, y: (100 * p.refused) / Math.max(1, p.sent) })),
        ),
      ]),
      panel(run, "Thinking", { label: "mean ticks", zero: true }, (mode, points) => [
        line(
          mode,
          "ticks",
          points.map((p) => ({ x: p.multiple, y: p.meanTicks })),
        ),
      ]),
      panel(
        run,
        "Accuracy: delivered, and the lowest target stated",
        { label: "% of positions right" },
        (mode, points) => [
          line(
            mode,
            "delivered",
            points.filter((p) => p.accuracy !== null).map((p) => ({ x: p.multiple, y: 100 * (p.accuracy as number) })),
          ),
          line(
            mode,
            "lowest stated",
            points
              .filter((p) => p.stated.length > 0)
              .map((p) => ({ x: p.multiple, y: 100 * Math.min(...p.stated.map((g) => g.target)) })),
            true,
          ),
        ],
      ),
    ],
  );
}

/** Writes lowering-<model>.png into `dir` for every model; returns the files. */
export async function writeLoweringPlots(result: LoweringResult, dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const run of result.models) {
    const file = join(dir, `lowering-${run.name}.png`);
    await writePng(modelPlot(run), file);
    files.push(file);
  }
  return files;
}
