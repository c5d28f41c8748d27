/**
 * --compare-thresholds: what each threshold buys against the highest one on the same signal in the run,
 * under the same call kind and load. The payoff achieved is the throughput ratio; the payoff predicted is
 * what the server's own graph time per answer says it should be (encoder plus the ticks actually run,
 * at the batch sizes the server formed), from --metrics. Achieved well below predicted means that
 * something other than the graphs - gRPC, preprocessing, the client - limits the server. Beside them,
 * the ticks saved (the baseline's mean ticks over this one's): on a model whose cost is its ticks, the
 * throughput ratio follows it.
 */
import type { LoadtestResult, PointResult } from "./loadtestResult.ts";
import { type CallKind, type Load, loadLabel, ruleLabel } from "./sweepPlan.ts";

export interface ThresholdPayoff {
  call: CallKind;
  load: Load;
  threshold: number;
  /** The threshold this one is compared with: the highest on its signal under the same call and load. */
  baseline: number;
  point: PointResult;
  /**
   * throughput / the baseline's throughput; null for the open loop, whose throughput is the offered
   * rate whatever the threshold (there the payoff shows in latency).
   */
  achieved: number | null;
  /** The baseline's graph time per answer / this one's; null without --metrics. */
  predicted: number | null;
  /** The baseline's mean ticks / this one's. */
  ticksSaved: number;
}

const graphMs = (p: PointResult) => (p.graph ? p.graph.encoderMs + p.graph.tickMs : null);

export function thresholdPayoffs(result: LoadtestResult): ThresholdPayoff[] {
  const groups = new Map<string, PointResult[]>();
  for (const p of result.points) {
    // Thresholds on different signals are different scales: each signal has its own baseline.
    const key = `${p.call} ${loadLabel(p.load)} ${p.signal ?? "certainty"}`;
    groups.set(key, [...(groups.get(key) ?? []), p]);
  }
  return [...groups.values()].flatMap((points) => {
    const baseline = points.reduce((a, b) => (b.threshold > a.threshold ? b : a));
    const baseGraph = graphMs(baseline);
    return [...points]
      .sort((a, b) => b.threshold - a.threshold)
      .map((point) => {
        const own = graphMs(point);
        return {
          call: point.call,
          load: point.load,
          threshold: point.threshold,
          baseline: baseline.threshold,
          point,
          achieved:
            point.load.kind === "open" || baseline.throughputRps <= 0
              ? null
              : point.throughputRps / baseline.throughputRps,
          predicted: baseGraph !== null && own !== null && own > 0 ? baseGraph / own : null,
          ticksSaved: baseline.ticks.mean / point.ticks.mean,
        };
      });
  });
}

const x = (v: number | null) => (v === null ? "-" : `${v.toFixed(2)}x`);
const ms = (v: number) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));

/** The comparison as a Markdown table, one row per point. */
export function thresholdComparisonTable(result: LoadtestResult): string {
  const header = [
    "call",
    "load",
    "threshold",
    "answers/s",
    "p50 / p99 ms",
    "mean ticks",
    "accuracy",
    "payoff achieved",
    "ticks saved: baseline / this",
    "payoff predicted (graph time)",
    "achieved / predicted",
    "graph ms per answer: encoder + ticks",
    "rows per encoder / tick run",
  ];
  const rows = thresholdPayoffs(result).map((r) => {
    const { point: p } = r;
    const g = p.graph;
    return [
      r.call,
      loadLabel(r.load),
      r.threshold === r.baseline ? `${ruleLabel(r.point)} (baseline)` : ruleLabel(r.point),
      p.throughputRps.toFixed(1),
      `${ms(p.latencyMs.p50)} / ${ms(p.latencyMs.p99)}`,
      p.ticks.mean.toFixed(2),
      p.accuracy === null ? "-" : `${(100 * p.accuracy).toFixed(1)}%`,
      x(r.achieved),
      x(r.ticksSaved),
      x(r.predicted),
      r.predicted && r.achieved !== null ? `${((100 * r.achieved) / r.predicted).toFixed(0)}%` : "-",
      g ? `${(g.encoderMs + g.tickMs).toFixed(3)} = ${g.encoderMs.toFixed(3)} + ${g.tickMs.toFixed(3)}` : "-",
      g ? `${g.encoderRows.toFixed(1)} / ${g.tickRows.toFixed(1)}` : "-",
    ];
  });
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}
