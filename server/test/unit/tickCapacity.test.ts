/**
 * The capacity the load controller plans with, from tick runs: a size's first run (onnxruntime planning
 * memory for a new shape) and a preempted outlier do not decide its cost, sizes never run are read from
 * the line through the others, old runs stop counting, and "now" needs enough runs to speak.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RECENT_MS, TickCapacity } from "../../src/engine/tickCapacity.ts";

const run = (batchSize: number, tickMs: number, joined = 0, encodeMs = 0) => ({
  batchSize,
  joined,
  encodeMs,
  tickMs,
  stepMs: tickMs + encodeMs,
});

describe("tick capacity", () => {
  it("skips a size's first run and reads a size by the median of its runs", () => {
    const capacity = new TickCapacity();
    capacity.observe(run(8, 50), 0);
    assert.equal(capacity.stepMs(8), 0, "the first run at a size is not its cost");
    for (const ms of [2, 2.1, 1.9, 40, 2]) capacity.observe(run(8, ms), 1);
    assert.equal(capacity.stepMs(8), 2, "a preempted run does not move the median");
    assert.equal(capacity.ticksPerSecond(8), 4000);
  });

  it("reads sizes never run from the line through the measured ones, never below the largest's step beyond it", () => {
    const capacity = new TickCapacity();
    for (const [size, ms] of [
      [1, 0.5],
      [16, 2],
    ] as const) {
      for (let i = 0; i < 5; i++) capacity.observe(run(size, ms), i);
    }
    const line = capacity.line();
    assert.ok(line);
    assert.ok(Math.abs(line.perRow - 0.1) < 1e-9 && Math.abs(line.fixed - 0.4) < 1e-9, JSON.stringify(line));
    assert.ok(Math.abs(capacity.stepMs(8) - 1.2) < 1e-9);
    assert.ok(Math.abs(capacity.stepMs(64) - 6.8) < 1e-9);
  });

  it("forgets runs ten seconds older than the latest, so that the table follows a busier machine", () => {
    const capacity = new TickCapacity();
    for (let i = 0; i < 5; i++) capacity.observe(run(8, 1), 0);
    for (let i = 0; i < 5; i++) capacity.observe(run(16, 4), 20_000);
    assert.equal(capacity.stepMs(16), 4);
    // Size 8's runs are too old to count: it is read from what is left (16 alone, per row).
    assert.equal(capacity.stepMs(8), 4);
  });

  it("says what the workers cost now only from enough runs in the last second", () => {
    const capacity = new TickCapacity();
    for (let i = 0; i < 10; i++) capacity.observe(run(4, 8), 0);
    assert.equal(capacity.recent(10), undefined, "ten cold runs do not speak for the machine");
    for (let i = 0; i < 10; i++) capacity.observe(run(4, 2, 2, 1), 10);
    const recent = capacity.recent(20);
    assert.ok(recent);
    assert.equal(recent.batch, 4);
    assert.equal(recent.rowTickMs, (10 * 8 + 10 * 2) / 80);
    assert.equal(recent.encodeRowMs, 0.5);
    assert.equal(capacity.recent(10 + RECENT_MS + 1), undefined, "and they age out");
  });
});
