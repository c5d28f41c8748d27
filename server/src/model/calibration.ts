/**
 * calibration.json: accuracy and tick counts against thresholds on a halting signal, measured on a
 * validation split with the same halting rule the server applies (min_ticks 1, max_ticks = trained
 * ticks): halt after the first tick whose signal reaches the threshold and answer with it; when none
 * does, run every tick and answer with the tick whose signal was highest (earliest on ties). The server
 * reads it to turn a client's target accuracy or consistency into a threshold and to report it in
 * GetModel.
 *
 * A signal is a per-tick score in [0, 1]: the model's certainty (every model) and, for a model with a
 * halting head, `halt` (the head's estimate that the tick's answer is right). schema_version 3 holds one
 * block per signal under `signals`: its threshold table and its `guarantees`, for a grid of targets and
 * confidences the threshold that Learn-then-Test certifies (training/ctm/guarantee.py) for accuracy and
 * for consistency (agreement with that signal's own answer after all ticks), or null when none does.
 * schema_version 2 (the table and guarantees at the top level) and 1 (no guarantees: it certifies
 * nothing) are still read, as the certainty signal's block.
 *
 * A model folder may hold several calibrations: `calibration.json` (version 1) and
 * `calibration-N.json` (N >= 2, written by `npm run calibrate -- --unlabeled DIR`). The newest wins.
 */
import { existsSync, readdirSync } from "node:fs";
import { basename, extname, join } from "node:path";
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

export type GuaranteeKind = "accuracy" | "consistency";
export const GUARANTEE_KINDS: readonly GuaranteeKind[] = ["accuracy", "consistency"];

/** What a request can halt on: the model's certainty, or its halting head's output. */
export type HaltSignal = "certainty" | "halt";
export const HALT_SIGNALS: readonly HaltSignal[] = ["certainty", "halt"];

/** One grid point: the threshold Learn-then-Test chose for (target, confidence), or null. */
export interface CertifiedPoint {
  target: number;
  confidence: number;
  threshold: number | null;
  /** Upper confidence bound on the loss (1 - accuracy or 1 - agreement) at the threshold (at 1.0 if null). */
  riskBound: number;
  meanTicks: number;
}

/** Where a guarantee's data came from. */
export interface CalibrationData {
  kind: string;
  count: number;
  split?: string;
  dir?: string;
  sha256?: string;
  date?: string;
}

export interface GuaranteeTable {
  count: number;
  data: CalibrationData;
  /** Every grid point, certified or not. */
  certified: CertifiedPoint[];
}

/** One signal's calibration: what each threshold on it gave, and what it certifies. */
export interface SignalCalibration {
  /** Accuracy of running every tick and answering with the tick whose signal was highest. */
  accuracyFullRun: number;
  /** Sorted by threshold, ascending. */
  thresholds: CalibrationPoint[];
  guarantees: Partial<Record<GuaranteeKind, GuaranteeTable>>;
}

export interface Calibration {
  schemaVersion: 1 | 2 | 3;
  /** The file's name within the model folder. */
  file: string;
  split: string;
  count: number;
  ticks: number;
  accuracyMostCertain: number;
  accuracyLastTick: number;
  /** Certainty always; halt when the file calibrates a halting head (schema_version 3). */
  signals: { certainty: SignalCalibration } & Partial<Record<HaltSignal, SignalCalibration>>;
  /**
   * The signal a target that names none is certified on, as the exporter chose it on items apart from
   * the calibration's (`target_signal`); absent in older files.
   */
  targetSignal?: HaltSignal;
}

const SCHEMA_VERSIONS = [1, 2, 3] as const;
const fraction = (r: JsonReader) => r.number({ min: 0, max: 1 });

export function parseCalibration(document: unknown, file: string): Calibration {
  const root = new JsonReader(file, document);
  const schemaField = root.field("schema_version").integer();
  if (!(SCHEMA_VERSIONS as readonly number[]).includes(schemaField))
    root.field("schema_version").fail(`must be 1, 2 or 3, got ${schemaField}`);
  const schema = schemaField as Calibration["schemaVersion"];
  const accuracyMostCertain = fraction(root.field("accuracy_most_certain"));
  let signals: Calibration["signals"];
  if (schema === 3) {
    const section = root.field("signals");
    const certainty = parseSignal(section.field("certainty"), 3);
    signals = { certainty };
    // Signals this server does not know are left alone: a newer file still serves the ones it does.
    if (section.has("halt")) signals.halt = parseSignal(section.field("halt"), 3);
  } else {
    // Before schema 3 the file held the certainty signal's table and guarantees at the top level.
    signals = { certainty: parseSignal(root, schema, accuracyMostCertain) };
  }
  let targetSignal: HaltSignal | undefined;
  if (root.has("target_signal")) {
    const field = root.field("target_signal").field("signal");
    targetSignal = field.string({ oneOf: Object.keys(signals) }) as HaltSignal;
  }
  return {
    schemaVersion: schema,
    file: basename(file),
    split: root.field("split").string(),
    count: root.field("count").positiveInteger(),
    ticks: root.field("ticks").positiveInteger(),
    accuracyMostCertain,
    accuracyLastTick: fraction(root.field("accuracy_last_tick")),
    signals,
    ...(targetSignal && { targetSignal }),
  };
}

