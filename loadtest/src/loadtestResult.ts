/**
 * The result file (result.json): everything a run measured, plain JSON, versioned by `schema`.
 * Times are milliseconds unless a name says otherwise; rates are per second.
 */
import { readFileSync } from "node:fs";
import type { HaltSignal } from "../../server/src/model/calibration.ts";
import type { Budget, CallKind, Load, Rule, RuleTarget } from "./sweepPlan.ts";

export const RESULT_SCHEMA = "ctm-loadtest/1";

export interface LatencySummary {
  /** Calls the summary covers (successful ones only). */
  count: number;
  mean: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  /** The whole HDR histogram (microseconds), compressed and base64-encoded (HdrHistogram V2 format). */
  hdr: string;
}

export interface TickSummary {
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** histogram[t - 1]: answers that halted after tick t. */
  histogram: number[];
}

/**
 * The model's own calibration of the point's signal at its threshold, when its grid has it (another
 * split than the samples).
 */
export interface CalibrationReference {
  split: string;
  accuracy: number;
  meanTicks: number;
  reachedFraction: number;
}

export interface PointResult {
  call: CallKind;
  /** The signal the threshold is on; absent in files from before halting signals: certainty. */
  signal?: HaltSignal;
  threshold: number;
  /** Set when the point's requests sent this target, which the server resolved to `threshold`. */
  target?: RuleTarget;
  load: Load;
  /** Calls finished in the measured window: ok plus every error. */
  requests: number;
  ok: number;
  /** Failed calls by gRPC status name (or CLIENT_NO_RESULT). */
  errors: Record<string, number>;
  /** From the first send to the last answer. */
  elapsedS: number;
  /** Successful answers per second over elapsedS. */
  throughputRps: number;
  /**
   * CPU the load generator itself used while measuring, in cores (user + system time over elapsedS).
   * Near 1 the client, not the server, may be the bottleneck: Node runs it on one thread.
   */
  clientCpuCores: number;
  /** Open loop: the send rate the schedule asked for, as achieved; null for the closed loop. */
  offeredRps: number | null;
  latencyMs: LatencySummary;
  /** Streaming: until the first tick arrived; null for unary calls. */
  firstTickMs: LatencySummary | null;
  ticks: TickSummary;
  /** Successful answers by halting reason (THRESHOLD, PATIENCE, MAX_TICKS, DEADLINE). */
  haltReasons: Record<string, number>;
  /** Correct answers over labelled successful ones (the mean over positions for multi-position models); null without labels. */
  accuracy: number | null;
  correct: number;
  labelled: number;
  calibration: CalibrationReference | null;
  /** The server's graph time while the point was measured (with --metrics; absent in older files). */
  graph?: GraphTime | null;
}

/** What the server's onnxruntime runs cost per answer during a point, from its /metrics. */
export interface GraphTime {
  /** Encoder run milliseconds per answer. */
  encoderMs: number;
  /** Tick run milliseconds per answer. */
  tickMs: number;
  /** Mean rows per encoder run (answers joined together) and per tick run. */
  encoderRows: number;
  tickRows: number;
}

export interface LoadtestResult {
  schema: typeof RESULT_SCHEMA;
  startedAt: string;
  finishedAt: string;
  /** True when the run was stopped (Ctrl-C) before its last point. */
  interrupted: boolean;
  /** The arguments the run was started with. */
  command: string[];
  /** The machine record (tools/harness/machine.ts) under the names this schema has always had: cpus is its cores. */
  environment: {
    node: string;
    platform: string;
    arch: string;
    cpus: number;
    cpuModel: string;
    /** os.loadavg() (1, 5, 15 minutes) when the run started and ended: was the machine busy with something else? */
    loadAverage: { start: number[]; end: number[] };
  };
  target: { address: string; tls: boolean; token: boolean; connections: number };
  model: { name: string; version: number; provider: string; trainedTicks: number; maxTicks: number };
  samples: { source: string; count: number; labelled: number };
  settings: {
    calls: CallKind[];
    thresholds: number[];
    /** The signals halted on (absent in files from before halting signals: certainty). */
    signals?: HaltSignal[];
    /** Set when requests sent targets: each target on each signal, with the threshold the server used. */
    targets?: Rule[];
    /** Files from before several targets: the one target requests sent, and the threshold it ran at. */
    target?: { kind: "accuracy" | "consistency"; value: number; confidence: number; threshold: number; met: boolean };
    loads: Load[];
    budget: Budget;
    warmup: Budget | null;
    timeoutMs: number;
    seed: number;
    /** --compare-thresholds (absent in older files). */
    compareThresholds?: boolean;
  };
  points: PointResult[];
}

export function readResult(file: string): LoadtestResult {
  let parsed: Partial<LoadtestResult>;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8")) as Partial<LoadtestResult>;
  } catch (error) {
    throw new Error(`cannot read ${file}: ${(error as Error).message}`);
  }
  if (parsed.schema !== RESULT_SCHEMA || !Array.isArray(parsed.points)) {
    throw new Error(
      `${file} is not a load-test result (schema ${JSON.stringify(parsed.schema)}, want ${RESULT_SCHEMA})`,
    );
  }
  return parsed as LoadtestResult;
}

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

/** Several points taken as one (e.g. every load at one threshold): accuracy and ticks over all their answers. */
export function pooled(points: readonly PointResult[]): {
  answers: number;
  accuracy: number | null;
  meanTicks: number;
  /** ticks[t - 1]: answers that halted after tick t. */
  ticks: number[];
  haltedOnThreshold: number;
} {
  const labelled = sum(points.map((p) => p.labelled));
  const length = Math.max(0, ...points.map((p) => p.ticks.histogram.length));
  const ticks = Array.from({ length }, (_, i) => sum(points.map((p) => p.ticks.histogram[i] ?? 0)));
  const answers = sum(ticks);
  return {
    answers,
    accuracy: labelled > 0 ? sum(points.map((p) => p.correct)) / labelled : null,
    meanTicks: answers > 0 ? sum(ticks.map((n, i) => n * (i + 1))) / answers : 0,
    ticks,
    haltedOnThreshold: sum(points.map((p) => p.haltReasons.THRESHOLD ?? 0)),
  };
}
