/**
 * When a CTM stops thinking. The rule is the one calibration.json was measured with, so a threshold
 * resolved from a target accuracy means the same thing here as it did there.
 *
 * Ticks are 1-based. After tick t, in this order:
 *   THRESHOLD  t >= minTicks and certainty_t >= threshold                     answer = tick t
 *   PATIENCE   patience > 0, t >= minTicks and the top class has been the same for the last
 *              `patience` ticks                                                answer = most certain tick
 *   MAX_TICKS  t == maxTicks                                                    answer = most certain tick
 *   DEADLINE   the request's deadline has passed                               answer = most certain tick
 * "Most certain" is the earliest tick with the highest certainty so far, as in the CTM paper.
 */
import type { Calibration } from "../model/calibration.ts";
import { type GuaranteePlan, keepToCalibratedRule, planGuarantee, resolveConfidence } from "./haltGuarantee.ts";
import { invalidArgument } from "./serverError.ts";

export type HaltReason = "THRESHOLD" | "PATIENCE" | "MAX_TICKS" | "DEADLINE";

/** What a client asked for. `undefined` (and 0 for the integer fields) means "use the default". */
export interface HaltPolicyRequest {
  certaintyThreshold?: number;
  targetAccuracy?: number;
  targetConsistency?: number;
  /** Only with a target; undefined means DEFAULT_TARGET_CONFIDENCE. */
  targetConfidence?: number;
  minTicks?: number;
  maxTicks?: number;
  patience?: number;
  deadlineMs?: number;
}

/** A complete, validated policy. */
export interface HaltPolicy {
  threshold: number;
  /** Set when the threshold was resolved from a target accuracy. */
  targetAccuracy?: number;
  /** Set when the threshold was resolved from a target consistency. */
  targetConsistency?: number;
  /** Set with either target: the confidence asked for, default filled in. */
  targetConfidence?: number;
  /** Set with either target: what the calibration promises for it. */
  guarantee?: GuaranteePlan;
  minTicks: number;
  maxTicks: number;
  /** 0: off. */
  patience: number;
  /** 0: off. */
  deadlineMs: number;
}

/** Used when a request sets neither a threshold nor a target accuracy. */
export const DEFAULT_CERTAINTY_THRESHOLD = 0.9;

/** What a model allows; from its manifest and calibration. */
export interface TickLimits {
  model: string;
  trainedTicks: number;
  /** The least of the manifest's ticks.max and the server's --max-ticks. */
  maxTicks: number;
  /**
   * The server's --max-ticks (0: none), so that a refusal can say which bound applied; when it is not
   * given the message names both.
   */
  serverMaxTicks?: number;
  calibration?: Calibration;
}

export function defaultHaltPolicy(limits: TickLimits): HaltPolicy {
  return {
    threshold: DEFAULT_CERTAINTY_THRESHOLD,
    minTicks: 1,
    maxTicks: Math.min(limits.trainedTicks, limits.maxTicks),
    patience: 0,
    deadlineMs: 0,
  };
}

