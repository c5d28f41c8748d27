/**
 * What the server itself saw of a load, from its /metrics before and after: how long its Classify calls
 * took from receipt to answer (ctm_request_duration_seconds, so a percentile is known to a bucket: the
 * bucket's upper bound is given), its CPU, and how late its event loop ran at the end. Set beside the
 * latency the clients measured, it says whether time went inside the server or before it.
 */
import { bucketsOf, scrapeMetrics, sumOf } from "../../../tools/harness/index.ts";

export interface ServerSide {
  /** Upper bounds of the buckets holding the median and the 99th percentile, in ms. */
  p50Ms: number;
  p99Ms: number;
  /** Server process CPU over the load, in cores. */
  cpuCores: number;
  /** The event loop's delay at the end of the load: p99 over the process's sampling, in ms. */
  eventLoopP99Ms: number;
}

export interface MetricsSnapshot {
  at: number;
  buckets: Map<number, number>;
  cpuSeconds: number;
  eventLoopP99Ms: number;
}

export async function readMetrics(metricsPort: number): Promise<MetricsSnapshot> {
  const samples = await scrapeMetrics(`http://127.0.0.1:${metricsPort}/metrics`);
  return {
    at: performance.now(),
    buckets: bucketsOf(samples, "ctm_request_duration_seconds", { method: "Classify" }),
    cpuSeconds: sumOf(samples, "ctm_process_cpu_seconds_total"),
    eventLoopP99Ms: sumOf(samples, "ctm_nodejs_eventloop_lag_p99_seconds") * 1000,
  };
}

export function serverSideBetween(before: MetricsSnapshot, after: MetricsSnapshot): ServerSide {
  const bounds = [...after.buckets.keys()].sort((a, b) => a - b);
  const counts = bounds.map((bound) => (after.buckets.get(bound) ?? 0) - (before.buckets.get(bound) ?? 0));
  const total = counts.at(-1) ?? 0;
  const at = (q: number) => {
    const index = counts.findIndex((count) => count >= q * total);
    return (bounds[index] ?? Number.POSITIVE_INFINITY) * 1000;
  };
  const seconds = (after.at - before.at) / 1000;
  return {
    p50Ms: total > 0 ? at(0.5) : 0,
    p99Ms: total > 0 ? at(0.99) : 0,
    cpuCores: seconds > 0 ? (after.cpuSeconds - before.cpuSeconds) / seconds : 0,
    eventLoopP99Ms: after.eventLoopP99Ms,
  };
}
