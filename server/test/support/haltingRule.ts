/**
 * The halting rule of proto/ctm/v1/ctm.proto written over a whole trace, for tests that derive what
 * the server should decide from the ticks it streamed.
 */
import assert from "node:assert/strict";
import type { HaltSignal } from "../../src/model/calibration.ts";
import type { HaltReasonName, TickUpdateMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";

export interface Expected {
  reason: HaltReasonName;
  ticksUsed: number;
  answerTick: number;
}

/** A policy as the rule reads it: a threshold on one signal. */
export interface Rule {
  signal: HaltSignal;
  threshold: number;
  min_ticks: number;
  max_ticks: number;
  patience: number;
}

/** A tick's value of a signal, as the server streamed it. */
export function signalOf(tick: TickUpdateMessage, signal: HaltSignal): number {
  const value = signal === "halt" ? tick.halt : tick.certainty;
  assert.ok(value !== undefined, `tick ${tick.tick} carries no ${signal}`);
  return value;
}

/** The rule from the proto, over a full trace. */
export function expected(trace: TickUpdateMessage[], policy: Rule): Expected {
  const top = (t: number) => trace[t - 1]?.top_k[0]?.index;
  const value = (t: number) => signalOf(trace[t - 1] as TickUpdateMessage, policy.signal);
  // The earliest tick with the highest signal so far.
  const mostCertain = (t: number) => {
    let best = 1;
    for (let i = 2; i <= t; i++) if (value(i) > value(best)) best = i;
    return best;
  };
  for (let t = 1; t <= trace.length; t++) {
    if (t >= policy.min_ticks && value(t) >= policy.threshold) {
      return { reason: "HALT_REASON_THRESHOLD", ticksUsed: t, answerTick: t };
    }
    let run = 1;
    while (run < t && top(t - run) === top(t)) run++;
    if (policy.patience > 0 && t >= policy.min_ticks && run >= policy.patience) {
      return { reason: "HALT_REASON_PATIENCE", ticksUsed: t, answerTick: mostCertain(t) };
    }
    if (t === policy.max_ticks) return { reason: "HALT_REASON_MAX_TICKS", ticksUsed: t, answerTick: mostCertain(t) };
  }
  throw new Error("the policy never halts within the trace");
}

/** Thresholds that fall strictly between two distinct values of a signal in the trace, so no run can tie. */
export function thresholdsBetween(trace: TickUpdateMessage[], signal: HaltSignal = "certainty"): number[] {
  const values = [...new Set(trace.map((t) => signalOf(t, signal)))].sort((a, b) => a - b);
  const gaps: number[] = [];
  for (let i = 1; i < values.length; i++) {
    const [lo, hi] = [values[i - 1] as number, values[i] as number];
    if (hi - lo > 1e-4) gaps.push((lo + hi) / 2);
  }
  return [gaps[0], gaps[Math.floor(gaps.length / 2)], gaps.at(-1)].filter((g): g is number => g !== undefined && g > 0);
}
