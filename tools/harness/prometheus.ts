/**
 * The Prometheus text exposition format, read: every sample with its name, labels and value, and sums
 * over the series whose labels include the ones asked for. The benchmarks, the load generator and the
 * tests read the server's /metrics through this one parser.
 */

export interface MetricSample {
  /** The sample's name as exposed: a histogram's `_bucket`, `_sum` and `_count` are three names. */
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$/;
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/gy;

function unescapeLabel(value: string): string {
  return value.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
}

function parseValue(text: string): number {
  if (text === "+Inf" || text === "Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  return Number(text); // "NaN" reads as NaN
}

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  LABEL.lastIndex = 0;
  let end = 0;
  for (let match = LABEL.exec(text); match; match = LABEL.exec(text)) {
    labels[match[1] as string] = unescapeLabel(match[2] as string);
    end = LABEL.lastIndex;
  }
  if (text.slice(end).trim() !== "") throw new Error(`malformed labels in the metrics line ${JSON.stringify(line)}`);
  return labels;
}

/** Every sample in a /metrics text; comments (# HELP, # TYPE) and blank lines are skipped. */
export function parsePrometheusText(text: string): MetricSample[] {
  const samples: MetricSample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const match = SAMPLE.exec(line);
    if (!match) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
    samples.push({
      name: match[1] as string,
      labels: match[2] ? parseLabels(match[2], line) : {},
      value: parseValue(match[3] as string),
    });
  }
  return samples;
}

/** The samples named `name` whose labels include every one of `labels`. */
export function seriesOf(samples: readonly MetricSample[], name: string, labels: Record<string, string> = {}) {
  return samples.filter(
    (sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
  );
}

/** The sum of `name` over every series whose labels include `labels` (0 when there is none). */
export function sumOf(samples: readonly MetricSample[], name: string, labels: Record<string, string> = {}): number {
  return seriesOf(samples, name, labels).reduce((total, sample) => total + sample.value, 0);
}

/** A histogram's cumulative bucket counts by upper bound (`le`), summed over the matching series. */
export function bucketsOf(
  samples: readonly MetricSample[],
  histogram: string,
  labels: Record<string, string> = {},
): Map<number, number> {
  const buckets = new Map<number, number>();
  for (const sample of seriesOf(samples, `${histogram}_bucket`, labels)) {
    const bound = parseValue(sample.labels.le ?? "+Inf");
    buckets.set(bound, (buckets.get(bound) ?? 0) + sample.value);
  }
  return buckets;
}

/** Fetches and parses a /metrics endpoint; the error names the URL. */
export async function scrapeMetrics(url: string, timeoutMs = 5000): Promise<MetricSample[]> {
  let text: string;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    text = await response.text();
  } catch (error) {
    throw new Error(`cannot read the server's metrics at ${url}: ${(error as Error).message}`);
  }
  return parsePrometheusText(text);
}
