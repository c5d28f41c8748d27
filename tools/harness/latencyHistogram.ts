/**
 * Latency under load, recorded in microseconds in an HDR histogram (hdr-histogram-js): constant memory
 * however many calls a run makes, and percentiles to three significant digits. The load test's points
 * and the benchmark's health probes record into the same kind of histogram and read it the same way.
 */
import * as hdr from "hdr-histogram-js";

export type { Histogram } from "hdr-histogram-js";

/** Microsecond resolution, 3 significant digits, up to an hour (and beyond: the histogram resizes). */
export function latencyHistogram(): hdr.Histogram {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000_000,
    numberOfSignificantValueDigits: 3,
  });
}

/**
 * Milliseconds at a percentile of a histogram recorded in microseconds. Percentiles come back as the
 * top of their bucket, which can lie just above the exact maximum: never more than the maximum.
 */
export function msAtPercentile(histogram: hdr.Histogram, percentile: number): number {
  return Math.min(histogram.getValueAtPercentile(percentile), histogram.maxValue) / 1000;
}
