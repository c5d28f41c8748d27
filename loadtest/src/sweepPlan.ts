/**
 * What one load test measures: every combination of call kind, load and halting rule is a point, and
 * each point runs for a fixed budget (a duration or a request count). A rule is a threshold on one
 * signal (certainty, or a halting head's halt signal), or a target certified on one signal, which the
 * server resolves to a threshold on it.
 */
import type { HaltSignal } from "../../server/src/model/calibration.ts";
import type { Arrival, Budget } from "../../tools/harness/index.ts";

export type { Arrival, Budget };

/** Classify (one response) or ClassifyStream (one message per tick). */
export type CallKind = "unary" | "stream";
export const CALL_KINDS: readonly CallKind[] = ["unary", "stream"];

export const ARRIVALS: readonly Arrival[] = ["constant", "poisson"];

/**
 * Closed loop: `concurrency` callers, each sending its next request as soon as the previous one
 * answers. Open loop: requests start on a schedule of `rate` per second whatever the server does,
 * and latency counts from the scheduled time.
 */
export type Load = { kind: "closed"; concurrency: number } | { kind: "open"; rate: number; arrival: Arrival };

/** A target a rule was resolved from, as the server answered it. */
export interface RuleTarget {
  kind: "accuracy" | "consistency";
  value: number;
  /** 0: the server's default. */
  confidence: number;
  /** Whether the server said the guarantee was met. */
  met: boolean;
}

/** When requests halt: a threshold on a signal, resolved from a target when `target` is set. */
export interface Rule {
  /** Absent in result files written before halting signals: certainty. */
  signal?: HaltSignal;
  threshold: number;
  target?: RuleTarget;
}

export interface PointSpec extends Rule {
  call: CallKind;
  load: Load;
}

/** Call kind outermost, then load, then rule: a server warms up to each load once per call kind. */
export function planPoints(calls: readonly CallKind[], loads: readonly Load[], rules: readonly Rule[]): PointSpec[] {
  return calls.flatMap((call) => loads.flatMap((load) => rules.map((rule) => ({ call, load, ...rule }))));
}

/**
 * A rule as tables and plots name it: "0.9" for a certainty threshold (as before halting signals),
 * "halt 0.99" for one on the halt signal, "accuracy 0.95 on halt (0.999)" for a target.
 */
export function ruleLabel(rule: Rule): string {
  const signal = rule.signal ?? "certainty";
  if (rule.target) return `${rule.target.kind} ${rule.target.value} on ${signal} (${rule.threshold})`;
  return signal === "certainty" ? String(rule.threshold) : `${signal} ${rule.threshold}`;
}

/** The distinct rules of a set of points, in the order they first appear. */
export function rulesOf(points: readonly Rule[]): Rule[] {
  const rules = new Map<string, Rule>();
  for (const p of points) {
    const rule: Rule = {
      signal: p.signal ?? "certainty",
      threshold: p.threshold,
      ...(p.target && { target: p.target }),
    };
    if (!rules.has(ruleLabel(rule))) rules.set(ruleLabel(rule), rule);
  }
  return [...rules.values()];
}

export const sameRule = (a: Rule, b: Rule): boolean => ruleLabel(a) === ruleLabel(b);

export function loadLabel(load: Load): string {
  return load.kind === "closed" ? `c=${load.concurrency}` : `${load.arrival} ${load.rate}/s`;
}

export function budgetLabel(budget: Budget): string {
  return budget.kind === "duration" ? `${budget.seconds}s` : `${budget.count} requests`;
}

/** Identifies a point across result files (compare mode matches on it). */
export function pointKey(point: PointSpec): string {
  return `${point.call} ${loadLabel(point.load)} t=${ruleLabel(point)}`;
}
