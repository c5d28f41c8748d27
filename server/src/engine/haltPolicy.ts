/**
 * When a CTM stops thinking. The rule is the one calibration.json was measured with, so a threshold
 * resolved from a target accuracy means the same thing here as it did there.
 *
 * A policy halts on one signal: the model's certainty, or, for a model with a halting head, the head's
 * `halt` output (its estimate that the tick's answer is right). Ticks are 1-based. After tick t, in
 * this order:
 *   THRESHOLD  t >= minTicks and signal_t >= threshold                        answer = tick t
 *   PATIENCE   patience > 0, t >= minTicks and the top class has been the same for the last
 *              `patience` ticks                                                answer = best tick
 *   MAX_TICKS  t == maxTicks                                                    answer = best tick
 *   DEADLINE   the request's deadline has passed                               answer = best tick
 * "Best" is the earliest tick with the highest signal so far: for certainty the most certain tick, as
 * in the CTM paper.
 */
import type { Calibration, HaltSignal } from "../model/calibration.ts";
import { type GuaranteePlan, keepToCalibratedRule, planGuarantee, resolveConfidence } from "./haltGuarantee.ts";
import { invalidArgument } from "./serverError.ts";

export type HaltReason = "THRESHOLD" | "PATIENCE" | "MAX_TICKS" | "DEADLINE";

/** What a client asked for. `undefined` (and 0 for the integer fields) means "use the default". */
export interface HaltPolicyRequest {
  /** The signal to halt on; undefined: the one the threshold names, else for a target the best one. */
  haltSignal?: HaltSignal;
  certaintyThreshold?: number;
  /** A threshold on the halting head's output. */
  haltThreshold?: number;
  targetAccuracy?: number;
  targetConsistency?: number;
  /** Only with a target; undefined means DEFAULT_TARGET_CONFIDENCE. */
  targetConfidence?: number;
  /**
   * The floor of a flexible request: only with target_accuracy (target_consistency), the lowest
   * target of that kind an overloaded server may serve it at instead (targetLadder.ts).
   */
  minTargetAccuracy?: number;
  minTargetConsistency?: number;
  minTicks?: number;
  maxTicks?: number;
  patience?: number;
  deadlineMs?: number;
}

/** A complete, validated policy. */
export interface HaltPolicy {
  /** The signal `threshold` applies to, and that picks the answer when no tick reaches it. */
  signal: HaltSignal;
  threshold: number;
  /** Set when the threshold was resolved from a target accuracy. */
  targetAccuracy?: number;
  /** Set when the threshold was resolved from a target consistency. */
  targetConsistency?: number;
  /** Set with either target: the confidence asked for, default filled in. */
  targetConfidence?: number;
  /** Set with either target: what the calibration promises for it. */
  guarantee?: GuaranteePlan;
  /**
   * Set when the request gave a floor (min_target_accuracy or min_target_consistency): the lowest
   * target of the same kind it may be served at under load.
   */
  minTarget?: number;
  /**
   * Set when load lowered the request: the target and threshold it asked for. The policy's own target,
   * threshold and guarantee are then the lower, certified ones it was served at.
   */
  loweredFrom?: { target: number; threshold: number };
  minTicks: number;
  maxTicks: number;
  /** 0: off. */
  patience: number;
  /** 0: off. */
  deadlineMs: number;
}

/**
 * Used when a request sets neither a threshold nor a target: on certainty, whatever the model has, so
 * that a request that says nothing behaves the same on every model; and on the halt signal when the
 * request names that signal but no threshold.
 */
export const DEFAULT_CERTAINTY_THRESHOLD = 0.9;
export const DEFAULT_HALT_THRESHOLD = 0.9;

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
  /** Whether the model has a halting head (manifest outputs.halt): it can halt on "halt" too. */
  hasHaltSignal?: boolean;
}

/** The signals a model can halt on: certainty, and halt when it has a halting head. */
export function signalsOf(limits: Pick<TickLimits, "hasHaltSignal">): HaltSignal[] {
  return limits.hasHaltSignal ? ["certainty", "halt"] : ["certainty"];
}

