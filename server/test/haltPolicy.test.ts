import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { guaranteeOutcome } from "../src/engine/haltGuarantee.ts";
import {
  DEFAULT_CERTAINTY_THRESHOLD,
  type HaltPolicy,
  type HaltReason,
  HaltTracker,
  resolveHaltPolicy,
  type TickLimits,
} from "../src/engine/haltPolicy.ts";
import { ServerError } from "../src/engine/serverError.ts";
import type { Calibration } from "../src/model/calibration.ts";

const point = (threshold: number, accuracy: number) => ({
  threshold,
  accuracy,
  meanTicks: 10,
  p50Ticks: 10,
  p90Ticks: 20,
  p99Ticks: 30,
  reachedFraction: 0.9,
});
// Accuracy is deliberately not monotonic in the threshold (0.8 is worse than 0.7).
const calibration: Calibration = {
  schemaVersion: 1,
  file: "calibration.json",
  guarantees: {},
  split: "validation",
  count: 1000,
  ticks: 30,
  accuracyMostCertain: 0.97,
  accuracyLastTick: 0.96,
  thresholds: [point(0.5, 0.9), point(0.7, 0.95), point(0.8, 0.94), point(0.9, 0.97)],
};
const limits: TickLimits = { model: "m", trainedTicks: 30, maxTicks: 40, calibration };

function rejects(request: Parameters<typeof resolveHaltPolicy>[0], code: string, message: RegExp, at = limits) {
  assert.throws(
    () => resolveHaltPolicy(request, at),
    (error: unknown) => error instanceof ServerError && error.code === code && message.test(error.details),
    JSON.stringify(request),
  );
}

