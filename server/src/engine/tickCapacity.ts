/**
 * What a model's workers can think through, learnt from their own tick runs, in two views.
 *
 * Per batch size: the wall time of one tick boundary (the tick run plus the copies, halting checks and
 * messages around it). A batched tick advances every row in it, so the capacity in request-ticks per
 * second grows with the batch: b / stepMs(b). Each size keeps its latest runs and is read as their
 * median, so that a run a busy machine preempted, or the first run at a new size (onnxruntime plans
 * memory for a shape the first time it sees it), does not decide for the whole size; a size with too
 * few runs of its own is read from the line through the measured sizes (a step is close to affine in
 * the batch: a fixed cost per run plus a cost per row).
 *
 * As they run now: over the last second's runs, what a request-tick and an encoded row cost the workers
 * on average, and how long a step takes. This is what the load controller plans with, because it is
 * what a queue will meet: the batches the workers really reach (short requests free slots at every
 * boundary, and a freed slot is filled only after a round trip to the main thread) on a machine as busy
 * as it is now. The table per size is what it falls back on when the workers have been idle.
 */
import type { StepRun } from "./workerProtocol.ts";

/** Runs of one batch size kept, and the runs a size needs before its own median is trusted. */
const KEPT_RUNS = 15;
/**
 * Runs older than this no longer count for their size: how busy the machine is moves the costs (on a
 * shared machine by half or more), and the table must describe the machine as it is.
 */
const TABLE_MS = 10_000;
const TRUSTED_RUNS = 3;
/** How far back "now" reaches, and the tick runs it needs to say anything: the first steps after a
 * quiet spell run cold (woken threads, cold caches), up to several times slower, and a handful of them
 * would otherwise stand for the whole machine. */
export const RECENT_MS = 1000;
const RECENT_RUNS = 16;

/** The workers as they run now (see the file comment). */
export interface RecentRuns {
  /** Worker milliseconds per request-tick, encoder runs excluded. */
  rowTickMs: number;
  /** Worker milliseconds per encoded row. */
  encodeRowMs: number;
  /** Wall milliseconds of one tick boundary, encoder runs included: one tick of a request's run. */
  stepMs: number;
  /** The mean batch a tick run advanced. */
  batch: number;
}

interface TimedRun {
  at: number;
  run: StepRun;
}

export class TickCapacity {
  /** Batch size -> its latest tick boundaries (ms, encoder runs excluded, and when); not the first run. */
  private readonly steps = new Map<number, { ms: number; at: number }[]>();
  private tableAt = Number.NEGATIVE_INFINITY;
  private medians: [number, number][] | undefined;
  private fitted: { fixed: number; perRow: number } | undefined;
  /** The runs of the last RECENT_MS from `head` on, and their sums (kept as runs come and go). */
  private recentRuns: TimedRun[] = [];
  private head = 0;
  private readonly sums = { tickMs: 0, rows: 0, ticks: 0, encodeMs: 0, joined: 0, stepMs: 0 };
  /** The latest encoder runs' milliseconds per row, for when none ran in the last RECENT_MS. */
  private encodes: number[] = [];

  /** Tick boundaries of a worker of this model, reported at `at` (performance.now()). */
  observe(run: StepRun, at: number): void {
    this.recentRuns.push({ at, run });
    this.count(run, 1);
    if (run.joined > 0 && run.encodeMs > 0) {
      if (this.encodes.length >= KEPT_RUNS) this.encodes.shift();
      this.encodes.push(run.encodeMs / run.joined);
    }
    if (run.batchSize === 0) return;
    const runs = this.steps.get(run.batchSize);
    // The first run at a size plans memory for its shape: not what the size costs.
    if (runs === undefined) {
      this.steps.set(run.batchSize, []);
      return;
    }
    if (runs.length >= KEPT_RUNS) runs.shift();
    runs.push({ ms: Math.max(run.tickMs, run.stepMs - run.encodeMs), at });
    this.medians = undefined;
    this.fitted = undefined;
    this.tableAt = at;
  }

