/**
 * summary.md: a run as Markdown tables, ready to paste into docs. First what a halting rule (a
 * threshold, or a target, on a signal) buys (accuracy and ticks, the same under any load), then what
 * it costs under each load (latency and throughput, one table per call kind), then every point in full.
 */

import { percentileOfCounts } from "../../tools/harness/statistics.ts";
import { type LoadtestResult, type PointResult, pooled } from "./loadtestResult.ts";
import { signalComparisonTable, signalsCompared } from "./signalComparison.ts";
import { type CallKind, type Load, loadLabel, ruleLabel, rulesOf, sameRule } from "./sweepPlan.ts";
import { thresholdComparisonTable } from "./thresholdComparison.ts";

const percent = (value: number | null | undefined) =>
  value === null || value === undefined ? "-" : `${(value * 100).toFixed(1)}%`;
const ms = (value: number) => (value >= 100 ? value.toFixed(0) : value.toFixed(1));

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

function loadName(load: Load): string {
  return load.kind === "closed" ? `c=${load.concurrency}` : `${load.rate}/s ${load.arrival}`;
}

/** "threshold" while every rule is a certainty threshold (as before halting signals), else "rule". */
function ruleHeader(result: LoadtestResult): string {
  return rulesOf(result.points).every((r) => r.signal === "certainty" && !r.target) ? "threshold" : "rule";
}

/** Accuracy, ticks and halting per rule, pooled over every call and load. */
export function thresholdTable(result: LoadtestResult): string {
  const split = result.points.find((p) => p.calibration)?.calibration?.split;
  const rows = rulesOf(result.points).flatMap((rule) => {
    const points = result.points.filter((p) => sameRule(p, rule));
    if (points.length === 0) return [];
    const all = pooled(points);
    const calibration = points.find((p) => p.calibration)?.calibration ?? null;
    const row = [
      ruleLabel(rule),
      percent(all.accuracy),
      all.meanTicks.toFixed(2),
      [50, 90, 99].map((q) => percentileOfCounts(all.ticks, q)).join(" / "),
      percent(all.answers > 0 ? all.haltedOnThreshold / all.answers : null),
      String(all.answers),
    ];
    return [
      split ? [...row, percent(calibration?.accuracy), calibration ? calibration.meanTicks.toFixed(2) : "-"] : row,
    ];
  });
  const header = [
    ruleHeader(result),
    "accuracy",
    "mean ticks",
    "ticks p50 / p90 / p99",
    "halted on threshold",
    "answers",
  ];
  return table(
    split ? [...header, `calibration accuracy (${split})`, `calibration mean ticks (${split})`] : header,
    rows,
  );
}

/** Rules down, loads across; each cell p50 / p99 latency and throughput (and first tick for streams). */
export function latencyTable(result: LoadtestResult, call: CallKind): string | null {
  const points = result.points.filter((p) => p.call === call);
  if (points.length === 0) return null;
  const loads = [...new Map(points.map((p) => [loadLabel(p.load), p.load])).values()];
  const cell = (p: PointResult | undefined) => {
    if (!p) return "-";
    const errors = p.requests - p.ok;
    const first = p.firstTickMs ? ` (1st tick ${ms(p.firstTickMs.p50)})` : "";
    return `${ms(p.latencyMs.p50)} / ${ms(p.latencyMs.p99)}${first} · ${p.throughputRps.toFixed(0)}/s${errors ? ` · ${errors} err` : ""}`;
  };
  const rows = rulesOf(result.points).map((rule) => [
    ruleLabel(rule),
    ...loads.map((load) => cell(points.find((p) => sameRule(p, rule) && loadLabel(p.load) === loadLabel(load)))),
  ]);
  return table([ruleHeader(result), ...loads.map(loadName)], rows);
}

