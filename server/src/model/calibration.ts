/**
 * calibration.json: accuracy and tick counts against certainty thresholds, measured on a validation
 * split with the same halting rule the server applies (min_ticks 1, max_ticks = trained ticks). The
 * server reads it to turn a client's target accuracy into a threshold and to report it in GetModel.
 */
import { JsonReader } from "./jsonReader.ts";

export interface CalibrationPoint {
  threshold: number;
  accuracy: number;
  meanTicks: number;
  p50Ticks: number;
  p90Ticks: number;
  p99Ticks: number;
  reachedFraction: number;
}

export interface Calibration {
  split: string;
  count: number;
  ticks: number;
  accuracyMostCertain: number;
  accuracyLastTick: number;
  /** Sorted by threshold, ascending. */
  thresholds: CalibrationPoint[];
}

export function parseCalibration(document: unknown, file: string): Calibration {
  const root = new JsonReader(file, document);
  const schema = root.field("schema_version").integer();
  if (schema !== 1) root.field("schema_version").fail(`must be 1, got ${schema}`);
  const fraction = (r: JsonReader) => r.number({ min: 0, max: 1 });
  const thresholds = root
    .field("thresholds")
    .array({ minLength: 1 })
    .map((t) => {
      const threshold = t.field("threshold").number({ min: 0, max: 1 });
      if (threshold === 0) t.field("threshold").fail("must be in (0, 1], got 0");
      return {
        threshold,
        accuracy: fraction(t.field("accuracy")),
        meanTicks: t.field("mean_ticks").number({ min: 0 }),
        // Percentiles may be interpolated between ticks, so they need not be integers.
        p50Ticks: t.field("p50_ticks").number({ min: 0 }),
        p90Ticks: t.field("p90_ticks").number({ min: 0 }),
        p99Ticks: t.field("p99_ticks").number({ min: 0 }),
        reachedFraction: fraction(t.field("reached_fraction")),
      };
    })
    .sort((a, b) => a.threshold - b.threshold);
  return {
    split: root.field("split").string(),
    count: root.field("count").positiveInteger(),
    ticks: root.field("ticks").positiveInteger(),
    accuracyMostCertain: fraction(root.field("accuracy_most_certain")),
    accuracyLastTick: fraction(root.field("accuracy_last_tick")),
    thresholds,
  };
}