  /** The last RECENT_MS of runs, or undefined when fewer than RECENT_RUNS ticks ran in it. */
  recent(now: number): RecentRuns | undefined {
    const since = now - RECENT_MS;
    const runs = this.recentRuns;
    while (this.head < runs.length && (runs[this.head] as TimedRun).at < since) {
      this.count((runs[this.head] as TimedRun).run, -1);
      this.head++;
    }
    // An empty window starts its sums afresh, so that rounding never builds up.
    if (this.head === runs.length)
      for (const key of Object.keys(this.sums)) this.sums[key as keyof typeof this.sums] = 0;
    // Compacted now and then, so that the array holds about one window of runs.
    if (this.head > 1024 && this.head * 2 > runs.length) {
      this.recentRuns = runs.slice(this.head);
      this.head = 0;
    }
    const { tickMs, rows, ticks, encodeMs, joined, stepMs } = this.sums;
    if (ticks < RECENT_RUNS) return undefined;
    return {
      rowTickMs: tickMs / rows,
      encodeRowMs: joined > 0 ? encodeMs / joined : this.encodeMsPerRow,
      stepMs: stepMs / ticks,
      batch: rows / ticks,
    };
  }

  private count(run: StepRun, sign: 1 | -1): void {
    const { sums } = this;
    sums.encodeMs += sign * run.encodeMs;
    sums.joined += sign * run.joined;
    if (run.batchSize === 0) return;
    sums.tickMs += sign * Math.max(run.tickMs, run.stepMs - run.encodeMs);
    sums.rows += sign * run.batchSize;
    sums.ticks += sign;
    sums.stepMs += sign * run.stepMs;
  }

  /** The median of the latest encoder runs' milliseconds per row; 0 before any. */
  get encodeMsPerRow(): number {
    return this.encodes.length > 0 ? median(this.encodes) : 0;
  }

  /** Milliseconds of one tick boundary at `batch` rows, from the table per size; 0 before any run. */
  stepMs(batch: number): number {
    const measured = this.measured();
    if (measured.length === 0) return 0;
    const own = this.current(batch);
    if (own.length >= TRUSTED_RUNS) return median(own);
    const [largest, largestMs] = measured.at(-1) as [number, number];
    // One size: a larger batch is no cheaper per row, a smaller one no quicker.
    if (measured.length === 1) return batch > largest ? (largestMs * batch) / largest : largestMs;
    const { fixed, perRow } = this.fit(measured);
    return Math.max(fixed + perRow * batch, batch < largest ? 0 : largestMs);
  }

  /**
   * A tick boundary's milliseconds as fixed + perRow x batch, through the sizes measured; with one size
   * so far, all of it per row (no batching gain assumed). Undefined before any run.
   */
  line(): { fixed: number; perRow: number } | undefined {
    const measured = this.measured();
    const [only] = measured;
    if (!only) return undefined;
    return measured.length === 1 ? { fixed: 0, perRow: only[1] / only[0] } : this.fit(measured);
  }

  /** Request-ticks per second one worker advances at `batch` rows, from the table; 0 before any run. */
  ticksPerSecond(batch: number): number {
    const ms = this.stepMs(batch);
    return ms > 0 ? (batch * 1000) / ms : 0;
  }

  /**
   * [batch size, median ms] of every size with runs in the TABLE_MS before the latest run, smallest
   * first. A machine left idle keeps what it last measured.
   */
  private measured(): [number, number][] {
    this.medians ??= [...this.steps.keys()]
      .map((size): [number, number[]] => [size, this.current(size)])
      .filter(([, runs]) => runs.length > 0)
      .map(([size, runs]): [number, number] => [size, median(runs)])
      .sort((a, b) => a[0] - b[0]);
    return this.medians;
  }

  /** The milliseconds of a size's runs that still count. */
  private current(size: number): number[] {
    const since = this.tableAt - TABLE_MS;
    return (this.steps.get(size) ?? []).filter((run) => run.at >= since).map((run) => run.ms);
  }

  /** Least squares through the sizes' medians, each weighted by its runs; never a negative cost. */
  private fit(measured: [number, number][]): { fixed: number; perRow: number } {
    if (this.fitted) return this.fitted;
    let [n, sx, sy, sxx, sxy] = [0, 0, 0, 0, 0];
    for (const [size, ms] of measured) {
      const w = this.current(size).length;
      n += w;
      sx += w * size;
      sy += w * ms;
      sxx += w * size * size;
      sxy += w * size * ms;
    }
    const slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
    const perRow = Number.isFinite(slope) ? Math.max(0, slope) : 0;
    this.fitted = { fixed: Math.max(0, (sy - perRow * sx) / n), perRow };
    return this.fitted;
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}
