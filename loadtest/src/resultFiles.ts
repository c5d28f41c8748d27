/**
 * Writes a run's files: result.json (everything), results.csv (one row per point), summary.md (the
 * table as Markdown, ready for docs) and the PNG plots.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { writePlots } from "./loadtestPlots.ts";
import type { LoadtestResult, PointResult } from "./loadtestResult.ts";
import { summaryMarkdown } from "./summaryMarkdown.ts";

export const RESULT_FILES = { json: "result.json", csv: "results.csv", markdown: "summary.md" } as const;

/** Halting reasons get a column each, in this order. */
export const HALT_REASONS = ["THRESHOLD", "PATIENCE", "MAX_TICKS", "DEADLINE"] as const;

const round = (value: number | null | undefined, digits: number) =>
  value === null || value === undefined ? "" : String(Number(value.toFixed(digits)));

export function csvField(value: string): string {
  return /[",\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

const CSV_COLUMNS: Array<[string, (p: PointResult) => string]> = [
  ["call", (p) => p.call],
  ["load", (p) => p.load.kind],
  ["concurrency", (p) => (p.load.kind === "closed" ? String(p.load.concurrency) : "")],
  ["rate", (p) => (p.load.kind === "open" ? String(p.load.rate) : "")],
  ["arrival", (p) => (p.load.kind === "open" ? p.load.arrival : "")],
  ["signal", (p) => p.signal ?? "certainty"],
  ["threshold", (p) => String(p.threshold)],
  ["target_kind", (p) => p.target?.kind ?? ""],
  ["target", (p) => (p.target ? String(p.target.value) : "")],
  ["guarantee_met", (p) => (p.target ? String(p.target.met) : "")],
  ["requests", (p) => String(p.requests)],
  ["ok", (p) => String(p.ok)],
  ["errors", (p) => String(p.requests - p.ok)],
  [
    "errors_by_status",
    (p) =>
      Object.entries(p.errors)
        .map(([code, n]) => `${code}:${n}`)
        .join(" "),
  ],
  ["elapsed_s", (p) => round(p.elapsedS, 3)],
  ["throughput_rps", (p) => round(p.throughputRps, 2)],
  ["offered_rps", (p) => round(p.offeredRps, 2)],
  ["client_cpu_cores", (p) => round(p.clientCpuCores, 3)],
  ["latency_mean_ms", (p) => round(p.latencyMs.mean, 3)],
  ["latency_p50_ms", (p) => round(p.latencyMs.p50, 3)],
  ["latency_p90_ms", (p) => round(p.latencyMs.p90, 3)],
  ["latency_p99_ms", (p) => round(p.latencyMs.p99, 3)],
  ["latency_p999_ms", (p) => round(p.latencyMs.p999, 3)],
  ["latency_max_ms", (p) => round(p.latencyMs.max, 3)],
  ["first_tick_p50_ms", (p) => round(p.firstTickMs?.p50, 3)],
  ["first_tick_p99_ms", (p) => round(p.firstTickMs?.p99, 3)],
  ["ticks_mean", (p) => round(p.ticks.mean, 3)],
  ["ticks_p50", (p) => String(p.ticks.p50)],
  ["ticks_p90", (p) => String(p.ticks.p90)],
  ["ticks_p99", (p) => String(p.ticks.p99)],
  ...HALT_REASONS.map((reason): [string, (p: PointResult) => string] => [
    `halt_${reason.toLowerCase()}`,
    (p) => String(p.haltReasons[reason] ?? 0),
  ]),
  ["accuracy", (p) => round(p.accuracy, 5)],
  ["labelled", (p) => String(p.labelled)],
  ["calibration_accuracy", (p) => round(p.calibration?.accuracy, 5)],
  ["calibration_mean_ticks", (p) => round(p.calibration?.meanTicks, 3)],
];

export function resultCsv(result: LoadtestResult): string {
  const header = CSV_COLUMNS.map(([name]) => name).join(",");
  const rows = result.points.map((p) => CSV_COLUMNS.map(([, value]) => csvField(value(p))).join(","));
  return `${[header, ...rows].join("\n")}\n`;
}

/** Writes every file into `dir` (created if needed); returns the paths written. */
export async function writeResultFiles(result: LoadtestResult, dir: string, plots: boolean): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const files: Array<[string, string]> = [
    [RESULT_FILES.json, `${JSON.stringify(result, null, 2)}\n`],
    [RESULT_FILES.csv, resultCsv(result)],
    [RESULT_FILES.markdown, summaryMarkdown(result)],
  ];
  const written = files.map(([name, text]) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  });
  if (plots && result.points.length > 0) written.push(...(await writePlots(result, dir)));
  return written;
}
