/**
 * The load controller's decisions on the maze model's real ladders, with its clock and its view of the
 * engine in the test's hands (the server-level behaviour is targetLowering.test.ts's): the lowering
 * deepens with the queue and not before it is needed, holds before it comes back up and does not flap
 * between the two margins, refuses only a request that would wait and would not fit even at the floors,
 * and a near deadline_ms lowers a request at dispatch even with the objective off.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { REPO } from "../../../tools/harness/testServer.ts";
import { bestSignal, resolveHaltPolicy, type TickLimits } from "../../src/engine/haltPolicy.ts";
import { HOLD_MS, LoadController, type LoadItem, type LoadView } from "../../src/engine/loadController.ts";
import { type TargetLadder, targetLadder } from "../../src/engine/targetLadder.ts";
import { TickCapacity } from "../../src/engine/tickCapacity.ts";
import { loadModelFolder } from "../../src/model/modelFolder.ts";

const { manifest, calibration } = loadModelFolder(join(REPO, "models", "maze-ctm", "1"));
const limits: TickLimits = {
  model: manifest.name,
  trainedTicks: manifest.ticks.trained,
  maxTicks: manifest.ticks.max,
  calibration,
  hasHaltSignal: manifest.outputs.halt !== undefined,
};
/**
 * The highest accuracy target the maze model certifies at confidence 0.95 on its default signal, read
 * from the calibration (a retrained model moves it): the longest ladder a floor of 0.5 gives.
 */
const TARGET = Math.max(
  ...(calibration?.signals[bestSignal(limits)]?.guarantees.accuracy?.certified ?? [])
    .filter((p) => p.confidence === 0.95 && p.threshold !== null)
    .map((p) => p.target),
);
assert.ok(Number.isFinite(TARGET), "the maze model's calibration certifies an accuracy target at 0.95");
const ladderOf = (floor?: number): TargetLadder =>
  targetLadder(
    resolveHaltPolicy({ targetAccuracy: TARGET, ...(floor !== undefined && { minTargetAccuracy: floor }) }, limits),
    limits,
  );
const FLEXIBLE = ladderOf(0.5);
/** The cheapest rung at or above the floor. */
const DEEPEST = (FLEXIBLE.at(-1) as { target: number }).target;
const FIXED = ladderOf();
const MAX_BATCH = 8;

/**
 * A worker that takes 2 ms per tick boundary at 8 rows, 0.5 ms at 1, and 0.3 ms per row to encode,
 * reporting runs of both sizes at `at`.
 */
function work(capacity: TickCapacity, at: number): void {
  // The first run at a batch size is not counted in the table (onnxruntime plans memory for the shape).
  for (let i = 0; i < 4; i++) {
    capacity.observe({ batchSize: 1, joined: 0, encodeMs: 0, tickMs: 0.5, stepMs: 0.5 }, at);
    capacity.observe({ batchSize: MAX_BATCH, joined: 0, encodeMs: 0, tickMs: 2, stepMs: 2 }, at);
    capacity.observe({ batchSize: 0, joined: 8, encodeMs: 2.4, tickMs: 0, stepMs: 2.4 }, at);
  }
}

function harness(objectiveMs: number) {
  let clock = 1000;
  const view: LoadView = { queued: [], preparing: 0, active: 0, workers: 1, maxBatch: MAX_BATCH };
  const changes: number[] = [];
  const capacity = new TickCapacity();
  work(capacity, clock);
  const controller = new LoadController(
    objectiveMs,
    capacity,
    () => view,
    (state) => changes.push(state.lowering),
    () => clock,
  );
  const queue = (n: number, ladder = FLEXIBLE) => {
    view.active = MAX_BATCH;
    view.queued = Array.from({ length: n }, (): LoadItem => ({ ladder, deadlineAt: Number.POSITIVE_INFINITY }));
  };
  const idle = () => {
    view.active = 0;
    view.queued = [];
  };
  const dispatch = (item: LoadItem = { ladder: FLEXIBLE, deadlineAt: Number.POSITIVE_INFINITY }) => {
    const rung = controller.rungFor(item);
    return item.ladder[rung]?.target as number;
  };
  /** Time passes; while requests are in, the worker keeps reporting runs. */
  const later = (ms: number) => {
    clock += ms;
    if (view.active > 0) work(capacity, clock);
  };
  return { controller, view, changes, queue, idle, dispatch, later };
}

