/**
 * --compare-thresholds with targets on both signals (--signal certainty,halt): at each target, what
 * halting on certainty and on the halting head's signal cost side by side under the same call and
 * load: the threshold each was certified at, answers/s, p50/p99, mean ticks and the accuracy measured.
 * Both thresholds were certified for the same target, so the pair is the price of one guarantee on
 * each signal; the accuracy columns say what the samples made of it.
 */
import type { HaltSignal } from "../../server/src/model/calibration.ts";
import type { LoadtestResult, PointResult } from "./loadtestResult.ts";
import { type CallKind, type Load, loadLabel, type RuleTarget } from "./sweepPlan.ts";

export interface SignalPair {
  call: CallKind;
  load: Load;
  target: RuleTarget;
  certainty: PointResult | undefined;
  halt: PointResult | undefined;
  /** halt's answers/s over certainty's; null for the open loop (its throughput is the offered rate) or a missing side. */
  throughput: number | null;
  /** halt's mean ticks over certainty's; null when a side is missing. */
  ticks: number | null;
}

const signalOf = (p: PointResult): HaltSignal => p.signal ?? "certainty";

/** Whether the run measured targets on more than one signal. */
export function signalsCompared(result: LoadtestResult): boolean {
  return new Set(result.points.filter((p) => p.target).map(signalOf)).size > 1;
}

export function signalPairs(result: LoadtestResult): SignalPair[] {
  const groups = new Map<string, PointResult[]>();
  for (const p of result.points) {
    if (!p.target) continue;
    const key = `${p.call} ${loadLabel(p.load)} ${p.target.kind} ${p.target.value}`;
    groups.set(key, [...(groups.get(key) ?? []), p]);
  }
  return [...groups.values()].map((points) => {
    const first = points[0] as PointResult;
    const certainty = points.find((p) => signalOf(p) === "certainty");
    const halt = points.find((p) => signalOf(p) === "halt");
    const both = certainty && halt;
    return {
      call: first.call,
      load: first.load,
      target: first.target as RuleTarget,
      certainty,
      halt,
      throughput:
        both && first.load.kind === "closed" && certainty.throughputRps > 0
          ? halt.throughputRps / certainty.throughputRps
          : null,
      ticks: both && certainty.ticks.mean > 0 ? halt.ticks.mean / certainty.ticks.mean : null,
    };
  });
}

const ms = (v: number) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));
const ratio = (v: number | null) => (v === null ? "-" : `${v.toFixed(2)}x`);

function side(p: PointResult | undefined): string[] {
  if (!p) return ["-", "-", "-", "-", "-"];
  return [
    `${p.threshold}${p.target?.met ? "" : " (not met)"}`,
    p.throughputRps.toFixed(1),
    `${ms(p.latencyMs.p50)} / ${ms(p.latencyMs.p99)}`,
    p.ticks.mean.toFixed(2),
    p.accuracy === null ? "-" : `${(100 * p.accuracy).toFixed(1)}%`,
  ];
}

/** The comparison as a Markdown table, one row per call, load and target. */
export function signalComparisonTable(result: LoadtestResult): string {
  const columns = (signal: string) => [
    `${signal}: threshold`,
    `${signal}: answers/s`,
    `${signal}: p50 / p99 ms`,
    `${signal}: mean ticks`,
    `${signal}: accuracy`,
  ];
  const header = [
    "call",
    "load",
    "target",
    ...columns("certainty"),
    ...columns("halt"),
    "answers/s: halt / certainty",
    "mean ticks: halt / certainty",
  ];
  const rows = signalPairs(result).map((pair) => [
    pair.call,
    loadLabel(pair.load),
    `${pair.target.kind} ${pair.target.value}`,
    ...side(pair.certainty),
    ...side(pair.halt),
    ratio(pair.throughput),
    ratio(pair.ticks),
  ]);
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}
