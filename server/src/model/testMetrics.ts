/**
 * manifest.json's `metrics.test`: how the model did on its data set's held-out test split when it was
 * exported (training/ctm/export.py), measured with the halting rule the server applies. The server only
 * reports it (GetModel, the playground); nothing it decides depends on it. A manifest without it - an
 * older export, a reference import with no data set to test on - is served as before, without metrics.
 *
 * For multi-position outputs (a maze's route) accuracy is the share of positions right and `solved` the
 * share of inputs with every position right; single-position outputs have no `solved`.
 */
import { HALT_SIGNALS, type HaltSignal } from "./calibration.ts";
import type { JsonReader } from "./jsonReader.ts";

/** One signal's full-run answer: every tick run, the tick whose signal was highest answers. */
export interface SignalAccuracy {
  accuracyFullRun: number;
  solvedFullRun?: number;
}

/** A fixed budget of `tick` ticks: the answer at tick `tick`, and the most certain of ticks 1..tick. */
export interface TickAccuracy {
  tick: number;
  accuracyAtTick: number;
  accuracyMostCertain: number;
  solvedAtTick?: number;
}

export interface TestMetrics {
  count: number;
  accuracyMostCertain: number;
  accuracyLastTick: number;
  /** The signals the export measured, of those this server knows. */
  signals: Partial<Record<HaltSignal, SignalAccuracy>>;
  /** Ascending by tick. */
  byTick: TickAccuracy[];
}

const fraction = (r: JsonReader) => r.number({ min: 0, max: 1 });
const optionalFraction = (r: JsonReader, name: string) => (r.has(name) ? fraction(r.field(name)) : undefined);

/**
 * `metrics.test` of a manifest, or undefined when it has none. What is there is checked as strictly as
 * the rest of the manifest (a wrong value fails the load with the field named); the threshold tables
 * beside it are left unread, as the calibration holds the ones the server uses.
 */
export function parseTestMetrics(root: JsonReader): TestMetrics | undefined {
  if (!root.has("metrics") || !root.field("metrics").has("test")) return undefined;
  const test = root.field("metrics").field("test");
  const signals: TestMetrics["signals"] = {};
  if (test.has("signals")) {
    const section = test.field("signals");
    // Signals this server does not know are left alone, as in the calibration.
    for (const signal of HALT_SIGNALS) {
      if (!section.has(signal)) continue;
      const block = section.field(signal);
      signals[signal] = {
        accuracyFullRun: fraction(block.field("accuracy_full_run")),
        solvedFullRun: optionalFraction(block, "solved_full_run"),
      };
    }
  }
  const byTick = test.has("by_tick")
    ? test
        .field("by_tick")
        .array()
        .map((row) => ({
          tick: row.field("ticks").positiveInteger(),
          accuracyAtTick: fraction(row.field("accuracy_at_tick")),
          accuracyMostCertain: fraction(row.field("accuracy_most_certain")),
          solvedAtTick: optionalFraction(row, "solved_at_tick"),
        }))
        .sort((a, b) => a.tick - b.tick)
    : [];
  return {
    count: test.field("count").positiveInteger(),
    accuracyMostCertain: fraction(test.field("accuracy_most_certain")),
    accuracyLastTick: fraction(test.field("accuracy_last_tick")),
    signals,
    byTick,
  };
}
