/**
 * The certified targets a flexible request may be served at, and what each costs in ticks.
 *
 * A request with a floor (min_target_accuracy or min_target_consistency beside its target) may be
 * served anywhere between the two. Lowering it means halting on the threshold its calibration certifies
 * for a lower target on the same signal, at the same confidence: every rung below the request's own is a
 * grid point of that Learn-then-Test table whose threshold is certified, so the answer can state the
 * guarantee that holds for it. Only rungs that are cheaper than the one above (a lower threshold) are
 * kept, and none below the floor: the lowest rung is the smallest grid target at or above it.
 *
 * A request whose policy leaves the calibrated rule (min_ticks, max_ticks or patience changed), or whose
 * calibration certifies nothing below its target, has one rung: it is never lowered, because no lower
 * answer would carry a guarantee. Every other request has one rung too; the ladder then only says what
 * the request is expected to cost, for the load controller's sums.
 */
import { gridPointFor } from "../model/calibration.ts";
import { type GuaranteePlan, keepToCalibratedRule, planGuarantee } from "./haltGuarantee.ts";
import type { HaltPolicy, TickLimits } from "./haltPolicy.ts";

export interface Rung {
  /** The target served at this rung: the request's own at rung 0, else a grid target; 0 without a target. */
  target: number;
  threshold: number;
  /** Rung 0: the request's own plan (if it set a target); below it, a certified plan for `target`. */
  guarantee: GuaranteePlan | undefined;
  /** Ticks the calibration set took at this threshold: the mean and the 90th percentile. */
  meanTicks: number;
  p90Ticks: number;
}

/** rungs[0] is the request as it asked; each later rung a lower target at a strictly lower threshold. */
export type TargetLadder = readonly Rung[];

/** The rungs of a resolved policy (see the file comment). */
export function targetLadder(policy: HaltPolicy, limits: TickLimits): TargetLadder {
  const top: Rung = {
    target: policy.targetAccuracy ?? policy.targetConsistency ?? 0,
    threshold: policy.threshold,
    guarantee: policy.guarantee,
    ...expectedTicks(policy, policy.threshold, limits),
  };
  const { guarantee, minTarget, targetConfidence } = policy;
  const calibration = limits.calibration;
  if (!guarantee || minTarget === undefined || targetConfidence === undefined || !calibration) return [top];
  const table = calibration.signals[policy.signal]?.guarantees[guarantee.kind];
  if (!table) return [top];
  // The confidence level the request's own plan was read at; lower targets are read at the same one.
  const level = (gridPointFor(table, guarantee.target, targetConfidence) ?? gridPointFor(table, 0, targetConfidence))
    ?.confidence;
  const below = table.certified
    .filter((p) => p.confidence === level && p.threshold !== null)
    .filter((p) => p.target < guarantee.target - 1e-12 && p.target >= minTarget - 1e-12)
    .sort((a, b) => b.target - a.target);
  const context = { model: limits.model, calibration, signal: policy.signal };
  const rungs: Rung[] = [top];
  for (const point of below) {
    const threshold = point.threshold as number;
    if (threshold >= (rungs.at(-1) as Rung).threshold) continue;
    const plan = keepToCalibratedRule(
      planGuarantee(guarantee.kind, point.target, targetConfidence, context),
      policy,
      calibration.ticks,
    );
    // Off the calibrated rule nothing below the request's own target is certified: it stays where it is.
    if (!plan.certified) return [top];
    rungs.push({ target: point.target, threshold, guarantee: plan, ...expectedTicks(policy, threshold, limits) });
  }
  return rungs;
}

/** Most distinct ladders a cache keeps before it starts afresh (clients choose the targets). */
const CACHED_LADDERS = 1024;

/**
 * One model's ladders, one object per distinct policy: the requests of a load mostly ask for the same
 * target and floor, and the load controller then sums over a few ladders, not over every request.
 */
export class LadderCache {
  private readonly ladders = new Map<string, TargetLadder>();

  constructor(private readonly limits: TickLimits) {}

  of(policy: HaltPolicy): TargetLadder {
    const { signal, threshold, targetAccuracy, targetConsistency, targetConfidence, minTarget } = policy;
    const key = [signal, threshold, targetAccuracy, targetConsistency, targetConfidence, minTarget]
      .concat([policy.minTicks, policy.maxTicks, policy.patience])
      .join(",");
    let ladder = this.ladders.get(key);
    if (!ladder) {
      if (this.ladders.size >= CACHED_LADDERS) this.ladders.clear();
      ladder = targetLadder(policy, this.limits);
      this.ladders.set(key, ladder);
    }
    return ladder;
  }
}

/**
 * The policy a request is served at on `rung` of its ladder: its own at rung 0; below, the rung's target,
 * threshold and guarantee, with what it asked for in `loweredFrom`.
 */
export function servedPolicy(policy: HaltPolicy, ladder: TargetLadder, rung: number): HaltPolicy {
  if (rung === 0) return policy;
  const served = ladder[rung];
  if (!served?.guarantee) throw new Error(`rung ${rung} of a ${ladder.length}-rung ladder. This is a bug.`);
  const target = served.guarantee.kind === "accuracy" ? "targetAccuracy" : "targetConsistency";
  return {
    ...policy,
    threshold: served.threshold,
    guarantee: served.guarantee,
    [target]: served.target,
    loweredFrom: { target: (ladder[0] as Rung).target, threshold: policy.threshold },
  };
}

/**
 * What a threshold costs, from the calibration of the policy's signal: the ticks at the smallest
 * calibrated threshold at or above it (never fewer than the threshold itself takes), within the
 * policy's own tick bounds. Without a calibration, every tick the policy allows.
 */
export function expectedTicks(
  policy: Pick<HaltPolicy, "signal" | "minTicks" | "maxTicks">,
  threshold: number,
  limits: Pick<TickLimits, "calibration">,
): { meanTicks: number; p90Ticks: number } {
  const points = limits.calibration?.signals[policy.signal]?.thresholds ?? [];
  const point = points.find((p) => p.threshold >= threshold - 1e-12);
  const within = (ticks: number) => Math.min(policy.maxTicks, Math.max(policy.minTicks, ticks));
  if (!point) return { meanTicks: policy.maxTicks, p90Ticks: policy.maxTicks };
  return { meanTicks: within(point.meanTicks), p90Ticks: within(point.p90Ticks) };
}