describe("the load controller", () => {
  it("lowers nothing and refuses nothing with the objective off", () => {
    const h = harness(0);
    h.queue(500);
    assert.equal(h.controller.admit(FLEXIBLE).refusedMs, undefined);
    assert.equal(h.dispatch(), TARGET);
    assert.equal(h.controller.lowering, 0);
  });

  it("deepens with the queue, and not before a queue needs it", () => {
    const h = harness(200);
    h.idle();
    assert.equal(h.dispatch(), TARGET, "alone, a full-depth run fits the objective");
    const served: number[] = [];
    for (const n of [0, 10, 40, 80, 160, 320]) {
      h.queue(n);
      h.later(10);
      served.push(h.dispatch());
    }
    for (let i = 1; i < served.length; i++) {
      assert.ok((served[i] as number) <= (served[i - 1] as number), `served ${served}`);
    }
    assert.equal(served[0], TARGET, "a full batch with nothing queued is not lowered");
    assert.ok(new Set(served).size > 2, `the lowering deepens step by step: ${served}`);
    assert.equal(served.at(-1), DEEPEST, "and a queue no lowering fits goes to the deepest rung above the floor");
    // A request without a floor starts at its own target whatever the lowering.
    assert.equal(h.dispatch({ ladder: FIXED, deadlineAt: Number.POSITIVE_INFINITY }), TARGET);
  });

  it("holds a lowering for HOLD_MS before it comes back up, and does not flap between the margins", () => {
    const h = harness(200);
    h.queue(160);
    h.later(10);
    const deep = h.dispatch();
    assert.ok(deep < TARGET);
    const lowering = h.controller.lowering;
    // The queue is gone at once, but the lowering holds.
    h.idle();
    h.later(HOLD_MS / 2);
    assert.equal(h.dispatch(), deep);
    assert.equal(h.controller.lowering, lowering);
    // After the hold (and the arrival window), it comes back up, and says so once.
    h.later(HOLD_MS);
    assert.equal(h.dispatch(), TARGET);
    assert.equal(h.controller.lowering, 0);
    assert.deepEqual(h.changes, [lowering, 0]);

    // A queue that needs a lowering to fit 80% of the objective, but that the next level up would not
    // fit in 50%: the lowering stays where it is, however long that lasts.
    const levels = new Set<number>();
    for (let n = 20; n <= 200 && levels.size === 0; n += 10) {
      const probe = harness(200);
      probe.queue(n);
      probe.later(10);
      probe.dispatch();
      if (probe.controller.lowering > 0) levels.add(n);
    }
    const [n] = [...levels];
    assert.ok(n !== undefined, "some queue length lowers");
    const steady = harness(200);
    steady.queue(n);
    steady.later(10);
    steady.dispatch();
    const held = steady.controller.lowering;
    for (let i = 0; i < 20; i++) {
      steady.later(HOLD_MS / 2);
      steady.dispatch();
    }
    assert.equal(steady.controller.lowering, held);
    assert.deepEqual(steady.changes, [held]);
  });

  it("refuses only a request that would wait and would not be answered in time even at the floors", () => {
    const h = harness(200);
    h.idle();
    // A run longer than the objective, on an idle server: refusing it would not answer it sooner.
    const tight = harness(1);
    tight.idle();
    assert.equal(tight.controller.admit(FIXED).refusedMs, undefined);
    assert.equal(h.controller.admit(FLEXIBLE).refusedMs, undefined);
    h.queue(40);
    assert.equal(h.controller.admit(FLEXIBLE).refusedMs, undefined, "40 queued fit at the floors");
    h.queue(2000);
    const predicted = h.controller.admit(FLEXIBLE).refusedMs;
    assert.ok(predicted !== undefined && predicted > 200, `refused, predicted ${predicted} ms`);
    // Before any tick run is measured nothing is predicted, so nothing is refused.
    const cold = new LoadController(
      200,
      new TickCapacity(),
      () => ({ queued: h.view.queued, preparing: 0, active: MAX_BATCH, workers: 1, maxBatch: MAX_BATCH }),
      () => {},
      () => 0,
    );
    assert.equal(cold.admit(FLEXIBLE).refusedMs, undefined);
  });

  it("learns from the waits that came: a queue that drains faster than predicted refuses less", () => {
    const refusedAt = (learn: (h: ReturnType<typeof harness>) => void) => {
      const h = harness(200);
      learn(h);
      for (let n = 50; n <= 5000; n += 50) {
        h.queue(n);
        if (h.controller.admit(FLEXIBLE).refusedMs !== undefined) return n;
      }
      return Number.POSITIVE_INFINITY;
    };
    const untaught = refusedAt(() => {});
    const taught = refusedAt((h) => {
      // Requests predicted to wait are dispatched after a fifth of their predicted wait, many times.
      for (let i = 0; i < 100; i++) {
        h.queue(400);
        const admission = h.controller.admit(FLEXIBLE);
        assert.ok(admission.predictedWaitMs >= 10, `predicted ${admission.predictedWaitMs} ms`);
        h.later(admission.predictedWaitMs / 5);
        h.dispatch({ ladder: FLEXIBLE, deadlineAt: Number.POSITIVE_INFINITY, admission });
      }
    });
    assert.ok(taught > untaught, `refused from ${taught} queued once taught, ${untaught} before`);
  });

  it("lowers a request whose deadline_ms is near, at dispatch, even with the objective off", () => {
    const h = harness(0);
    h.idle();
    const far = { ladder: FLEXIBLE, deadlineAt: Date.now() + 10_000 };
    assert.equal(h.dispatch(far), TARGET);
    // 30 ticks at 0.5 ms do not fit in 80% of 10 ms; the floor's few ticks do.
    const near = { ladder: FLEXIBLE, deadlineAt: Date.now() + 10 };
    const served = h.dispatch(near);
    assert.ok(served < TARGET && served >= DEEPEST, `served at ${served}`);
    const rung = FLEXIBLE.find((r) => r.target === served);
    assert.ok(rung && rung.p90Ticks * 0.5 + 0.3 <= 10 * 0.8);
    assert.equal(h.dispatch({ ladder: FIXED, deadlineAt: Date.now() + 10 }), TARGET, "no floor, no lowering");
  });
});
