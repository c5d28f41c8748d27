/**
 * What one load test measures: every combination of call kind, load and certainty threshold is a
 * point, and each point runs for a fixed budget (a duration or a request count).
 */

/** Classify (one response) or ClassifyStream (one message per tick). */
export type CallKind = "unary" | "stream";
export const CALL_KINDS: readonly CallKind[] = ["unary", "stream"];

export type Arrival = "constant" | "poisson";
export const ARRIVALS: readonly Arrival[] = ["constant", "poisson"];

/**
 * Closed loop: `concurrency` callers, each sending its next request as soon as the previous one
 * answers. Open loop: requests start on a schedule of `rate` per second whatever the server does,
 * and latency counts from the scheduled time.
 */
export type Load = { kind: "closed"; concurrency: number } | { kind: "open"; rate: number; arrival: Arrival };

export type Budget = { kind: "duration"; seconds: number } | { kind: "requests"; count: number };

export interface PointSpec {
  call: CallKind;
  threshold: number;
  load: Load;
}

/** Call kind outermost, then load, then threshold: a server warms up to each load once per call kind. */
export function planPoints(
  calls: readonly CallKind[],
  loads: readonly Load[],
  thresholds: readonly number[],
): PointSpec[] {
  return calls.flatMap((call) => loads.flatMap((load) => thresholds.map((threshold) => ({ call, threshold, load }))));
}

export function loadLabel(load: Load): string {
  return load.kind === "closed" ? `c=${load.concurrency}` : `${load.arrival} ${load.rate}/s`;
}

export function budgetLabel(budget: Budget): string {
  return budget.kind === "duration" ? `${budget.seconds}s` : `${budget.count} requests`;
}

/** Identifies a point across result files (compare mode matches on it). */
export function pointKey(point: PointSpec): string {
  return `${point.call} ${loadLabel(point.load)} t=${point.threshold}`;
}
