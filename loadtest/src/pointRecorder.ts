/**
 * Accumulates the outcomes of one point into its PointResult: HDR latency histograms, errors by
 * status, the exit-tick distribution, halting reasons and accuracy against the labels.
 */
import * as hdr from "hdr-histogram-js";
import type { CallOutcome, Sample } from "../../tools/harness/index.ts";
import { latencyHistogram, msAtPercentile } from "../../tools/harness/latencyHistogram.ts";
import { correctFraction, percentileOfCounts } from "../../tools/harness/statistics.ts";
import type { CalibrationReference, LatencySummary, PointResult, TickSummary } from "./loadtestResult.ts";
import type { PointSpec } from "./sweepPlan.ts";

function summarise(histogram: hdr.Histogram): LatencySummary {
  const ms = (us: number) => us / 1000;
  const empty = histogram.totalCount === 0;
  const at = (percentile: number) => msAtPercentile(histogram, percentile);
  return {
    count: histogram.totalCount,
    mean: empty ? 0 : ms(histogram.mean),
    min: empty ? 0 : ms(histogram.minNonZeroValue),
    p50: at(50),
    p90: at(90),
    p99: at(99),
    p999: at(99.9),
    max: ms(histogram.maxValue),
    hdr: hdr.encodeIntoCompressedBase64(histogram),
  };
}

export function tickSummary(counts: readonly number[]): TickSummary {
  const total = counts.reduce((a, b) => a + b, 0);
  const sum = counts.reduce((acc, n, i) => acc + n * (i + 1), 0);
  let max = 0;
  counts.forEach((n, i) => {
    if (n > 0) max = i + 1;
  });
  return {
    mean: total === 0 ? 0 : sum / total,
    p50: percentileOfCounts(counts, 50),
    p90: percentileOfCounts(counts, 90),
    p99: percentileOfCounts(counts, 99),
    max,
    histogram: [...counts],
  };
}

export class PointRecorder {
  private readonly latency = latencyHistogram();
  private readonly firstTick = latencyHistogram();
  private readonly tickCounts: number[];
  private readonly errors: Record<string, number> = {};
  private readonly haltReasons: Record<string, number> = {};
  private ok = 0;
  private correct = 0;
  private labelled = 0;

  constructor(
    private readonly spec: PointSpec,
    maxTicks: number,
    private readonly calibration: CalibrationReference | null,
  ) {
    this.tickCounts = new Array<number>(maxTicks).fill(0);
  }

  get requests(): number {
    return this.ok + Object.values(this.errors).reduce((a, b) => a + b, 0);
  }

  /** Median latency so far, for the progress line. */
  get p50Ms(): number {
    return this.latency.getValueAtPercentile(50) / 1000;
  }

  record(sample: Sample, outcome: CallOutcome): void {
    if (!outcome.ok) {
      this.errors[outcome.code] = (this.errors[outcome.code] ?? 0) + 1;
      return;
    }
    this.ok++;
    this.latency.recordValue(Math.max(1, Math.round(outcome.latencyMs * 1000)));
    if (outcome.firstTickMs !== null) this.firstTick.recordValue(Math.max(1, Math.round(outcome.firstTickMs * 1000)));
    // A server that ran past the model's max ticks is a finding, not a crash: grow the histogram.
    while (this.tickCounts.length < outcome.ticksUsed) this.tickCounts.push(0);
    this.tickCounts[outcome.ticksUsed - 1] = (this.tickCounts[outcome.ticksUsed - 1] ?? 0) + 1;
    this.haltReasons[outcome.haltReason] = (this.haltReasons[outcome.haltReason] ?? 0) + 1;
    if (sample.label !== null) {
      this.labelled++;
      this.correct += correctFraction(sample.label, outcome.prediction);
    }
  }

  finish(elapsedS: number, offeredRps: number | null, clientCpuCores: number): PointResult {
    return {
      call: this.spec.call,
      signal: this.spec.signal ?? "certainty",
      threshold: this.spec.threshold,
      ...(this.spec.target && { target: this.spec.target }),
      load: this.spec.load,
      requests: this.requests,
      ok: this.ok,
      errors: { ...this.errors },
      elapsedS,
      throughputRps: elapsedS > 0 ? this.ok / elapsedS : 0,
      clientCpuCores,
      offeredRps,
      latencyMs: summarise(this.latency),
      firstTickMs: this.spec.call === "stream" ? summarise(this.firstTick) : null,
      ticks: tickSummary(this.tickCounts),
      haltReasons: { ...this.haltReasons },
      accuracy: this.labelled > 0 ? this.correct / this.labelled : null,
      correct: this.correct,
      labelled: this.labelled,
      calibration: this.calibration,
    };
  }
}
