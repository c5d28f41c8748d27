import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as hdr from "hdr-histogram-js";
import type { CallOutcome, Sample } from "../../tools/harness/index.ts";
import { PointRecorder, tickSummary } from "../src/pointRecorder.ts";

const sample = (label: number[] | null): Sample => ({
  name: "s",
  input: { tensor: { shape: [1], values: [0] } },
  label,
});

const ok = (ticksUsed: number, prediction: number[], latencyMs = 10, haltReason = "THRESHOLD"): CallOutcome => ({
  ok: true,
  latencyMs,
  firstTickMs: latencyMs / 2,
  ticksUsed,
  haltReason,
  prediction,
});

describe("tickSummary", () => {
  it("summarises ticks", () => {
    assert.deepEqual(tickSummary([1, 0, 3]), { mean: 10 / 4, p50: 3, p90: 3, p99: 3, max: 3, histogram: [1, 0, 3] });
  });
});

describe("PointRecorder", () => {
  it("counts errors by status, halting reasons, ticks and accuracy, and keeps latency in an HDR histogram", () => {
    const recorder = new PointRecorder(
      { call: "stream", threshold: 0.9, load: { kind: "closed", concurrency: 2 } },
      4,
      null,
    );
    recorder.record(sample([3]), ok(2, [3], 10));
    recorder.record(sample([3]), ok(4, [5], 30, "MAX_TICKS"));
    recorder.record(sample(null), ok(1, [1], 20));
    recorder.record(sample([1]), { ok: false, latencyMs: 5, code: "RESOURCE_EXHAUSTED" });
    recorder.record(sample([1]), { ok: false, latencyMs: 5, code: "RESOURCE_EXHAUSTED" });
    recorder.record(sample([1]), { ok: false, latencyMs: 5, code: "DEADLINE_EXCEEDED" });
    const point = recorder.finish(2, null, 0.25);
    assert.equal(point.requests, 6);
    assert.equal(point.ok, 3);
    assert.deepEqual(point.errors, { RESOURCE_EXHAUSTED: 2, DEADLINE_EXCEEDED: 1 });
    assert.equal(point.throughputRps, 1.5);
    assert.equal(point.clientCpuCores, 0.25);
    assert.deepEqual(point.haltReasons, { THRESHOLD: 2, MAX_TICKS: 1 });
    assert.deepEqual(point.ticks.histogram, [1, 1, 0, 1]);
    assert.equal(point.ticks.mean, 7 / 3);
    assert.equal(point.labelled, 2, "the unlabelled answer does not count");
    assert.equal(point.correct, 1);
    assert.equal(point.accuracy, 0.5);
    assert.equal(point.latencyMs.count, 3, "errors stay out of the latency histogram");
    assert.ok(Math.abs(point.latencyMs.p50 - 20) < 0.05);
    assert.ok(Math.abs(point.latencyMs.max - 30) < 0.05);
    assert.ok(Math.abs(point.latencyMs.min - 10) < 0.05);
    assert.ok(point.latencyMs.p999 <= point.latencyMs.max);
    assert.equal(point.firstTickMs?.count, 3);
    const decoded = hdr.decodeFromCompressedBase64(point.latencyMs.hdr);
    assert.equal(decoded.totalCount, 3);
    assert.ok(Math.abs(decoded.maxValue / 1000 - 30) < 0.05);
  });

  it("grows the tick histogram when a server runs past the model's max ticks", () => {
    const recorder = new PointRecorder(
      { call: "unary", threshold: 1, load: { kind: "closed", concurrency: 1 } },
      2,
      null,
    );
    recorder.record(sample([0]), ok(5, [0]));
    const point = recorder.finish(1, null, 0);
    assert.deepEqual(point.ticks.histogram, [0, 0, 0, 0, 1]);
    assert.equal(point.firstTickMs, null, "unary calls have no first tick");
  });
});
