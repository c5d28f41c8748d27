/** The few statistics `npm run bench:scale` reports: medians, and least-squares lines with R^2. */

export interface LinearFit {
  slope: number;
  intercept: number;
  /** 1 - residual / total sum of squares; NaN with fewer than 3 points or no spread in y. */
  r2: number;
  points: number;
}

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export function linearFit(points: Array<[number, number]>): LinearFit {
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
