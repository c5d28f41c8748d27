/**
 * The four plots of a load test: latency vs threshold (a line per load), accuracy vs mean ticks (a
 * point per threshold, with the model's own calibration beside it), throughput vs concurrency (a line
 * per threshold), and the exit-tick histogram of every threshold.
 */
import { join } from "node:path";
import { type LoadtestResult, type PointResult, pooled } from "../loadtestResult.ts";
import { type CallKind, type Load, loadLabel } from "../sweepPlan.ts";
import { thresholdPayoffs } from "../thresholdComparison.ts";
import {
  barChartSvg,
  type ChartAxis,
  type ChartSeries,
  type Frame,
  gridSvg,
  lineChartSvg,
  PALETTE,
  writePng,
} from "./svgChart.ts";

export const PLOT_FILES = {
  latency: "latency-vs-threshold.png",
  accuracy: "accuracy-vs-ticks.png",
  throughput: "throughput-vs-concurrency.png",
  exitTicks: "exit-ticks.png",
  payoff: "payoff-vs-threshold.png",
} as const;

const PANEL = { width: 640, height: 380 };

const sameLoad = (a: Load, b: Load) => loadLabel(a) === loadLabel(b);
const distinctBy = <T>(items: T[], key: (item: T) => string): T[] => [
  ...new Map(items.map((item) => [key(item), item])).values(),
];
const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

/** Log scale once the values span more than this factor. */
const LOG_SPAN = 20;

function valueAxis(label: string, values: number[]): ChartAxis {
  const positive = values.filter((v) => v > 0);
  const log = positive.length > 0 && Math.max(...positive) / Math.min(...positive) > LOG_SPAN;
  return { label, log, zero: !log };
}

function modelTitle(result: LoadtestResult): string {
  return `${result.model.name}/${result.model.version} on ${result.environment.cpus} CPU (${result.model.provider})`;
}

function latencyPlot(result: LoadtestResult): string {
  const thresholds = result.settings.thresholds;
  const calls = distinctBy(result.points, (p) => p.call).map((p) => p.call);
  const panels = calls.map((call) => {
    const points = result.points.filter((p) => p.call === call && p.ok > 0);
    const loads = distinctBy(
      points.map((p) => p.load),
      loadLabel,
    );
    const series: ChartSeries[] = loads.flatMap((load, i) => {
      const colour = PALETTE[i % PALETTE.length] as string;
      const of = points.filter((p) => sameLoad(p.load, load));
      const at = (pick: (p: PointResult) => number) =>
        of.map((p) => ({ x: thresholds.indexOf(p.threshold), y: pick(p) }));
      return [
        { label: `${loadLabel(load)} p50`, colour, points: at((p) => p.latencyMs.p50) },
        { label: `${loadLabel(load)} p99`, colour, dashed: true, points: at((p) => p.latencyMs.p99) },
      ];
    });
    const values = series.flatMap((s) => s.points.map((p) => p.y));
    return (frame: Frame) =>
      lineChartSvg(
        {
          title: `${call}: latency vs certainty threshold`,
          x: {
            label: "certainty threshold",
            min: -0.4,
            max: thresholds.length - 0.6,
            ticks: thresholds.map((_, i) => i),
            format: (i) => String(thresholds[i] ?? ""),
          },
          y: valueAxis("latency (ms)", values),
          series,
        },
        frame,
      );
  });
  return gridSvg(`Latency vs threshold: ${modelTitle(result)}`, PANEL, 2, panels);
}

function accuracyPlot(result: LoadtestResult): string {
  const thresholds = result.settings.thresholds;
  const calls = distinctBy(result.points, (p) => p.call).map((p) => p.call);
  const series: ChartSeries[] = calls.map((call: CallKind, i) => ({
    label: `${call} (measured)`,
    points: thresholds.flatMap((t) => {
      const { accuracy, meanTicks } = pooled(result.points.filter((p) => p.call === call && p.threshold === t));
      return accuracy === null ? [] : [{ x: meanTicks, y: accuracy * 100, note: i === 0 ? `t=${t}` : undefined }];
    }),
  }));
  const calibration = distinctBy(
    result.points.filter((p) => p.calibration),
    (p) => String(p.threshold),
  );
  if (calibration.length > 0) {
    series.push({
      label: `calibration (${calibration[0]?.calibration?.split})`,
      dashed: true,
      colour: "#555",
      points: calibration.map((p) => ({ x: p.calibration?.meanTicks ?? 0, y: (p.calibration?.accuracy ?? 0) * 100 })),
    });
  }
  return lineChartSvg(
    {
      title: `Accuracy vs mean ticks (one point per threshold): ${modelTitle(result)}`,
      x: { label: "mean ticks used", zero: false },
      y: { label: "accuracy (%)" },
      series,
    },
    { width: 900, height: 480 },
  );
}

