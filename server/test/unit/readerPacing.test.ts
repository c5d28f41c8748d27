/**
 * The pacing rule both threads apply to a request paced by its reader (readerPacing.ts): the main
 * thread to the ticks it pushed, the worker to the ticks it computed. Its boundaries are what keep a
 * stream whose client stopped reading out of the tick runs, and a reader that keeps up in them.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { READ_AHEAD_TICKS, waitsForReader } from "../../src/engine/readerPacing.ts";

describe("waitsForReader", () => {
  it("parks a paced request once it is READ_AHEAD_TICKS past its reader, and not a tick sooner", () => {
    assert.equal(READ_AHEAD_TICKS, 4, "docs/server.md says a stream is computed at most 4 ticks ahead");
    // The reader has taken tick 10.
    assert.equal(waitsForReader(10, 10, READ_AHEAD_TICKS), false, "caught up");
    assert.equal(waitsForReader(13, 10, READ_AHEAD_TICKS), false, "three ahead: still runs");
    assert.equal(waitsForReader(14, 10, READ_AHEAD_TICKS), true, "four ahead: parked");
    assert.equal(waitsForReader(15, 10, READ_AHEAD_TICKS), true, "further ahead (ticks in flight): still parked");
    // A new request: nothing computed, nothing taken.
    assert.equal(waitsForReader(0, 0, READ_AHEAD_TICKS), false);
  });

  it("resumes it as soon as its reader takes one tick", () => {
    assert.equal(waitsForReader(14, 10, READ_AHEAD_TICKS), true);
    assert.equal(waitsForReader(14, 11, READ_AHEAD_TICKS), false);
  });

  it("never parks a reader that takes each tick as it comes", () => {
    for (let tick = 1; tick <= 100; tick++) assert.equal(waitsForReader(tick, tick - 1, READ_AHEAD_TICKS), false);
  });

  it("never parks a request that is not paced (readAhead 0), however far ahead", () => {
    assert.equal(waitsForReader(0, 0, 0), false);
    assert.equal(waitsForReader(1000, 0, 0), false);
  });

  it("honours another read-ahead the same way (the worker takes it from the admit message)", () => {
    assert.equal(waitsForReader(1, 0, 1), true, "read-ahead 1: parked after every tick until credited");
    assert.equal(waitsForReader(1, 1, 1), false);
  });
});
