import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compareResults, comparisonCsv, comparisonTable } from "../src/compareResults.ts";
import type { LoadtestResult, PointResult } from "../src/loadtestResult.ts";

const latency = (p50: number) => ({
  count: 10,
  mean: p50,
  min: p50,
  p50,
  p90: p50,
  p99: p50 * 2,
  p999: p50 * 2,
  max: p50 * 3,
  hdr: "",
});

function point(concurrency: number, threshold: number, p50: number, accuracy: number): PointResult {
  return {
    call: "unary",
    threshold,
    load: { kind: "closed", concurrency },
    requests: 10,
    ok: 10,
    errors: {},
    elapsedS: 1,
    throughputRps: 1000 / p50,
    clientCpuCores: 0.1,
    offeredRps: null,
    latencyMs: latency(p50),
    firstTickMs: null,
    ticks: { mean: 5, p50: 5, p90: 6, p99: 7, max: 7, histogram: [0, 0, 0, 0, 10] },
    haltReasons: { THRESHOLD: 10 },
    accuracy,
    correct: accuracy * 10,
    labelled: 10,
    calibration: null,
  };
}

function result(points: PointResult[], cpus = 2): LoadtestResult {
  return {
    schema: "ctm-loadtest/1",
    startedAt: "2026-01-01T00:00:00.000Z",
    finishedAt: "2026-01-01T00:01:00.000Z",
    interrupted: false,
    command: [],
    environment: {
      node: "v20",
      platform: "linux",
      arch: "x64",
      cpus,
      cpuModel: "cpu",
      loadAverage: { start: [0, 0, 0], end: [0, 0, 0] },
    },
    target: { address: "a", tls: false, token: false, connections: 1 },
    model: { name: "m", version: 1, provider: "cpu", trainedTicks: 10, maxTicks: 10 },
    samples: { source: "s", count: 10, labelled: 10 },
    settings: {
      calls: ["unary"],
      thresholds: [0.9],
      loads: [],
      budget: { kind: "duration", seconds: 1 },
      warmup: null,
      timeoutMs: 1000,
      seed: 1,
    },
    points,
  };
}

describe("compare mode", () => {
  const before = result([point(1, 0.9, 10, 0.9), point(4, 0.9, 20, 0.9)]);
  const after = result([point(1, 0.9, 5, 0.95), point(8, 0.9, 30, 0.9)], 4);

  it("matches points on call, load and threshold and keeps the unmatched ones", () => {
    const rows = compareResults(before, after);
    assert.deepEqual(
      rows.map((r) => [r.key, r.before !== null, r.after !== null]),
      [
        ["unary c=1 t=0.9", true, true],
        ["unary c=4 t=0.9", true, false],
        ["unary c=8 t=0.9", false, true],
      ],
    );
  });

  it("shows relative changes for latency and throughput, points for accuracy, and warns about other machines", () => {
    const table = comparisonTable(before, after, ["a.json", "b.json"]);
    const line = table.split("\n").find((l) => l.startsWith("unary c=1 t=0.9")) ?? "";
    assert.match(line, /100\.0 -> 200\.0 \(\+100\.0%\)/, "answers/s");
    assert.match(line, /10\.00 -> 5\.00 \(-50\.0%\)/, "p50");
    assert.match(line, /90\.0 -> 95\.0 \(\+5\.0\)/, "accuracy in points");
    assert.match(table, /unary c=4 t=0\.9 \(only before\)/);
    assert.match(table, /unary c=8 t=0\.9 \(only after\)/);
    assert.match(table, /warning: different machines: 2 vs 4 CPUs/);
  });

  it("writes both sides of every metric as CSV", () => {
    const [header, first] = comparisonCsv(before, after).trim().split("\n");
    assert.ok(header?.startsWith("point,answers_s_before,answers_s_after,p50_ms_before,p50_ms_after"));
    assert.ok(first?.startsWith("unary c=1 t=0.9,100,200,10,5"));
  });
});