describe("resolveHaltPolicy", () => {
  it("fills in the defaults: threshold 0.9, min 1, the trained ticks, no patience, no deadline", () => {
    assert.deepEqual(resolveHaltPolicy({}, limits), {
      threshold: DEFAULT_CERTAINTY_THRESHOLD,
      minTicks: 1,
      maxTicks: 30,
      patience: 0,
      deadlineMs: 0,
    });
    assert.equal(resolveHaltPolicy({ maxTicks: 0, minTicks: 0 }, limits).maxTicks, 30);
  });

  it("accepts every bound's edge", () => {
    const policy = resolveHaltPolicy(
      { certaintyThreshold: 1, minTicks: 40, maxTicks: 40, patience: 40, deadlineMs: 5 },
      limits,
    );
    assert.deepEqual(policy, { threshold: 1, minTicks: 40, maxTicks: 40, patience: 40, deadlineMs: 5 });
  });

  it("rejects out-of-range values, naming the field, the bound and the value", () => {
    rejects(
      { certaintyThreshold: 1.5 },
      "INVALID_ARGUMENT",
      /^halt_policy\.certainty_threshold must be in \(0, 1\], got 1\.5$/,
    );
    rejects({ certaintyThreshold: 0 }, "INVALID_ARGUMENT", /certainty_threshold must be in \(0, 1\], got 0$/);
    rejects(
      { certaintyThreshold: Number.NaN },
      "INVALID_ARGUMENT",
      /certainty_threshold must be in \(0, 1\], got NaN$/,
    );
    rejects({ targetAccuracy: -0.1 }, "INVALID_ARGUMENT", /target_accuracy must be in \(0, 1\], got -0\.1$/);
    rejects({ maxTicks: 41 }, "INVALID_ARGUMENT", /max_ticks must be in \[1, 40\] for model m .*got 41$/);
    rejects({ minTicks: 31 }, "INVALID_ARGUMENT", /min_ticks must be in \[1, max_ticks = 30\], got 31$/);
    rejects({ minTicks: 11, maxTicks: 10 }, "INVALID_ARGUMENT", /min_ticks must be in \[1, max_ticks = 10\], got 11$/);
    rejects({ patience: 31 }, "INVALID_ARGUMENT", /patience must be in \[0, max_ticks = 30\], got 31$/);
    rejects({ minTicks: 2.5 }, "INVALID_ARGUMENT", /min_ticks must be a non-negative integer, got 2\.5$/);
    rejects(
      { certaintyThreshold: 0.9, targetAccuracy: 0.9 },
      "INVALID_ARGUMENT",
      /set at most one of halt_policy\.certainty_threshold .* and halt_policy\.target_accuracy/,
    );
  });

  it("says which bound limits max_ticks: the model's ticks.max or the server's --max-ticks", () => {
    const capped: TickLimits = { ...limits, maxTicks: 5, serverMaxTicks: 5 };
    rejects(
      { maxTicks: 6 },
      "INVALID_ARGUMENT",
      /^halt_policy\.max_ticks must be in \[1, 5\] .*server's --max-ticks 5.*got 6$/,
      capped,
    );
    // The default (the trained ticks) is capped too, and so are min_ticks and patience through it.
    assert.equal(resolveHaltPolicy({}, capped).maxTicks, 5);
    rejects({ minTicks: 6 }, "INVALID_ARGUMENT", /min_ticks must be in \[1, max_ticks = 5\], got 6$/, capped);
    const uncapped: TickLimits = { ...limits, serverMaxTicks: 0 };
    rejects(
      { maxTicks: 41 },
      "INVALID_ARGUMENT",
      /\[1, 40\] for model m \(the model's ticks\.max; 0 means 30\), got 41$/,
      uncapped,
    );
    rejects({ maxTicks: 41 }, "INVALID_ARGUMENT", /ticks\.max, or the server's --max-ticks if that is lower/);
  });

  it("without guarantees (schema_version 1) resolves a target accuracy by the old rule and certifies nothing", () => {
    assert.equal(resolveHaltPolicy({ targetAccuracy: 0.9 }, limits).threshold, 0.5);
    assert.equal(resolveHaltPolicy({ targetAccuracy: 0.94 }, limits).threshold, 0.7);
    assert.equal(resolveHaltPolicy({ targetAccuracy: 0.95 }, limits).threshold, 0.7);
    assert.equal(resolveHaltPolicy({ targetAccuracy: 0.96 }, limits).threshold, 0.9);
    const policy = resolveHaltPolicy({ targetAccuracy: 0.96 }, limits);
    assert.equal(policy.targetAccuracy, 0.96);
    assert.equal(policy.guarantee?.certified, false);
    assert.match(policy.guarantee?.note ?? "", /holds no guarantees \(schema_version 1\)/);
    // Out of reach: every tick, not a refusal.
    assert.equal(resolveHaltPolicy({ targetAccuracy: 0.98 }, limits).threshold, 1);
    rejects(
      { targetConsistency: 0.9 },
      "FAILED_PRECONDITION",
      /model m's calibration\.json holds no consistency guarantees/,
    );
    rejects({ targetAccuracy: 0.9 }, "FAILED_PRECONDITION", /model m has no calibration/, {
      ...limits,
      calibration: undefined,
    });
  });
});

// ---------------------------------------------------------------- guarantees (schema_version 2)
const grid = (kind: number[][]) =>
  kind.map(([target, confidence, threshold]) => ({
    target: target as number,
    confidence: confidence as number,
    threshold: threshold === 0 ? null : (threshold as number),
    riskBound: 0.01,
    meanTicks: 5,
  }));
const certifying: Calibration = {
  ...calibration,
  schemaVersion: 2,
  guarantees: {
    accuracy: {
      count: 1000,
      data: { kind: "labeled", split: "validation", count: 1000 },
      // (target, confidence, threshold; 0 = none)
      certified: grid([
        [0.9, 0.9, 0.5],
        [0.95, 0.9, 0.7],
        [0.97, 0.9, 0],
        [0.9, 0.95, 0.6],
        [0.95, 0.95, 0.9],
        [0.97, 0.95, 0],
      ]),
    },
    consistency: {
      count: 500,
      data: { kind: "unlabeled", dir: "traffic", sha256: "ab", date: "2026-12-01T00:00:00Z", count: 500 },
      certified: grid([
        [0.9, 0.95, 0.4],
        [0.99, 0.95, 0.8],
      ]),
    },
  },
};
const certifyingLimits: TickLimits = { ...limits, calibration: certifying };

describe("resolveHaltPolicy with guarantees", () => {
  it("serves a target from the grid point at or above it, in target and in confidence", () => {
    const at = (request: Parameters<typeof resolveHaltPolicy>[0]) => resolveHaltPolicy(request, certifyingLimits);
    assert.equal(at({ targetAccuracy: 0.9 }).threshold, 0.6); // default confidence 0.95
    assert.equal(at({ targetAccuracy: 0.9, targetConfidence: 0.9 }).threshold, 0.5);
    assert.equal(at({ targetAccuracy: 0.91, targetConfidence: 0.9 }).threshold, 0.7);
    assert.equal(at({ targetAccuracy: 0.9, targetConfidence: 0.91 }).threshold, 0.6);
    assert.equal(at({ targetAccuracy: 0.5, targetConfidence: 0.1 }).threshold, 0.5);
    const plan = at({ targetAccuracy: 0.93, targetConfidence: 0.92 }).guarantee;
    assert.deepEqual(plan, {
      kind: "accuracy",
      target: 0.93,
      confidence: 0.92,
      certified: true,
      threshold: 0.9,
      calibrationCount: 1000,
      riskBound: 0.01,
      certifiedTarget: 0.95,
      certifiedConfidence: 0.95,
      note: "",
    });
    const consistency = at({ targetConsistency: 0.95 });
    assert.equal(consistency.threshold, 0.8);
    assert.equal(consistency.targetConsistency, 0.95);
    assert.equal(consistency.guarantee?.calibrationCount, 500);
  });

  it("runs every tick and says so when nothing certifies the target", () => {
    for (const request of [{ targetAccuracy: 0.96 }, { targetAccuracy: 0.999, targetConfidence: 0.9 }]) {
      const policy = resolveHaltPolicy(request, certifyingLimits);
      assert.equal(policy.threshold, 1);
      assert.equal(policy.guarantee?.certified, false);
      assert.match(
        policy.guarantee?.note ?? "",
        /no threshold certifies halt_policy\.target_accuracy .* ran every tick/,
      );
    }
    assert.match(
      resolveHaltPolicy({ targetAccuracy: 0.96 }, certifyingLimits).guarantee?.note ?? "",
      /the highest certified at that confidence is 0\.95/,
    );
  });

  it("withdraws the guarantee when the request leaves the calibrated rule", () => {
    for (const extra of [{ maxTicks: 20 }, { minTicks: 2 }, { patience: 3 }]) {
      const plan = resolveHaltPolicy({ targetAccuracy: 0.9, ...extra }, certifyingLimits).guarantee;
      assert.equal(plan?.certified, false, JSON.stringify(extra));
      assert.match(plan?.note ?? "", /holds for the calibrated rule \(min_ticks 1, max_ticks 30, patience 0\)/);
    }
    assert.equal(resolveHaltPolicy({ targetAccuracy: 0.9, maxTicks: 30 }, certifyingLimits).guarantee?.certified, true);
  });

  it("rejects a confidence outside (0, the highest the calibration holds], naming field and bound", () => {
    const rejectsAt = (request: Parameters<typeof resolveHaltPolicy>[0], message: RegExp) =>
      rejects(request, "INVALID_ARGUMENT", message, certifyingLimits);
    rejectsAt(
      { targetAccuracy: 0.9, targetConfidence: 0.96 },
      /^halt_policy\.target_confidence must be in \(0, 0\.95\] for model m .*got 0\.96$/,
    );
    rejectsAt({ targetAccuracy: 0.9, targetConfidence: -1 }, /target_confidence must be in \(0, 0\.95\].*got -1$/);
    rejectsAt({ targetAccuracy: 0.9, targetConfidence: Number.NaN }, /target_confidence .*got NaN$/);
    rejectsAt({ targetConfidence: 0.9 }, /^halt_policy\.target_confidence \(0\.9\) applies only with/);
    rejectsAt(
      { certaintyThreshold: 0.5, targetAccuracy: 0.9, targetConsistency: 0.9 },
      /^set at most one of halt_policy\.certainty_threshold \(0\.5\), halt_policy\.target_accuracy \(0\.9\) and halt_policy\.target_consistency \(0\.9\)$/,
    );
    // Without guarantees the bound is (0, 1).
    rejects(
      { targetAccuracy: 0.9, targetConfidence: 1 },
      "INVALID_ARGUMENT",
      /target_confidence must be in \(0, 1\), got 1$/,
    );
  });

  it("reports a deadline halt as not meeting the guarantee", () => {
    const plan = resolveHaltPolicy({ targetAccuracy: 0.9 }, certifyingLimits).guarantee;
    assert.ok(plan);
    assert.equal(guaranteeOutcome(plan, "THRESHOLD").met, true);
    assert.equal(guaranteeOutcome(plan, "MAX_TICKS").met, true);
    assert.equal(guaranteeOutcome(plan, "DEADLINE").met, false);
  });
});

// ---------------------------------------------------------------- the tracker against a closed form
interface Outcome {
  reason: HaltReason;
  ticksUsed: number;
  answerTick: number;
}

/** The halting rule written over whole sequences rather than incrementally. */
function reference(certainty: number[], tops: string[], policy: HaltPolicy, deadlineTick: number): Outcome {
  const mostCertain = (t: number) => {
    const prefix = certainty.slice(0, t);
    return prefix.indexOf(Math.max(...prefix)) + 1;
  };
  for (let t = 1; ; t++) {
    const c = certainty[t - 1] as number;
    if (t >= policy.minTicks && c >= policy.threshold) return { reason: "THRESHOLD", ticksUsed: t, answerTick: t };
    const window = tops.slice(Math.max(0, t - policy.patience), t);
    const steady = policy.patience > 0 && t >= policy.patience && window.every((top) => top === tops[t - 1]);
    if (steady && t >= policy.minTicks) return { reason: "PATIENCE", ticksUsed: t, answerTick: mostCertain(t) };
    if (t === policy.maxTicks) return { reason: "MAX_TICKS", ticksUsed: t, answerTick: mostCertain(t) };
    if (t >= deadlineTick) return { reason: "DEADLINE", ticksUsed: t, answerTick: mostCertain(t) };
  }
}

function track(certainty: number[], tops: string[], policy: HaltPolicy, deadlineTick: number): Outcome {
  // Tick t happens at time t; the deadline is the time of tick `deadlineTick`.
  const tracker = new HaltTracker<number>(policy, deadlineTick);
  for (let t = 1; t <= certainty.length; t++) {
    const halt = tracker.observe(certainty[t - 1] as number, tops[t - 1] as string, t, t);
    if (halt) {
      assert.equal(halt.answer, halt.answerTick, "the payload returned is the answer tick's");
      assert.equal(halt.answerCertainty, certainty[halt.answerTick - 1]);
      return { reason: halt.reason, ticksUsed: halt.ticksUsed, answerTick: halt.answerTick };
    }
  }
  throw new Error("the tracker never halted");
}

describe("HaltTracker", () => {
  it("halts exactly as the whole-sequence rule says (property)", () => {
    const scenario = fc.integer({ min: 1, max: 12 }).chain((maxTicks) =>
      fc.record({
        // Few distinct values, so that ties and thresholds hit exactly are common.
        certainty: fc.array(fc.constantFrom(0, 0.25, 0.5, 0.75, 0.9, 1), { minLength: maxTicks, maxLength: maxTicks }),
        tops: fc.array(fc.constantFrom("a", "b"), { minLength: maxTicks, maxLength: maxTicks }),
        threshold: fc.constantFrom(0.25, 0.5, 0.9, 1),
        minTicks: fc.integer({ min: 1, max: maxTicks }),
        patience: fc.integer({ min: 0, max: maxTicks }),
        deadlineTick: fc.integer({ min: 1, max: maxTicks + 1 }),
        maxTicks: fc.constant(maxTicks),
      }),
    );
    fc.assert(
      fc.property(scenario, (s) => {
        const policy: HaltPolicy = {
          threshold: s.threshold,
          minTicks: s.minTicks,
          maxTicks: s.maxTicks,
          patience: s.patience,
          deadlineMs: 0,
        };
        assert.deepEqual(
          track(s.certainty, s.tops, policy, s.deadlineTick),
          reference(s.certainty, s.tops, policy, s.deadlineTick),
        );
      }),
      { numRuns: 2000 },
    );
  });

  it("answers with the earliest most certain tick when the threshold is never reached", () => {
    const policy: HaltPolicy = { threshold: 0.95, minTicks: 1, maxTicks: 5, patience: 0, deadlineMs: 0 };
    assert.deepEqual(track([0.2, 0.7, 0.4, 0.7, 0.1], ["a", "b", "a", "b", "a"], policy, Number.POSITIVE_INFINITY), {
      reason: "MAX_TICKS",
      ticksUsed: 5,
      answerTick: 2,
    });
  });

  it("ignores the threshold before min_ticks", () => {
    const policy: HaltPolicy = { threshold: 0.5, minTicks: 3, maxTicks: 5, patience: 0, deadlineMs: 0 };
    assert.deepEqual(track([0.9, 0.9, 0.6, 0.9, 0.9], ["a", "a", "a", "a", "a"], policy, Number.POSITIVE_INFINITY), {
      reason: "THRESHOLD",
      ticksUsed: 3,
      answerTick: 3,
    });
  });
});
