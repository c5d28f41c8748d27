/**
 * The four plots of a load test: latency vs halting rule (a threshold, or a target, on a signal; a line
 * per load), accuracy vs mean ticks (a point per rule, with the model's own calibration beside it),
 * throughput vs concurrency (a line per rule), and the exit-tick histogram of every rule; with
 * --compare-thresholds the payoff of each threshold and, for targets on both signals, the signals side
 * by side.
 */
import { join } from "node:path";
import {
  barChartSvg,
  type ChartAxis,
  type ChartSeries,
  type Frame,
  gridSvg,
  lineChartSvg,
  PALETTE,
  writePng,
} from "../../tools/harness/plot/svgChart.ts";
import { type LoadtestResult, type PointResult, pooled } from "./loadtestResult.ts";
import { signalPairs, signalsCompared } from "./signalComparison.ts";
import { type CallKind, type Load, loadLabel, type Rule, ruleLabel, rulesOf, sameRule } from "./sweepPlan.ts";
import { thresholdPayoffs } from "./thresholdComparison.ts";

export const PLOT_FILES = {
  latency: "latency-vs-threshold.png",
  accuracy: "accuracy-vs-ticks.png",
  throughput: "throughput-vs-concurrency.png",
  exitTicks: "exit-ticks.png",
  payoff: "payoff-vs-threshold.png",
  signals: "signals-compared.png",
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

/** What the x axis of a per-rule plot is: thresholds on certainty, as before halting signals, or rules. */
function ruleAxisName(rules: Rule[]): string {
  return rules.every((r) => r.signal === "certainty" && !r.target) ? "certainty threshold" : "halting rule";
}

/** A rule in a few characters, for an axis with many: "0.9" (certainty), "h 0.99", "c 0.95" (a target). */
function shortRuleLabel(rule: Rule): string {
  const signal = rule.signal === "halt" ? "h" : "c";
  if (rule.target) return `${signal} ${rule.target.value}`;
  return signal === "c" ? String(rule.threshold) : `h ${rule.threshold}`;
}

function latencyPlot(result: LoadtestResult): string {
  const rules = rulesOf(result.points);
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
        of.map((p) => ({ x: rules.findIndex((r) => sameRule(r, p)), y: pick(p) }));
      return [
        { label: `${loadLabel(load)} p50`, colour, points: at((p) => p.latencyMs.p50) },
        { label: `${loadLabel(load)} p99`, colour, dashed: true, points: at((p) => p.latencyMs.p99) },
      ];
    });
    const values = series.flatMap((s) => s.points.map((p) => p.y));
    return (frame: Frame) =>
      lineChartSvg(
        {
          title: `${call}: latency vs ${ruleAxisName(rules)}`,
          x: {
            label:
              ruleAxisName(rules) === "halting rule"
                ? `halting rule (c: on certainty, h: on halt${rules.some((r) => r.target) ? `; a target ${rules.find((r) => r.target)?.target?.kind}` : ""})`
                : ruleAxisName(rules),
            min: -0.4,
            max: rules.length - 0.6,
            ticks: rules.map((_, i) => i),
            format: (i) => (rules[i] ? shortRuleLabel(rules[i]) : ""),
          },
          y: valueAxis("latency (ms)", values),
          series,
        },
        frame,
      );
  });
  return gridSvg(
    `Latency vs ${ruleAxisName(rules).replace("certainty ", "")}: ${modelTitle(result)}`,
    PANEL,
    2,
    panels,
  );
}

function accuracyPlot(result: LoadtestResult): string {
  const rules = rulesOf(result.points);
  const calls = distinctBy(result.points, (p) => p.call).map((p) => p.call);
  const series: ChartSeries[] = calls.map((call: CallKind, i) => ({
    label: `${call} (measured)`,
    points: rules.flatMap((rule) => {
      const { accuracy, meanTicks } = pooled(result.points.filter((p) => p.call === call && sameRule(p, rule)));
      const note = i === 0 ? `t=${ruleLabel(rule)}` : undefined;
      return accuracy === null ? [] : [{ x: meanTicks, y: accuracy * 100, note }];
    }),
  }));
  const calibration = distinctBy(
    result.points.filter((p) => p.calibration),
    (p) => ruleLabel(p),
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
      title: `Accuracy vs mean ticks (one point per ${rules.length > 0 && ruleAxisName(rules) === "halting rule" ? "rule" : "threshold"}): ${modelTitle(result)}`,
      x: { label: "mean ticks used", zero: false },
      y: { label: "accuracy (%)" },
      series,
    },
    { width: 900, height: 480 },
  );
}