function throughputPlot(result: LoadtestResult): string {
  const thresholds = result.settings.thresholds;
  const calls = distinctBy(result.points, (p) => p.call).map((p) => p.call);
  const panels: Array<(frame: Frame) => string> = [];
  for (const kind of ["closed", "open"] as const) {
    for (const call of calls) {
      const points = result.points.filter((p) => p.call === call && p.load.kind === kind);
      if (points.length === 0) continue;
      const xOf = (load: Load) => (load.kind === "closed" ? load.concurrency : load.rate);
      const series: ChartSeries[] = thresholds.map((t) => ({
        label: `t=${t}`,
        points: points.filter((p) => p.threshold === t).map((p) => ({ x: xOf(p.load), y: p.throughputRps })),
      }));
      const xs = distinctBy(points, (p) => loadLabel(p.load)).map((p) => xOf(p.load));
      const xLog = Math.max(...xs) / Math.min(...xs) >= 8;
      panels.push((frame) =>
        lineChartSvg(
          {
            title: `${call}: throughput vs ${kind === "closed" ? "concurrency" : "offered rate"}`,
            x: {
              label: kind === "closed" ? "concurrency (closed loop)" : "offered rate (req/s, open loop)",
              log: xLog,
              zero: !xLog,
              ticks: xLog ? xs : undefined,
            },
            y: { label: "throughput (answers/s)", zero: true },
            series,
          },
          frame,
        ),
      );
    }
  }
  return gridSvg(`Throughput: ${modelTitle(result)}`, PANEL, 2, panels);
}

function exitTickPlot(result: LoadtestResult): string {
  const panels = result.settings.thresholds.flatMap((t, i) => {
    const { ticks, meanTicks } = pooled(result.points.filter((p) => p.threshold === t));
    if (sum(ticks) === 0) return [];
    return [
      (frame: Frame) =>
        barChartSvg(
          {
            title: `t=${t}: mean ${meanTicks.toFixed(2)} ticks`,
            x: { label: "tick the answer halted at" },
            y: { label: "answers" },
            bars: ticks,
            firstX: 1,
            colour: PALETTE[i % PALETTE.length],
          },
          frame,
        ),
    ];
  });
  return gridSvg(
    `Exit-tick histogram (all calls and loads): ${modelTitle(result)}`,
    { width: 520, height: 300 },
    3,
    panels,
  );
}

/** --compare-thresholds: throughput gained against the highest threshold, achieved and predicted. */
function payoffPlot(result: LoadtestResult): string {
  // The closed loop only: an open loop's throughput is its offered rate whatever the threshold.
  const payoffs = thresholdPayoffs(result).filter((p) => p.achieved !== null);
  const groups = distinctBy(payoffs, (p) => `${p.call} ${loadLabel(p.load)}`);
  const series: ChartSeries[] = groups.flatMap((group, i) => {
    const colour = PALETTE[i % PALETTE.length] as string;
    const of = payoffs.filter((p) => p.call === group.call && sameLoad(p.load, group.load));
    const name = `${group.call} ${loadLabel(group.load)}`;
    const achieved: ChartSeries = {
      label: `${name}: achieved`,
      colour,
      points: of.map((p) => ({
        x: p.threshold,
        y: p.achieved as number,
        note: `${p.point.ticks.mean.toFixed(1)} ticks`,
      })),
    };
    const predicted = of.filter((p) => p.predicted !== null);
    return predicted.length === 0
      ? [achieved]
      : [
          achieved,
          {
            label: `${name}: predicted by graph time`,
            colour,
            dashed: true,
            points: predicted.map((p) => ({ x: p.threshold, y: p.predicted as number })),
          },
        ];
  });
  return lineChartSvg(
    {
      title: `Throughput vs the highest threshold: ${modelTitle(result)}`,
      x: { label: "certainty threshold", ticks: result.settings.thresholds },
      y: { label: "throughput / throughput at the highest threshold", zero: true },
      series,
    },
    { width: 760, height: 440 },
  );
}

/** Writes the plots into `dir`; returns the files written (accuracy needs labelled samples). */
export async function writePlots(result: LoadtestResult, dir: string): Promise<string[]> {
  const plots: Array<[string, string]> = [
    [PLOT_FILES.latency, latencyPlot(result)],
    [PLOT_FILES.throughput, throughputPlot(result)],
    [PLOT_FILES.exitTicks, exitTickPlot(result)],
  ];
  if (result.points.some((p) => p.accuracy !== null)) plots.splice(1, 0, [PLOT_FILES.accuracy, accuracyPlot(result)]);
  if (result.settings.compareThresholds) plots.push([PLOT_FILES.payoff, payoffPlot(result)]);
  const files: string[] = [];
  for (const [name, svg] of plots) {
    const file = join(dir, name);
    await writePng(svg, file);
    files.push(file);
  }
  return files;
}