/**
 * The signal a target is certified on when the request names none: the one the calibration file names
 * (chosen at export, on items apart from the calibration's, as the one that reaches the model's accuracy
 * in fewer ticks), else the halting head's when the model has one and its calibration certifies on it,
 * else certainty.
 */
export function bestSignal(limits: Pick<TickLimits, "hasHaltSignal" | "calibration">): HaltSignal {
  const halt = limits.hasHaltSignal && limits.calibration?.signals.halt !== undefined;
  const named = limits.calibration?.targetSignal;
  if (named === "certainty" || (named === "halt" && halt)) return named;
  return halt ? "halt" : "certainty";
}

export function defaultHaltPolicy(limits: TickLimits): HaltPolicy {
  return {
    signal: "certainty",
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
  const { certaintyThreshold, haltThreshold, targetAccuracy, targetConsistency, targetConfidence } = request;
  const chosen = [
    ["halt_policy.certainty_threshold", certaintyThreshold],
    ["halt_policy.halt_threshold", haltThreshold],
    ["halt_policy.target_accuracy", targetAccuracy],
    ["halt_policy.target_consistency", targetConsistency],
  ].filter(([, value]) => value !== undefined);
  if (chosen.length > 1) {
    const fields = chosen.map(([field, value]) => `${field} (${value})`);
    throw invalidArgument(`set at most one of ${fields.slice(0, -1).join(", ")} and ${fields.at(-1)}`);
  }
  const kind = targetAccuracy !== undefined ? "accuracy" : targetConsistency !== undefined ? "consistency" : undefined;
  policy.signal = resolveSignal(request, kind !== undefined, limits);
  if (certaintyThreshold !== undefined) {
    policy.threshold = unitInterval("halt_policy.certainty_threshold", certaintyThreshold);
  } else if (haltThreshold !== undefined) {
    policy.threshold = unitInterval("halt_policy.halt_threshold", haltThreshold);
  } else if (policy.signal === "halt") {
    policy.threshold = DEFAULT_HALT_THRESHOLD;
  }
  if (kind === undefined && targetConfidence !== undefined) {
    throw invalidArgument(
      `halt_policy.target_confidence (${targetConfidence}) applies only with halt_policy.target_accuracy or halt_policy.target_consistency`,
    );
  }
  if (kind !== undefined) {
    const target = unitInterval(`halt_policy.target_${kind}`, (targetAccuracy ?? targetConsistency) as number);
    const context = { model: limits.model, calibration: limits.calibration, signal: policy.signal };
    const confidence = resolveConfidence(kind, targetConfidence, context);
    policy.guarantee = planGuarantee(kind, target, confidence, context);
    policy.threshold = policy.guarantee.threshold;
    policy.targetConfidence = confidence;
    if (kind === "accuracy") policy.targetAccuracy = target;
    else policy.targetConsistency = target;
  }
  const floor = resolveFloor(request, kind, policy.targetAccuracy ?? policy.targetConsistency);
  if (floor !== undefined) policy.minTarget = floor;

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

/**
 * The signal a request halts on, checked against the model and against the request's own threshold: a
 * threshold on one signal with the other named is a contradiction, not a choice to make for the client.
 */
function resolveSignal(request: HaltPolicyRequest, hasTarget: boolean, limits: TickLimits): HaltSignal {
  const { haltSignal, certaintyThreshold, haltThreshold } = request;
  if (haltSignal === "halt" && certaintyThreshold !== undefined) {
    throw invalidArgument(
      `halt_policy.certainty_threshold (${certaintyThreshold}) is a threshold on certainty, but halt_policy.halt_signal is halt; set halt_policy.halt_threshold instead, or halt_signal certainty`,
    );
  }
  if (haltSignal === "certainty" && haltThreshold !== undefined) {
    throw invalidArgument(
      `halt_policy.halt_threshold (${haltThreshold}) is a threshold on the halt signal, but halt_policy.halt_signal is certainty; set halt_policy.certainty_threshold instead, or halt_signal halt`,
    );
  }
  const signal: HaltSignal =
    haltSignal ??
    (haltThreshold !== undefined
      ? "halt"
      : certaintyThreshold === undefined && hasTarget
        ? bestSignal(limits)
        : "certainty");
  if (signal === "halt" && !limits.hasHaltSignal) {
    const field = haltSignal === "halt" ? "halt_policy.halt_signal" : "halt_policy.halt_threshold";
    throw invalidArgument(
      `${field}: model ${limits.model} has no halting head (its manifest declares no outputs.halt), so it can halt on certainty only; use halt_policy.certainty_threshold or a target, or a model exported with a halting head`,
    );
  }
  return signal;
}

/**
 * A floor belongs to a target of its own kind and lies in (0, target]: a floor above the target would
 * ask the server to raise it, and one on the other kind would be a promise no threshold is certified for.
 */
function resolveFloor(
  request: HaltPolicyRequest,
  kind: "accuracy" | "consistency" | undefined,
  target: number | undefined,
): number | undefined {
  const { minTargetAccuracy, minTargetConsistency } = request;
  if (minTargetAccuracy !== undefined && minTargetConsistency !== undefined) {
    throw invalidArgument(
      `set at most one of halt_policy.min_target_accuracy (${minTargetAccuracy}) and halt_policy.min_target_consistency (${minTargetConsistency})`,
    );
  }
  const floorKind =
    minTargetAccuracy !== undefined ? "accuracy" : minTargetConsistency !== undefined ? "consistency" : undefined;
  if (floorKind === undefined) return undefined;
  const floor = (minTargetAccuracy ?? minTargetConsistency) as number;
  const field = `halt_policy.min_target_${floorKind}`;
  if (kind !== floorKind || target === undefined) {
    throw invalidArgument(
      `${field} (${floor}) is the floor of halt_policy.target_${floorKind} and applies only with it${kind ? `; this request sets halt_policy.target_${kind}` : ""}`,
    );
  }
  if (!(floor > 0 && floor <= target)) {
    throw invalidArgument(`${field} must be in (0, target_${floorKind} = ${target}], got ${floor}`);
  }
  return floor;
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

/** One tick's signals: certainty always, halt for a model with a halting head. */
export interface TickSignals {
  certainty: number;
  halt?: number;
}

export interface Halt<T> {
  reason: HaltReason;
  ticksUsed: number;
  answerTick: number;
  /** The answer tick's signals. */
  answer: TickSignals & { payload: T };
}

/**
 * Applies a policy to one request's ticks as they arrive. `payload` is whatever the caller needs back
 * for the answer tick (its logits and probabilities); only the current and the best tick's payloads
 * are kept.
 */
export class HaltTracker<T> {
  private ticks = 0;
  private best: { tick: number; value: number; answer: TickSignals & { payload: T } } | undefined;
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
  observe(signals: TickSignals, topClass: string, payload: T, now: number): Halt<T> | undefined {
    const tick = ++this.ticks;
    const { minTicks, threshold, patience, maxTicks, signal } = this.policy;
    const value = signal === "halt" ? signals.halt : signals.certainty;
    if (value === undefined) throw new Error(`a policy on "${signal}" got a tick without it. This is a bug.`);
    const answer = { ...signals, payload };
    if (this.best === undefined || value > this.best.value) this.best = { tick, value, answer };
    this.run = topClass === this.topClass ? this.run + 1 : 1;
    this.topClass = topClass;

    if (tick >= minTicks && value >= threshold) {
      return { reason: "THRESHOLD", ticksUsed: tick, answerTick: tick, answer };
    }
    if (patience > 0 && tick >= minTicks && this.run >= patience) return this.halt("PATIENCE");
    if (tick >= maxTicks) return this.halt("MAX_TICKS");
    if (now >= this.deadlineAt) return this.halt("DEADLINE");
    return undefined;
  }

  private halt(reason: HaltReason): Halt<T> {
    const best = this.best as NonNullable<typeof this.best>;
    return { reason, ticksUsed: this.ticks, answerTick: best.tick, answer: best.answer };
  }
}