function throughputPlot(result: LoadtestResult): string {
  const rules = rulesOf(result.points);
  const calls = distinctBy(result.points, (p) => p.call).map((p) => p.call);
  const panels: Array<(frame: Frame) => string> = [];
  for (const kind of ["closed", "open"] as const) {
    for (const call of calls) {
      const points = result.points.filter((p) => p.call === call && p.load.kind === kind);
      if (points.length === 0) continue;
      const xOf = (load: Load) => (load.kind === "closed" ? load.concurrency : load.rate);
      const series: ChartSeries[] = rules.map((rule) => ({
        label: `t=${ruleLabel(rule)}`,
        points: points.filter((p) => sameRule(p, rule)).map((p) => ({ x: xOf(p.load), y: p.throughputRps })),
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
  const panels = rulesOf(result.points).flatMap((rule, i) => {
    const { ticks, meanTicks } = pooled(result.points.filter((p) => sameRule(p, rule)));
    if (sum(ticks) === 0) return [];
    return [
      (frame: Frame) =>
        barChartSvg(
          {
            title: `t=${ruleLabel(rule)}: mean ${meanTicks.toFixed(2)} ticks`,
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

/** --compare-thresholds: throughput gained against the highest threshold on each signal, achieved and predicted. */
function payoffPlot(result: LoadtestResult): string {
  // The closed loop only: an open loop's throughput is its offered rate whatever the threshold.
  const payoffs = thresholdPayoffs(result).filter((p) => p.achieved !== null);
  const signalOf = (p: { point: PointResult }) => p.point.signal ?? "certainty";
  const groups = distinctBy(payoffs, (p) => `${p.call} ${loadLabel(p.load)} ${signalOf(p)}`);
  const signals = new Set(payoffs.map(signalOf)).size;
  const series: ChartSeries[] = groups.flatMap((group, i) => {
    const colour = PALETTE[i % PALETTE.length] as string;
    const of = payoffs.filter(
      (p) => p.call === group.call && sameLoad(p.load, group.load) && signalOf(p) === signalOf(group),
    );
    const name = `${group.call} ${loadLabel(group.load)}${signals > 1 ? ` ${signalOf(group)}` : ""}`;
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
      x: {
        label:
          signals > 1
            ? "threshold (on its signal)"
            : `${signalOf(payoffs[0] ?? { point: {} as PointResult })} threshold`,
        ticks: [...new Set(payoffs.map((p) => p.threshold))].sort((a, b) => a - b),
      },
      y: { label: "throughput / throughput at the highest threshold", zero: true },
      series,
    },
    { width: 760, height: 440 },
  );
}

/**
 * --compare-thresholds with targets on both signals: answers/s, latency and mean ticks against the target,
 * certainty and halt side by side (closed loop; the mean ticks pooled over loads, with the accuracy).
 */
function signalPlot(result: LoadtestResult): string {
  const pairs = signalPairs(result);
  const calls = distinctBy(pairs, (p) => p.call).map((p) => p.call);
  const signals = [
    { name: "certainty", colour: "#000000", pick: (p: (typeof pairs)[number]) => p.certainty },
    { name: "halt", colour: "#9400d3", pick: (p: (typeof pairs)[number]) => p.halt },
  ] as const;
  const kind = pairs[0]?.target.kind ?? "accuracy";
  const targets = [...new Set(pairs.map((p) => p.target.value))].sort((a, b) => a - b);
  // The targets themselves on the axis: the chart's own ticks round 0.85 to 0.8.
  const targetAxis = (name: string) => ({ label: `target ${name}`, ticks: targets, format: (v: number) => String(v) });
  const panels: Array<(frame: Frame) => string> = [];
  for (const call of calls) {
    const closed = pairs.filter((p) => p.call === call && p.load.kind === "closed");
    const loads = distinctBy(
      closed.map((p) => p.load),
      loadLabel,
    );
    panels.push((frame) =>
      lineChartSvg(
        {
          title: `${call}: answers/s at each target`,
          x: targetAxis(kind),
          y: { label: "throughput (answers/s)", zero: true },
          series: loads.flatMap((load, i) =>
            signals.map((s) => ({
              label: `${loadLabel(load)} ${s.name}`,
              colour: PALETTE[i % PALETTE.length] as string,
              dashed: s.name === "certainty",
              points: closed
                .filter((p) => sameLoad(p.load, load) && s.pick(p))
                .map((p) => ({ x: p.target.value, y: (s.pick(p) as PointResult).throughputRps })),
            })),
          ),
        },
        frame,
      ),
    );
    // Latency at the busiest closed load, where the ticks saved matter most.
    const busiest = loads.at(-1);
    const atBusiest = closed.filter((p) => busiest && sameLoad(p.load, busiest));
    panels.push((frame) =>
      lineChartSvg(
        {
          title: `${call}: latency at ${busiest ? loadLabel(busiest) : "-"}`,
          x: targetAxis(kind),
          y: valueAxis(
            "latency (ms)",
            atBusiest.flatMap((p) =>
              [p.certainty, p.halt].flatMap((q) => (q ? [q.latencyMs.p50, q.latencyMs.p99] : [])),
            ),
          ),
          series: signals.flatMap((s) => [
            {
              label: `${s.name} p50`,
              colour: s.colour,
              points: atBusiest
                .filter((p) => s.pick(p))
                .map((p) => ({ x: p.target.value, y: (s.pick(p) as PointResult).latencyMs.p50 })),
            },
            {
              label: `${s.name} p99`,
              colour: s.colour,
              dashed: true,
              points: atBusiest
                .filter((p) => s.pick(p))
                .map((p) => ({ x: p.target.value, y: (s.pick(p) as PointResult).latencyMs.p99 })),
            },
          ]),
        },
        frame,
      ),
    );
  }
  panels.push((frame) =>
    lineChartSvg(
      {
        title: "mean ticks at each target (accuracy measured)",
        x: targetAxis(kind),
        y: { label: "mean ticks", zero: true },
        series: signals.map((s) => ({
          label: s.name,
          colour: s.colour,
          points: targets.flatMap((target) => {
            const points = pairs.filter((p) => p.target.value === target).flatMap((p) => s.pick(p) ?? []);
            const { meanTicks, accuracy } = pooled(points);
            if (points.length === 0) return [];
            return [
              { x: target, y: meanTicks, note: accuracy === null ? undefined : `${(accuracy * 100).toFixed(1)}%` },
            ];
          }),
        })),
      },
      frame,
    ),
  );
  return gridSvg(`Certainty vs the halt signal at the same certified targets: ${modelTitle(result)}`, PANEL, 2, panels);
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
  if (result.settings.compareThresholds && signalsCompared(result))
    plots.push([PLOT_FILES.signals, signalPlot(result)]);
  const files: string[] = [];
  for (const [name, svg] of plots) {
    const file = join(dir, name);
    await writePng(svg, file);
    files.push(file);
  }
  return files;
}
