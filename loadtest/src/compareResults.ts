/**
 * Compare mode: two result files side by side, point by point (matched on call, load and halting rule),
 * with the change of every headline figure, e.g. before and after a server change.
 */
import type { LoadtestResult, PointResult } from "./loadtestResult.ts";
import { csvField } from "./resultFiles.ts";
import { pointKey } from "./sweepPlan.ts";

export interface ComparisonRow {
  key: string;
  before: PointResult | null;
  after: PointResult | null;
}

interface Metric {
  name: string;
  value: (p: PointResult) => number | null;
  digits: number;
  /** Accuracy changes read better as percentage points than as a relative change. */
  absolute?: boolean;
}

export const METRICS: Metric[] = [
  { name: "answers/s", value: (p) => p.throughputRps, digits: 1 },
  { name: "p50 ms", value: (p) => p.latencyMs.p50, digits: 2 },
  { name: "p99 ms", value: (p) => p.latencyMs.p99, digits: 2 },
  { name: "p99.9 ms", value: (p) => p.latencyMs.p999, digits: 2 },
  { name: "1st tick p50 ms", value: (p) => p.firstTickMs?.p50 ?? null, digits: 2 },
  { name: "mean ticks", value: (p) => p.ticks.mean, digits: 2 },
  { name: "accuracy %", value: (p) => (p.accuracy === null ? null : p.accuracy * 100), digits: 1, absolute: true },
  { name: "errors", value: (p) => p.requests - p.ok, digits: 0, absolute: true },
  { name: "client CPU", value: (p) => p.clientCpuCores ?? null, digits: 2, absolute: true },
];

export function compareResults(before: LoadtestResult, after: LoadtestResult): ComparisonRow[] {
  const index = (result: LoadtestResult) => new Map(result.points.map((p) => [pointKey(p), p]));
  const a = index(before);
  const b = index(after);
  const keys = [...new Set([...a.keys(), ...b.keys()])];
  return keys.map((key) => ({ key, before: a.get(key) ?? null, after: b.get(key) ?? null }));
}

function change(metric: Metric, before: number, after: number): string {
  if (metric.absolute) {
    const d = after - before;
    return d === 0 ? "=" : `${d > 0 ? "+" : ""}${d.toFixed(metric.digits)}`;
  }
  if (before === 0) return after === 0 ? "=" : "new";
  const pct = ((after - before) / before) * 100;
  return Math.abs(pct) < 0.05 ? "=" : `${pct > 0 ? "+" : ""}${pct.toFixed(1)}%`;
}

export function comparisonCell(metric: Metric, row: ComparisonRow): string {
  const a = row.before ? metric.value(row.before) : null;
  const b = row.after ? metric.value(row.after) : null;
  const show = (v: number | null) => (v === null ? "-" : v.toFixed(metric.digits));
  if (a === null || b === null) return `${show(a)} -> ${show(b)}`;
  return `${show(a)} -> ${show(b)} (${change(metric, a, b)})`;
}

/** Runs differ in ways that make the numbers incomparable: say so above the table. */
export function comparisonWarnings(before: LoadtestResult, after: LoadtestResult): string[] {
  const warnings: string[] = [];
  const model = (r: LoadtestResult) => `${r.model.name}/${r.model.version}`;
  if (model(before) !== model(after)) warnings.push(`different models: ${model(before)} vs ${model(after)}`);
  if (before.samples.source !== after.samples.source || before.samples.count !== after.samples.count) {
    warnings.push(
      `different samples: ${before.samples.count} from ${before.samples.source} vs ${after.samples.count} from ${after.samples.source}`,
    );
  }
  if (before.environment.cpus !== after.environment.cpus) {
    warnings.push(`different machines: ${before.environment.cpus} vs ${after.environment.cpus} CPUs`);
  }
  if (JSON.stringify(before.settings.budget) !== JSON.stringify(after.settings.budget)) {
    warnings.push("different budgets per point");
  }
  return warnings;
}

export function comparisonTable(before: LoadtestResult, after: LoadtestResult, names: [string, string]): string {
  const rows = compareResults(before, after);
  const header = ["point", ...METRICS.map((m) => m.name)];
  const body = rows.map((row) => {
    const missing = !row.before ? " (only after)" : !row.after ? " (only before)" : "";
    return [`${row.key}${missing}`, ...METRICS.map((m) => comparisonCell(m, row))];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((cells) => (cells[i] as string).length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] as number))
      .join("  ")
      .trimEnd();
  const describe = (r: LoadtestResult) =>
    `${r.model.name}/${r.model.version}, ${r.samples.count} samples, ${r.environment.cpus} CPUs, started ${r.startedAt}`;
  return [
    `before: ${names[0]} (${describe(before)})`,
    `after:  ${names[1]} (${describe(after)})`,
    ...comparisonWarnings(before, after).map((w) => `warning: ${w}`),
    "",
    line(header),
    line(header.map((_, i) => "-".repeat(widths[i] as number))),
    ...body.map(line),
  ].join("\n");
}

export function comparisonCsv(before: LoadtestResult, after: LoadtestResult): string {
  const rows = compareResults(before, after);
  const slug = (name: string) =>
    name
      .replace(/[^a-z0-9]+/gi, "_")
      .replace(/_+$/, "")
      .toLowerCase();
  const header = ["point", ...METRICS.flatMap((m) => [`${slug(m.name)}_before`, `${slug(m.name)}_after`])];
  const cell = (v: number | null | undefined) => (v === null || v === undefined ? "" : String(v));
  const body = rows.map((row) => [
    row.key,
    ...METRICS.flatMap((m) => [cell(row.before && m.value(row.before)), cell(row.after && m.value(row.after))]),
  ]);
  return `${[header, ...body].map((cells) => cells.map(csvField).join(",")).join("\n")}\n`;
}
