/**
 * The statistics every benchmark, load test and probe reports, written once so that a "p50" means the
 * same in every result file: the median, nearest-rank percentiles (of samples, or of integer values
 * given as counts), the mean, an answer's accuracy, and least-squares lines with R^2. Latency under load is recorded in HDR
 * histograms instead (hdr-histogram-js); these are for the short lists of samples a probe collects.
 */

export interface LinearFit {
  slope: number;
  intercept: number;
  /** 1 - residual / total sum of squares; NaN with fewer than 3 points or no spread in y. */
  r2: number;
  points: number;
}

const ascending = (values: readonly number[]) => [...values].sort((a, b) => a - b);

export function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** NaN for no values. */
export function mean(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : sum(values) / values.length;
}

/** The middle value, or the mean of the two middle ones; NaN for no values. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = ascending(values);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/**
 * Nearest-rank percentile (p in [0, 100]): the smallest value with at least p% of the values at or
 * below it, so that it is always one of the samples; NaN for no values. The same definition as
 * percentileOfCounts and as HDR histograms read at a percentile.
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = ascending(values);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

/** Nearest-rank percentile of integer values 1..n given as counts: counts[v - 1] values equal v; 0 for none. */
export function percentileOfCounts(counts: readonly number[], p: number): number {
  const total = sum(counts);
  if (total === 0) return 0;
  const rank = Math.max(1, Math.ceil((p / 100) * total));
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i] as number;
    if (seen >= rank) return i + 1;
  }
  return counts.length;
}

/**
 * Accuracy of one answer: the fraction of positions right (a maze route has many, a digit one); the label and the prediction have one class per position. */
export function correctFraction(label: readonly number[], prediction: readonly number[]): number {
  if (label.length !== prediction.length) return 0;
  return label.filter((cls, i) => cls === prediction[i]).length / label.length;
}

export function linearFit(points: ReadonlyArray<readonly [number, number]>): LinearFit {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (const [x, y] of points) {
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) ** 2;
    syy += (y - my) ** 2;
  }
  const slope = sxx > 0 ? sxy / sxx : Number.NaN;
  const intercept = my - slope * mx;
  let residual = 0;
  for (const [x, y] of points) residual += (y - (intercept + slope * x)) ** 2;
  const r2 = n >= 3 && syy > 0 ? 1 - residual / syy : Number.NaN;
  return { slope, intercept, r2, points: n };
}