/** Fills in defaults and checks every bound; errors name the field, the bound and the value. */
export function resolveHaltPolicy(request: HaltPolicyRequest, limits: TickLimits): HaltPolicy {
  const policy = defaultHaltPolicy(limits);
  const { certaintyThreshold, targetAccuracy, targetConsistency, targetConfidence } = request;
  const chosen = [
    ["halt_policy.certainty_threshold", certaintyThreshold],
    ["halt_policy.target_accuracy", targetAccuracy],
    ["halt_policy.target_consistency", targetConsistency],
  ].filter(([, value]) => value !== undefined);
  if (chosen.length > 1) {
    const fields = chosen.map(([field, value]) => `${field} (${value})`);
    throw invalidArgument(`set at most one of ${fields.slice(0, -1).join(", ")} and ${fields.at(-1)}`);
  }
  if (certaintyThreshold !== undefined) {
    policy.threshold = unitInterval("halt_policy.certainty_threshold", certaintyThreshold);
  }
  const kind = targetAccuracy !== undefined ? "accuracy" : targetConsistency !== undefined ? "consistency" : undefined;
  if (kind === undefined && targetConfidence !== undefined) {
    throw invalidArgument(
      `halt_policy.target_confidence (${targetConfidence}) applies only with halt_policy.target_accuracy or halt_policy.target_consistency`,
    );
  }
  if (kind !== undefined) {
    const target = unitInterval(`halt_policy.target_${kind}`, (targetAccuracy ?? targetConsistency) as number);
    const context = { model: limits.model, calibration: limits.calibration };
    const confidence = resolveConfidence(kind, targetConfidence, context);
    policy.guarantee = planGuarantee(kind, target, confidence, context);
    policy.threshold = policy.guarantee.threshold;
    policy.targetConfidence = confidence;
    if (kind === "accuracy") policy.targetAccuracy = target;
    else policy.targetConsistency = target;
  }

  const maxTicks = count("halt_policy.max_ticks", request.maxTicks);
  if (maxTicks > limits.maxTicks) {
    throw invalidArgument(
      `halt_policy.max_ticks must be in [1, ${limits.maxTicks}] for model ${limits.model} (${maxTicksSource(limits)}; 0 means ${policy.maxTicks}), got ${maxTicks}`,
    );
  }
  if (maxTicks > 0) policy.maxTicks = maxTicks;

  const minTicks = count("halt_policy.min_ticks", request.minTicks);
  if (minTicks > policy.maxTicks) {
    throw invalidArgument(`halt_policy.min_ticks must be in [1, max_ticks = ${policy.maxTicks}], got ${minTicks}`);
  }
  if (minTicks > 0) policy.minTicks = minTicks;

  const patience = count("halt_policy.patience", request.patience);
  if (patience > policy.maxTicks) {
    throw invalidArgument(`halt_policy.patience must be in [0, max_ticks = ${policy.maxTicks}], got ${patience}`);
  }
  policy.patience = patience;
  policy.deadlineMs = count("halt_policy.deadline_ms", request.deadlineMs);
  if (policy.guarantee && limits.calibration) {
    policy.guarantee = keepToCalibratedRule(policy.guarantee, policy, limits.calibration.ticks);
  }
  return policy;
}

/** Which bound made limits.maxTicks what it is. */
function maxTicksSource(limits: TickLimits): string {
  const { serverMaxTicks } = limits;
  if (serverMaxTicks === undefined) return "the model's ticks.max, or the server's --max-ticks if that is lower";
  if (serverMaxTicks > 0 && serverMaxTicks === limits.maxTicks) return `the server's --max-ticks ${serverMaxTicks}`;
  return "the model's ticks.max";
}

function unitInterval(field: string, value: number): number {
  if (!(value > 0 && value <= 1)) throw invalidArgument(`${field} must be in (0, 1], got ${value}`);
  return value;
}

function count(field: string, value: number | undefined): number {
  if (value === undefined) return 0;
  if (!Number.isInteger(value) || value < 0)
    throw invalidArgument(`${field} must be a non-negative integer, got ${value}`);
  return value;
}

export interface Halt<T> {
  reason: HaltReason;
  ticksUsed: number;
  answerTick: number;
  answerCertainty: number;
  answer: T;
}

/**
 * Applies a policy to one request's ticks as they arrive. `payload` is whatever the caller needs back
 * for the answer tick (its logits and probabilities); only the current and the most certain tick's
 * payloads are kept.
 */
export class HaltTracker<T> {
  private ticks = 0;
  private best: { tick: number; certainty: number; payload: T } | undefined;
  private topClass: string | undefined;
  private run = 0;

  /** `deadlineAt`: epoch milliseconds after which the request halts with DEADLINE; Infinity for none. */
  constructor(
    private readonly policy: HaltPolicy,
    private readonly deadlineAt = Number.POSITIVE_INFINITY,
  ) {}

  get ticksDone(): number {
    return this.ticks;
  }

  /** Records one tick; returns the halt decision, or undefined to keep thinking. */
  observe(certainty: number, topClass: string, payload: T, now: number): Halt<T> | undefined {
    const tick = ++this.ticks;
    if (this.best === undefined || certainty > this.best.certainty) this.best = { tick, certainty, payload };
    this.run = topClass === this.topClass ? this.run + 1 : 1;
    this.topClass = topClass;

    const { minTicks, threshold, patience, maxTicks } = this.policy;
    if (tick >= minTicks && certainty >= threshold) {
      return { reason: "THRESHOLD", ticksUsed: tick, answerTick: tick, answerCertainty: certainty, answer: payload };
    }
    if (patience > 0 && tick >= minTicks && this.run >= patience) return this.halt("PATIENCE");
    if (tick >= maxTicks) return this.halt("MAX_TICKS");
    if (now >= this.deadlineAt) return this.halt("DEADLINE");
    return undefined;
  }

  private halt(reason: HaltReason): Halt<T> {
    const best = this.best as NonNullable<typeof this.best>;
    return {
      reason,
      ticksUsed: this.ticks,
      answerTick: best.tick,
      answerCertainty: best.certainty,
      answer: best.payload,
    };
  }
}
