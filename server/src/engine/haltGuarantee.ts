/**
 * What a target_accuracy or target_consistency request is promised, and the threshold that keeps the
 * promise. The promise is the calibration's: Learn-then-Test certified, on the calibration set, that
 * halting at the threshold on one signal (certainty, or a halting head's output) gives at least the
 * target with at least the confidence (over the draw of that set), under the calibrated rule
 * (min_ticks 1, max_ticks = the calibration's ticks, no patience). Each signal has its own thresholds
 * and its own certificate; a threshold certified on one says nothing about the other.
 *
 * When nothing certifies the target the request runs with threshold 1.0 (every tick: the most
 * conservative setting) and is told the guarantee was not met, instead of being refused or silently
 * over-promised.
 */
import {
  type Calibration,
  type GuaranteeKind,
  type GuaranteeTable,
  gridPointFor,
  type HaltSignal,
  highestConfidence,
} from "../model/calibration.ts";
import { invalidArgument, ServerError } from "./serverError.ts";

/** Used when a request sets a target but no target_confidence. */
export const DEFAULT_TARGET_CONFIDENCE = 0.95;

/** The most conservative threshold: it never halts early, so the answer is the full run's. */
const EVERY_TICK = 1;

/** The promise made when the policy was resolved. */
export interface GuaranteePlan {
  kind: GuaranteeKind;
  /** The signal the threshold applies to and the certificate was made on. */
  signal: HaltSignal;
  /** As requested, with the confidence's default filled in. */
  target: number;
  confidence: number;
  /** Whether the calibration certifies it and the policy keeps to the calibrated rule. */
  certified: boolean;
  threshold: number;
  calibrationCount: number;
  /** Upper confidence bound on the loss at the threshold; 0 when the calibration has none. */
  riskBound: number;
  /** The grid point that certified it; 0 when none did. */
  certifiedTarget: number;
  certifiedConfidence: number;
  /** Why it is not certified, or empty. */
  note: string;
}

/** What the response reports: the plan, and whether this answer carries it. */
export interface GuaranteeOutcome extends GuaranteePlan {
  met: boolean;
}

interface PlanContext {
  model: string;
  calibration: Calibration | undefined;
  signal: HaltSignal;
}

/** The bound on target_confidence for this model and signal, as a closed upper end. */
export function confidenceBound(kind: GuaranteeKind, context: PlanContext): number | undefined {
  const table = context.calibration?.signals[context.signal]?.guarantees[kind];
  return table ? highestConfidence(table) : undefined;
}

/**
 * Resolves a target (already checked to be in (0, 1]) and a confidence (checked against
 * confidenceBound) to a threshold and a promise.
 */
export function planGuarantee(
  kind: GuaranteeKind,
  target: number,
  confidence: number,
  context: PlanContext,
): GuaranteePlan {
  const { calibration, model, signal } = context;
  const field = `halt_policy.target_${kind}`;
  if (!calibration) {
    throw new ServerError(
      "FAILED_PRECONDITION",
      `model ${model} has no calibration, so ${field} cannot be resolved; set halt_policy.certainty_threshold instead`,
    );
  }
  const calibrated = calibration.signals[signal];
  if (!calibrated) {
    // Only the halt signal can be missing: every calibration holds certainty.
    throw new ServerError(
      "FAILED_PRECONDITION",
      `model ${model}'s ${calibration.file} (schema_version ${calibration.schemaVersion}) does not calibrate the halt signal, so ${field} cannot be certified on halt_policy.halt_signal halt; recalibrate with npm run calibrate -- --model ${model} --write, or halt on certainty`,
    );
  }
  const table = calibrated.guarantees[kind];
  if (!table) return uncertifiedPlan(kind, signal, target, confidence, calibration, model, field);
  const point = gridPointFor(table, target, confidence);
  const base = { kind, signal, target, confidence, calibrationCount: table.count };
  if (point && point.threshold !== null) {
    return {
      ...base,
      certified: true,
      threshold: point.threshold,
      riskBound: point.riskBound,
      certifiedTarget: point.target,
      certifiedConfidence: point.confidence,
      note: "",
    };
  }
  return {
    ...base,
    certified: false,
    threshold: EVERY_TICK,
    riskBound: point?.riskBound ?? 0,
    certifiedTarget: 0,
    certifiedConfidence: 0,
    note: `no threshold on ${signal} certifies ${field} ${target} at confidence ${confidence} on the ${table.count} calibration items (the highest certified at that confidence is ${highestTarget(table, confidence)}); ran every tick (threshold 1.0)`,
  };
}