/** A signal's block (schema 3), or the top level of an older file read as certainty's block. */
function parseSignal(block: JsonReader, schema: Calibration["schemaVersion"], fullRun?: number): SignalCalibration {
  const thresholds = block
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
  const guarantees: SignalCalibration["guarantees"] = {};
  if (schema >= 2) {
    const section = block.field("guarantees");
    for (const kind of GUARANTEE_KINDS) {
      if (section.has(kind)) guarantees[kind] = parseGuaranteeTable(section.field(kind));
    }
  }
  return {
    accuracyFullRun: fullRun ?? fraction(block.field("accuracy_full_run")),
    thresholds,
    guarantees,
  };
}

function parseGuaranteeTable(table: JsonReader): GuaranteeTable {
  const open = (r: JsonReader, name: string) => {
    const value = r.field(name).number({ min: 0, max: 1 });
    if (value === 0 || (name === "confidence" && value === 1)) {
      r.field(name).fail(`must be in (0, 1${name === "confidence" ? ")" : "]"}, got ${value}`);
    }
    return value;
  };
  const data = table.field("data");
  const optional = (name: string) => (data.has(name) ? data.field(name).string() : undefined);
  return {
    count: table.field("count").positiveInteger(),
    data: {
      kind: data.has("kind") ? data.field("kind").string() : "labeled",
      count: data.field("count").positiveInteger(),
      split: optional("split"),
      dir: optional("dir"),
      sha256: optional("sha256"),
      date: optional("date"),
    },
    certified: table
      .field("certified")
      .array({ minLength: 1 })
      .map((p) => ({
        target: open(p, "target"),
        confidence: open(p, "confidence"),
        threshold: p.has("threshold") ? open(p, "threshold") : null,
        riskBound: p.field("risk_bound").number({ min: 0, max: 1 }),
        meanTicks: p.field("mean_ticks").number({ min: 0 }),
      })),
  };
}

/**
 * The grid point that serves a request for (target, confidence): the smallest grid target >= target
 * at the smallest grid confidence >= confidence. A stricter target or confidence certifies a weaker
 * one, and for a fixed-sequence test the threshold only rises with either, so this single point is the
 * cheapest valid choice; picking the cheapest of several points after the fact would not be valid.
 * undefined when the grid has no such point (the target or confidence is above its highest).
 */
export function gridPointFor(table: GuaranteeTable, target: number, confidence: number): CertifiedPoint | undefined {
  const above = <T>(values: T[], key: (v: T) => number, bound: number) =>
    values.filter((v) => key(v) >= bound - 1e-12).sort((a, b) => key(a) - key(b));
  const confidenceLevel = above(table.certified, (p) => p.confidence, confidence)[0]?.confidence;
  if (confidenceLevel === undefined) return undefined;
  const row = table.certified.filter((p) => p.confidence === confidenceLevel);
  return above(row, (p) => p.target, target)[0];
}

/** The highest confidence a table holds. */
export function highestConfidence(table: GuaranteeTable): number {
  return Math.max(...table.certified.map((p) => p.confidence));
}

/**
 * Which calibration file of a model folder to read: the highest N among `calibration-N.json` (N >= 2,
 * with the manifest's file name as the stem), else the manifest's own file.
 */
export function newestCalibrationFile(folder: string, manifestFile: string): string {
  const extension = extname(manifestFile);
  const stem = manifestFile.slice(0, manifestFile.length - extension.length);
  let best = { version: 1, file: manifestFile };
  const pattern = new RegExp(`^${escapeRegExp(basename(stem))}-([0-9]+)${escapeRegExp(extension)}$`);
  const dir = join(folder, stem, "..");
  if (!existsSync(dir)) return manifestFile;
  for (const name of readdirSync(dir)) {
    const version = Number(pattern.exec(name)?.[1] ?? Number.NaN);
    if (version >= 2 && version > best.version) {
      best = { version, file: join(stem, "..", name) };
    }
  }
  return best.file;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
