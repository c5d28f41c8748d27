/**
 * The server's own account of its graph time, read from its Prometheus endpoint before and after a
 * point: encoder and tick-graph milliseconds per answer, and the rows each run carried. It is what
 * --compare-thresholds predicts the payoff of a threshold from (thresholdComparison.ts).
 */
import { scrapeMetrics, sumOf } from "../../tools/harness/index.ts";
import type { GraphTime } from "./loadtestResult.ts";

export interface GraphCounters {
  encoderMs: number;
  encoderRuns: number;
  tickMs: number;
  tickRuns: number;
  tickRows: number;
  answers: number;
}

/** Sums of the server's counters (over every model and label) at this moment. */
export async function readGraphCounters(url: string): Promise<GraphCounters> {
  const samples = await scrapeMetrics(url);
  const total = (name: string) => sumOf(samples, name);
  return {
    encoderMs: total("ctm_encoder_run_seconds_sum") * 1000,
    encoderRuns: total("ctm_encoder_run_seconds_count"),
    tickMs: total("ctm_tick_run_seconds_sum") * 1000,
    tickRuns: total("ctm_tick_run_seconds_count"),
    tickRows: total("ctm_tick_rows_total"),
    answers: total("ctm_ticks_used_count"),
  };
}

/** What the counters moved by, per answer; null when nothing was answered in between. */
export function graphTimeBetween(before: GraphCounters, after: GraphCounters): GraphTime | null {
  const d = (key: keyof GraphCounters) => after[key] - before[key];
  const answers = d("answers");
  if (answers <= 0) return null;
  return {
    encoderMs: d("encoderMs") / answers,
    tickMs: d("tickMs") / answers,
    encoderRows: d("encoderRuns") > 0 ? answers / d("encoderRuns") : 0,
    tickRows: d("tickRuns") > 0 ? d("tickRows") / d("tickRuns") : 0,
  };
}
