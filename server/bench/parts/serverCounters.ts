/**
 * The server's own counters, summed over their labels, from its /metrics text: what a load cost the
 * server's graphs, read before and after it (bench.ts, loadGenerator.ts).
 */
import { scrapeMetrics, sumOf } from "../../../tools/harness/index.ts";

export interface ServerCounters {
  handlerMs: number;
  requests: number;
  tickMs: number;
  tickRuns: number;
  tickRows: number;
  encoderMs: number;
  encoderRuns: number;
  ticksUsed: number;
  finished: number;
  /** CPU time of the whole server process: event loop, workers, onnxruntime's threads. */
  cpuMs: number;
}

export async function readServerCounters(metricsPort: number): Promise<ServerCounters> {
  const samples = await scrapeMetrics(`http://127.0.0.1:${metricsPort}/metrics`);
  const total = (name: string, method?: string) => sumOf(samples, name, method ? { method } : {});
  return {
    handlerMs: total("ctm_request_duration_seconds_sum", "Classify") * 1000,
    requests: total("ctm_request_duration_seconds_count", "Classify"),
    tickMs: total("ctm_tick_run_seconds_sum") * 1000,
    tickRuns: total("ctm_tick_run_seconds_count"),
    tickRows: total("ctm_tick_rows_total"),
    encoderMs: total("ctm_encoder_run_seconds_sum") * 1000,
    encoderRuns: total("ctm_encoder_run_seconds_count"),
    ticksUsed: total("ctm_ticks_used_sum"),
    finished: total("ctm_ticks_used_count"),
    cpuMs: total("ctm_process_cpu_seconds_total") * 1000,
  };
}

export const countersBetween = (before: ServerCounters, after: ServerCounters) =>
  Object.fromEntries(
    Object.entries(after).map(([k, v]) => [k, v - before[k as keyof ServerCounters]]),
  ) as unknown as ServerCounters;