/** Every point, every headline figure. */
export function pointTable(result: LoadtestResult): string {
  const rows = result.points.map((p) => {
    const errors = p.requests - p.ok;
    return [
      p.call,
      loadName(p.load),
      ruleLabel(p),
      String(p.ok) + (errors ? ` (+${errors} err: ${Object.keys(p.errors).join(", ")})` : ""),
      p.throughputRps.toFixed(1),
      p.latencyMs.p50.toFixed(1),
      p.latencyMs.p90.toFixed(1),
      p.latencyMs.p99.toFixed(1),
      p.latencyMs.p999.toFixed(1),
      p.latencyMs.max.toFixed(1),
      p.firstTickMs ? p.firstTickMs.p50.toFixed(1) : "-",
      p.ticks.mean.toFixed(2),
      p.ok > 0 ? percent((p.haltReasons.THRESHOLD ?? 0) / p.ok) : "-",
      percent(p.accuracy),
      p.clientCpuCores.toFixed(2),
    ];
  });
  return table(
    [
      "call",
      "load",
      ruleHeader(result),
      "answers",
      "answers/s",
      "p50 ms",
      "p90 ms",
      "p99 ms",
      "p99.9 ms",
      "max ms",
      "1st tick p50 ms",
      "mean ticks",
      "halted on threshold",
      "accuracy",
      "client CPU (cores)",
    ],
    rows,
  );
}

/** Requests that sent targets: what they asked for and the threshold each resolved to, on which signal. */
function targetSentence(result: LoadtestResult): string {
  const { target, targets } = result.settings;
  const sentence = (t: { kind: string; value: number; confidence: number; met: boolean }, threshold: number) => {
    const confidence = t.confidence > 0 ? t.confidence : "the server's default";
    return `target_${t.kind} ${t.value} (confidence ${confidence}), which the server ran at threshold ${threshold}`;
  };
  if (targets?.length) {
    return ` Requests sent ${targets
      .map(
        (r) =>
          `${sentence(r.target as NonNullable<typeof r.target>, r.threshold)} on ${r.signal} (guarantee ${r.target?.met ? "met" : "not met"})`,
      )
      .join("; ")}.`;
  }
  if (!target) return "";
  return ` Requests sent ${sentence(target, target.threshold)} (guarantee ${target.met ? "met" : "not met"}).`;
}

export function summaryMarkdown(result: LoadtestResult): string {
  const { model, samples, environment } = result;
  const sections = [
    `${model.name}/${model.version} (${model.provider}, up to ${model.maxTicks} ticks), ${samples.count} samples from ` +
      `${samples.source}, ${environment.cpus} CPUs (${environment.cpuModel}), load average ` +
      `${environment.loadAverage.start[0]?.toFixed(2)} at the start and ${environment.loadAverage.end[0]?.toFixed(2)} at the end.` +
      (result.interrupted ? " Interrupted: not every point ran." : "") +
      targetSentence(result),
    `**Accuracy and ticks by ${ruleHeader(result)}** (all calls and loads together)`,
    thresholdTable(result),
  ];
  for (const call of ["unary", "stream"] as const) {
    const latency = latencyTable(result, call);
    if (latency) {
      sections.push(
        `**${call === "unary" ? "Unary (Classify)" : "Streaming (ClassifyStream)"}: latency p50 / p99 in ms${call === "stream" ? " (first tick p50)" : ""} · answers/s**`,
        latency,
      );
    }
  }
  if (result.settings.compareThresholds) {
    if (signalsCompared(result)) {
      sections.push(
        "**Signals compared** (at each target, the signals side by side under the same call and load; the last columns are halt's against certainty's)",
        signalComparisonTable(result),
      );
    }
    sections.push(
      "**Thresholds compared** (each against the highest on its signal under the same call and load; predicted from the server's graph time per answer)",
      thresholdComparisonTable(result),
    );
  }
  sections.push("**Every point**", pointTable(result));
  return `${sections.join("\n\n")}\n`;
}