/**
 * A signal without guarantees (a schema_version 1 calibration): accuracy by the old rule, which
 * certifies nothing; no consistency.
 */
function uncertifiedPlan(
  kind: GuaranteeKind,
  signal: HaltSignal,
  target: number,
  confidence: number,
  calibration: Calibration,
  model: string,
  field: string,
): GuaranteePlan {
  if (kind === "consistency") {
    throw new ServerError(
      "FAILED_PRECONDITION",
      `model ${model}'s ${calibration.file} holds no consistency guarantees, so ${field} cannot be resolved; recalibrate with npm run calibrate -- --model ${model} --write (or --unlabeled DIR)`,
    );
  }
  // Accuracy is not monotonic in the threshold, so every point is considered.
  const reaching = (calibration.signals[signal]?.thresholds ?? [])
    .filter((p) => p.accuracy >= target)
    .map((p) => p.threshold);
  return {
    kind,
    signal,
    target,
    confidence,
    certified: false,
    threshold: reaching.length > 0 ? Math.min(...reaching) : EVERY_TICK,
    calibrationCount: calibration.count,
    riskBound: 0,
    certifiedTarget: 0,
    certifiedConfidence: 0,
    note: `model ${model}'s ${calibration.file} holds no guarantees (schema_version ${calibration.schemaVersion}): the threshold is the smallest whose calibration accuracy reached the target, which does not certify it; recalibrate with npm run calibrate -- --model ${model} --write`,
  };
}

/** The highest target certified at the grid confidence that serves `confidence`; 0 when none. */
function highestTarget(table: GuaranteeTable, confidence: number): number {
  const level = gridPointFor(table, 0, confidence)?.confidence;
  const certified = table.certified.filter((p) => p.confidence === level && p.threshold !== null);
  return certified.length > 0 ? Math.max(...certified.map((p) => p.target)) : 0;
}

/**
 * Withdraws a certified plan when the rest of the policy leaves the rule the calibration measured:
 * halting earlier or later than it did changes the accuracy it certified.
 */
export function keepToCalibratedRule(
  plan: GuaranteePlan,
  policy: { minTicks: number; maxTicks: number; patience: number },
  calibratedTicks: number,
): GuaranteePlan {
  if (!plan.certified) return plan;
  const departures = [
    policy.minTicks !== 1 ? `min_ticks ${policy.minTicks}` : "",
    policy.maxTicks !== calibratedTicks ? `max_ticks ${policy.maxTicks}` : "",
    policy.patience !== 0 ? `patience ${policy.patience}` : "",
  ].filter(Boolean);
  if (departures.length === 0) return plan;
  return {
    ...plan,
    certified: false,
    note: `the guarantee holds for the calibrated rule (min_ticks 1, max_ticks ${calibratedTicks}, patience 0); this request has ${departures.join(", ")}`,
  };
}

/** Whether one answer carries the plan: a deadline cuts the calibrated rule short. */
export function guaranteeOutcome(plan: GuaranteePlan, reason: string): GuaranteeOutcome {
  if (plan.certified && reason === "DEADLINE") {
    return { ...plan, met: false, note: "halted by deadline_ms before the calibrated rule would have" };
  }
  return { ...plan, met: plan.certified };
}

/** Checks target_confidence against what the model's calibration holds; 0/undefined means the default. */
export function resolveConfidence(kind: GuaranteeKind, confidence: number | undefined, context: PlanContext): number {
  if (confidence === undefined) return DEFAULT_TARGET_CONFIDENCE;
  const bound = confidenceBound(kind, context);
  if (bound === undefined) {
    if (!(confidence > 0 && confidence < 1)) {
      throw invalidArgument(`halt_policy.target_confidence must be in (0, 1), got ${confidence}`);
    }
  } else if (!(confidence > 0 && confidence <= bound)) {
    throw invalidArgument(
      `halt_policy.target_confidence must be in (0, ${bound}] for model ${context.model} (the highest confidence its calibration certifies), got ${confidence}`,
    );
  }
  return confidence;
}
