import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { guaranteeOutcome } from "../../src/engine/haltGuarantee.ts";
import {
  DEFAULT_CERTAINTY_THRESHOLD,
  DEFAULT_HALT_THRESHOLD,
  type HaltPolicy,
  type HaltReason,
  HaltTracker,
  resolveHaltPolicy,
  type TickLimits,
} from "../../src/engine/haltPolicy.ts";
import { ServerError } from "../../src/engine/serverError.ts";
import type { Calibration } from "../../src/model/calibration.ts";

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
  split: "validation",
  count: 1000,
  ticks: 30,
  accuracyMostCertain: 0.97,
  accuracyLastTick: 0.96,
  signals: {
    certainty: {
      accuracyFullRun: 0.97,
      thresholds: [point(0.5, 0.9), point(0.7, 0.95), point(0.8, 0.94), point(0.9, 0.97)],
      guarantees: {},
    },
  },
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
      signal: "certainty",
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
    assert.deepEqual(policy, {
      signal: "certainty",
      threshold: 1,
      minTicks: 40,
      maxTicks: 40,
      patience: 40,
      deadlineMs: 5,
    });
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
const certifyingCertainty = {
  ...calibration.signals.certainty,
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
const certifying: Calibration = { ...calibration, schemaVersion: 2, signals: { certainty: certifyingCertainty } };
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
      signal: "certainty",
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
        /no threshold on certainty certifies halt_policy\.target_accuracy .* ran every tick/,
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

// ---------------------------------------------------------------- the signal halted on (schema_version 3)
/** A model with a halting head whose calibration certifies on both signals, each at its own thresholds. */
const withHaltBlock: Calibration = {
  ...certifying,
  schemaVersion: 3,
  signals: {
    certainty: certifyingCertainty,
    halt: {
      accuracyFullRun: 0.96,
      thresholds: [point(0.9, 0.93), point(0.99, 0.96), point(0.999, 0.97)],
      guarantees: {
        accuracy: {
          count: 1000,
          data: { kind: "labeled", split: "validation", count: 1000 },
          certified: grid([
            [0.9, 0.95, 0.99],
            [0.95, 0.95, 0.999],
          ]),
        },
      },
    },
  },
};
const halting: TickLimits = { ...limits, calibration: withHaltBlock, hasHaltSignal: true };

describe("resolveHaltPolicy: which signal", () => {
  it("halts on certainty unless told otherwise, at the same default on every model", () => {
    for (const at of [limits, halting]) {
      const policy = resolveHaltPolicy({}, at);
      assert.equal(policy.signal, "certainty");
      assert.equal(policy.threshold, DEFAULT_CERTAINTY_THRESHOLD);
      assert.equal(resolveHaltPolicy({ certaintyThreshold: 0.7 }, at).signal, "certainty");
    }
  });

  it("takes the signal from the threshold given, or from halt_signal with the default threshold", () => {
    assert.deepEqual(
      [resolveHaltPolicy({ haltThreshold: 0.97 }, halting)].map((p) => [p.signal, p.threshold]),
      [["halt", 0.97]],
    );
    const named = resolveHaltPolicy({ haltSignal: "halt" }, halting);
    assert.deepEqual([named.signal, named.threshold], ["halt", DEFAULT_HALT_THRESHOLD]);
    const both = resolveHaltPolicy({ haltSignal: "halt", haltThreshold: 0.5 }, halting);
    assert.deepEqual([both.signal, both.threshold], ["halt", 0.5]);
    assert.equal(resolveHaltPolicy({ haltSignal: "certainty", certaintyThreshold: 0.5 }, halting).signal, "certainty");
  });

  it("certifies a target on the best signal the model has: halt when it has the head and a halt calibration", () => {
    const policy = resolveHaltPolicy({ targetAccuracy: 0.95 }, halting);
    assert.equal(policy.signal, "halt");
    assert.equal(policy.threshold, 0.999);
    assert.equal(policy.guarantee?.signal, "halt");
    assert.equal(policy.guarantee?.certified, true);
    // Named, certainty is certified on its own thresholds.
    const certainty = resolveHaltPolicy({ targetAccuracy: 0.95, haltSignal: "certainty" }, halting);
    assert.deepEqual(
      [certainty.signal, certainty.threshold, certainty.guarantee?.signal],
      ["certainty", 0.9, "certainty"],
    );
    // A head without a halt calibration (a schema 2 file) leaves certainty as the best signal.
    const uncalibrated: TickLimits = { ...certifyingLimits, hasHaltSignal: true };
    assert.equal(resolveHaltPolicy({ targetAccuracy: 0.95 }, uncalibrated).signal, "certainty");
    assert.equal(resolveHaltPolicy({ targetAccuracy: 0.95 }, certifyingLimits).signal, "certainty");
    // Not certified on halt: every tick, said so, and the note names the signal.
    const beyond = resolveHaltPolicy({ targetAccuracy: 0.97 }, halting).guarantee;
    assert.equal(beyond?.certified, false);
    assert.match(beyond?.note ?? "", /^no threshold on halt certifies halt_policy\.target_accuracy 0\.97/);
  });

  it("certifies a target on the signal the calibration names, chosen at export, when it names one", () => {
    const namesCertainty: TickLimits = { ...halting, calibration: { ...withHaltBlock, targetSignal: "certainty" } };
    const policy = resolveHaltPolicy({ targetAccuracy: 0.95 }, namesCertainty);
    assert.deepEqual([policy.signal, policy.threshold, policy.guarantee?.signal], ["certainty", 0.9, "certainty"]);
    assert.equal(resolveHaltPolicy({ targetAccuracy: 0.95, haltSignal: "halt" }, namesCertainty).signal, "halt");
    const namesHalt: TickLimits = { ...halting, calibration: { ...withHaltBlock, targetSignal: "halt" } };
    assert.equal(resolveHaltPolicy({ targetAccuracy: 0.95 }, namesHalt).signal, "halt");
    // Named halt on a model whose head is not served falls back to certainty.
    assert.equal(
      resolveHaltPolicy({ targetAccuracy: 0.95 }, { ...namesHalt, hasHaltSignal: false }).signal,
      "certainty",
    );
  });

  it("refuses the halt signal on a model without a halting head, naming the field", () => {
    for (const request of [{ haltSignal: "halt" as const }, { haltSignal: "halt" as const, targetAccuracy: 0.9 }]) {
      rejects(
        request,
        "INVALID_ARGUMENT",
        /^halt_policy\.halt_signal: model m has no halting head \(its manifest declares no outputs\.halt\), so it can halt on certainty only/,
      );
    }
    rejects({ haltThreshold: 0.9 }, "INVALID_ARGUMENT", /^halt_policy\.halt_threshold: model m has no halting head/);
  });

  it("refuses a target certified on halt when the calibration has no halt block", () => {
    rejects(
      { targetAccuracy: 0.9, haltSignal: "halt" },
      "FAILED_PRECONDITION",
      /model m's calibration\.json \(schema_version 2\) does not calibrate the halt signal, so halt_policy\.target_accuracy cannot be certified on halt_policy\.halt_signal halt; recalibrate/,
      { ...certifyingLimits, hasHaltSignal: true },
    );
  });

  it("refuses contradictions, naming both fields", () => {
    rejects(
      { haltSignal: "halt", certaintyThreshold: 0.9 },
      "INVALID_ARGUMENT",
      /^halt_policy\.certainty_threshold \(0\.9\) is a threshold on certainty, but halt_policy\.halt_signal is halt/,
      halting,
    );
    rejects(
      { haltSignal: "certainty", haltThreshold: 0.9 },
      "INVALID_ARGUMENT",
      /^halt_policy\.halt_threshold \(0\.9\) is a threshold on the halt signal, but halt_policy\.halt_signal is certainty/,
      halting,
    );
    rejects(
      { certaintyThreshold: 0.9, haltThreshold: 0.99 },
      "INVALID_ARGUMENT",
      /^set at most one of halt_policy\.certainty_threshold \(0\.9\) and halt_policy\.halt_threshold \(0\.99\)$/,
      halting,
    );
    rejects(
      { haltThreshold: 0.99, targetAccuracy: 0.9 },
      "INVALID_ARGUMENT",
      /^set at most one of halt_policy\.halt_threshold \(0\.99\) and halt_policy\.target_accuracy \(0\.9\)$/,
      halting,
    );
    rejects(
      { haltThreshold: 1.5 },
      "INVALID_ARGUMENT",
      /^halt_policy\.halt_threshold must be in \(0, 1\], got 1\.5$/,
      halting,
    );
  });
});

// ---------------------------------------------------------------- the tracker against a closed form
interface Outcome {
  reason: HaltReason;
  ticksUsed: number;
  answerTick: number;
}

/** One tick's two signals, as a model with a halting head gives them. */
interface Signals {
  certainty: number;
  halt: number;
}

/** The halting rule written over whole sequences rather than incrementally. */
function reference(signals: Signals[], tops: string[], policy: HaltPolicy, deadlineTick: number): Outcome {
  const values = signals.map((s) => s[policy.signal]);
  // The earliest tick with the highest signal so far (indexOf finds the first).
  const mostCertain = (t: number) => {
    const prefix = values.slice(0, t);
    return prefix.indexOf(Math.max(...prefix)) + 1;
  };
  for (let t = 1; ; t++) {
    const c = values[t - 1] as number;
    if (t >= policy.minTicks && c >= policy.threshold) return { reason: "THRESHOLD", ticksUsed: t, answerTick: t };
    const window = tops.slice(Math.max(0, t - policy.patience), t);
    const steady = policy.patience > 0 && t >= policy.patience && window.every((top) => top === tops[t - 1]);
    if (steady && t >= policy.minTicks) return { reason: "PATIENCE", ticksUsed: t, answerTick: mostCertain(t) };
    if (t === policy.maxTicks) return { reason: "MAX_TICKS", ticksUsed: t, answerTick: mostCertain(t) };
    if (t >= deadlineTick) return { reason: "DEADLINE", ticksUsed: t, answerTick: mostCertain(t) };
  }
}

function track(signals: Signals[], tops: string[], policy: HaltPolicy, deadlineTick: number): Outcome {
  // Tick t happens at time t; the deadline is the time of tick `deadlineTick`.
  const tracker = new HaltTracker<number>(policy, deadlineTick);
  for (let t = 1; t <= signals.length; t++) {
    const halt = tracker.observe(signals[t - 1] as Signals, tops[t - 1] as string, t, t);
    if (halt) {
      assert.equal(halt.answer.payload, halt.answerTick, "the payload returned is the answer tick's");
      assert.deepEqual({ ...halt.answer, payload: undefined }, { ...signals[halt.answerTick - 1], payload: undefined });
      return { reason: halt.reason, ticksUsed: halt.ticksUsed, answerTick: halt.answerTick };
    }
  }
  throw new Error("the tracker never halted");
}

/** Ticks with only a certainty (a model without a halting head) whose halt signal is unused. */
const onCertainty = (certainty: number[]): Signals[] => certainty.map((c) => ({ certainty: c, halt: 0 }));

describe("HaltTracker", () => {
  it("halts exactly as the whole-sequence rule says (property)", () => {
    const scenario = fc.integer({ min: 1, max: 12 }).chain((maxTicks) =>
      fc.record({
        // Few distinct values, so that ties and thresholds hit exactly are common. The two signals are
        // drawn apart, so that halting or answering on the wrong one is caught.
        signals: fc.array(
          fc.record({
            certainty: fc.constantFrom(0, 0.25, 0.5, 0.75, 0.9, 1),
            halt: fc.constantFrom(0, 0.25, 0.5, 0.75, 0.9, 1),
          }),
          { minLength: maxTicks, maxLength: maxTicks },
        ),
        signal: fc.constantFrom("certainty" as const, "halt" as const),
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
          signal: s.signal,
          threshold: s.threshold,
          minTicks: s.minTicks,
          maxTicks: s.maxTicks,
          patience: s.patience,
          deadlineMs: 0,
        };
        assert.deepEqual(
          track(s.signals, s.tops, policy, s.deadlineTick),
          reference(s.signals, s.tops, policy, s.deadlineTick),
        );
      }),
      { numRuns: 2000 },
    );
  });

  it("answers with the earliest most certain tick when the threshold is never reached", () => {
    const policy: HaltPolicy = {
      signal: "certainty",
      threshold: 0.95,
      minTicks: 1,
      maxTicks: 5,
      patience: 0,
      deadlineMs: 0,
    };
    const certainty = onCertainty([0.2, 0.7, 0.4, 0.7, 0.1]);
    assert.deepEqual(track(certainty, ["a", "b", "a", "b", "a"], policy, Number.POSITIVE_INFINITY), {
      reason: "MAX_TICKS",
      ticksUsed: 5,
      answerTick: 2,
    });
  });

  it("answers with the earliest tick of the highest halt signal when it halts on halt", () => {
    const policy: HaltPolicy = {
      signal: "halt",
      threshold: 0.95,
      minTicks: 1,
      maxTicks: 4,
      patience: 0,
      deadlineMs: 0,
    };
    // Certainty peaks at tick 4 and would answer there; the halt signal peaks (first) at tick 2.
    const ticks = [
      { certainty: 0.1, halt: 0.3 },
      { certainty: 0.2, halt: 0.8 },
      { certainty: 0.3, halt: 0.8 },
      { certainty: 0.99, halt: 0.5 },
    ];
    assert.deepEqual(track(ticks, ["a", "b", "c", "d"], policy, Number.POSITIVE_INFINITY), {
      reason: "MAX_TICKS",
      ticksUsed: 4,
      answerTick: 2,
    });
    // And halts at the first tick whose halt signal reaches the threshold, whatever certainty says.
    assert.deepEqual(track(ticks, ["a", "b", "c", "d"], { ...policy, threshold: 0.8 }, Number.POSITIVE_INFINITY), {
      reason: "THRESHOLD",
      ticksUsed: 2,
      answerTick: 2,
    });
  });

  it("ignores the threshold before min_ticks", () => {
    const policy: HaltPolicy = {
      signal: "certainty",
      threshold: 0.5,
      minTicks: 3,
      maxTicks: 5,
      patience: 0,
      deadlineMs: 0,
    };
    const certainty = onCertainty([0.9, 0.9, 0.6, 0.9, 0.9]);
    assert.deepEqual(track(certainty, ["a", "a", "a", "a", "a"], policy, Number.POSITIVE_INFINITY), {
      reason: "THRESHOLD",
      ticksUsed: 3,
      answerTick: 3,
    });
  });
});
