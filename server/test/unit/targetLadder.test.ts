/**
 * The rungs a floor allows, on the shipped models' real calibrations: every rung below the request's own
 * is a certified grid point of the same kind, signal and confidence, at or above the floor, strictly
 * cheaper than the one above; a request without a floor, or off the calibrated rule, has one rung; and
 * the served policy states the rung's guarantee with what was asked.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import { REPO } from "../../../tools/harness/testServer.ts";
import { type HaltPolicyRequest, resolveHaltPolicy, signalsOf, type TickLimits } from "../../src/engine/haltPolicy.ts";
import { LadderCache, servedPolicy, targetLadder } from "../../src/engine/targetLadder.ts";
import { GUARANTEE_KINDS } from "../../src/model/calibration.ts";
import { loadModelFolder } from "../../src/model/modelFolder.ts";

function limitsOf(model: string): TickLimits {
  const { manifest, calibration } = loadModelFolder(join(REPO, "models", model, "1"));
  return {
    model: manifest.name,
    trainedTicks: manifest.ticks.trained,
    maxTicks: manifest.ticks.max,
    calibration,
    hasHaltSignal: manifest.outputs.halt !== undefined,
  };
}

const MODELS = ["mnist-ctm", "maze-ctm"].map(limitsOf);

/**
 * MNIST's highest accuracy target certified at 0.95 with a threshold above the lowest: a target whose
 * ladder has somewhere cheaper to go. Read from the calibration, since a better model moves it.
 */
const TOP = (() => {
  const [mnist] = MODELS as [TickLimits];
  const signal = signalsOf(mnist).at(-1) ?? "certainty";
  const points = mnist.calibration?.signals[signal]?.guarantees.accuracy?.certified ?? [];
  const usable = points.filter((p) => p.confidence === 0.95 && p.threshold !== null);
  const lowest = Math.min(...usable.map((p) => p.threshold as number));
  const top = Math.max(...usable.filter((p) => (p.threshold as number) > lowest).map((p) => p.target));
  assert.ok(Number.isFinite(top), "MNIST certifies an accuracy target above its cheapest threshold");
  return top;
})();
const GRID = [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.99];

describe("target ladders", () => {
  it("hold every rung to a certified, cheaper grid point at or above the floor (property, both models)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...MODELS),
        fc.constantFrom(...GUARANTEE_KINDS),
        fc.constantFrom(...GRID),
        fc.constantFrom(...GRID),
        fc.constantFrom(0.5, 0.8, 0.9, 0.95, 0.99),
        fc.boolean(),
        (limits, kind, target, floorPick, confidence, onHalt) => {
          const floor = Math.min(target, floorPick);
          const signal = onHalt && signalsOf(limits).includes("halt") ? "halt" : "certainty";
          const request: HaltPolicyRequest =
            kind === "accuracy"
              ? { targetAccuracy: target, minTargetAccuracy: floor, targetConfidence: confidence, haltSignal: signal }
              : {
                  targetConsistency: target,
                  minTargetConsistency: floor,
                  targetConfidence: confidence,
                  haltSignal: signal,
                };
          const policy = resolveHaltPolicy(request, limits);
          const ladder = targetLadder(policy, limits);
          const [top, ...below] = ladder;
          assert.ok(top);
          assert.equal(top.threshold, policy.threshold);
          assert.equal(top.target, target);
          const table = limits.calibration?.signals[signal]?.guarantees[kind];
          let above = top;
          for (const rung of below) {
            assert.ok(rung.target >= floor - 1e-12, `rung ${rung.target} below the floor ${floor}`);
            assert.ok(rung.target < above.target && rung.threshold < above.threshold, "each rung is lower and cheaper");
            assert.ok(rung.meanTicks <= above.meanTicks + 1e-9, "a lower threshold costs no more ticks");
            assert.equal(rung.guarantee?.certified, true);
            assert.equal(rung.guarantee?.target, rung.target);
            assert.equal(rung.guarantee?.signal, signal);
            const point = table?.certified.find(
              (p) =>
                p.target === rung.target &&
                p.threshold === rung.threshold &&
                p.confidence === rung.guarantee?.certifiedConfidence,
            );
            assert.ok(point, `${kind} ${rung.target} at ${rung.threshold} is a grid point of the table`);
            above = rung;
          }
          // Nothing certified and cheaper between the floor and the target was skipped.
          const level = top.guarantee?.certified ? top.guarantee.certifiedConfidence : undefined;
          if (level !== undefined) {
            const cheapest = Math.min(
              top.threshold,
              ...(table?.certified ?? [])
                .filter((p) => p.confidence === level && p.threshold !== null)
                .filter((p) => p.target >= floor - 1e-12 && p.target < target)
                .map((p) => p.threshold as number),
            );
            assert.equal(above.threshold, cheapest);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("has one rung without a floor, with the floor at the target, and off the calibrated rule", () => {
    const [mnist] = MODELS as [TickLimits];
    for (const request of [
      { targetAccuracy: TOP },
      { targetAccuracy: TOP, minTargetAccuracy: TOP },
      { targetAccuracy: TOP, minTargetAccuracy: 0.8, minTicks: 2 },
      { targetAccuracy: TOP, minTargetAccuracy: 0.8, patience: 3 },
      { certaintyThreshold: 0.9 },
    ] satisfies HaltPolicyRequest[]) {
      assert.equal(targetLadder(resolveHaltPolicy(request, mnist), mnist).length, 1, JSON.stringify(request));
    }
    assert.ok(
      targetLadder(resolveHaltPolicy({ targetAccuracy: TOP, minTargetAccuracy: 0.8 }, mnist), mnist).length > 1,
    );
  });

  it("gives requests with the same policy one ladder, and a different floor its own", () => {
    const [mnist] = MODELS as [TickLimits];
    const cache = new LadderCache(mnist);
    const policy = (floor: number) => resolveHaltPolicy({ targetAccuracy: TOP, minTargetAccuracy: floor }, mnist);
    assert.equal(cache.of(policy(0.8)), cache.of(policy(0.8)));
    assert.notEqual(cache.of(policy(0.8)), cache.of(policy(0.9)));
    assert.deepEqual(cache.of(policy(0.9)), targetLadder(policy(0.9), mnist));
  });

  it("serves a lower rung with its own guarantee, and what was asked in loweredFrom", () => {
    const [mnist] = MODELS as [TickLimits];
    const policy = resolveHaltPolicy({ targetAccuracy: TOP, minTargetAccuracy: 0.8 }, mnist);
    const ladder = targetLadder(policy, mnist);
    assert.equal(servedPolicy(policy, ladder, 0), policy);
    const last = ladder.length - 1;
    const served = servedPolicy(policy, ladder, last);
    assert.equal(served.threshold, ladder[last]?.threshold);
    assert.equal(served.targetAccuracy, ladder[last]?.target);
    assert.equal(served.guarantee, ladder[last]?.guarantee);
    assert.deepEqual(served.loweredFrom, { target: TOP, threshold: policy.threshold });
    assert.equal(served.minTarget, 0.8);
  });
});
