/**
 * What a model's workers can think through, learnt from their own tick runs: the wall time of one tick
 * boundary per batch size (the tick run plus the copies, halting checks and messages around it), and the
 * encoder's time per joining row. A batched tick advances every row in it, so the capacity in
 * request-ticks per second grows with the batch: b / stepMs(b).
 *
 * Each batch size keeps a moving average of its own runs, so that a machine that gets busier (or
 * quieter) is followed within a few dozen runs. A batch size never run is read from its neighbours:
 * between two measured sizes linearly, below the smallest at the smallest's step time. Beyond the
 * largest the truth lies between two bounds: the largest's cost per row (a larger batch is no cheaper
 * per row; what lowering plans with, so that it errs towards answering in time) and the largest's step
 * time (a larger batch takes no less; what refusal uses, so that a server that has only seen small
 * batches yet does not refuse what it could serve).
 */
import type { StepRun } from "./workerProtocol.ts";

/** Weight of a new run in the moving averages: about the last 10 runs of a size count. */
const WEIGHT = 0.1;

export class TickCapacity {
  /** Batch size -> moving average of one tick boundary's milliseconds, encoder run excluded. */
  private readonly steps = new Map<number, number>();
  private sizes: number[] = [];
  private encodeRowMs: number | undefined;

  /** One tick boundary of a worker of this model. */
  observe(run: StepRun): void {
    if (run.joined > 0 && run.encodeMs > 0) {
      this.encodeRowMs = average(this.encodeRowMs, run.encodeMs / run.joined);
    }
    if (run.batchSize === 0) return;
    const tickMs = Math.max(run.tickMs, run.stepMs - run.encodeMs);
    if (!this.steps.has(run.batchSize)) this.sizes = [...this.sizes, run.batchSize].sort((a, b) => a - b);
    this.steps.set(run.batchSize, average(this.steps.get(run.batchSize), tickMs));
  }

  /** Whether any tick run has been seen: before that nothing can be predicted. */
  get known(): boolean {
    return this.sizes.length > 0;
  }

  /**
   * Milliseconds of one tick boundary at `batch` rows (see the file comment); 0 before any run.
   * `optimistic`: beyond the largest batch measured, the lower bound.
   */
  stepMs(batch: number, optimistic = false): number {
    const { sizes, steps } = this;
    if (sizes.length === 0) return 0;
    const exact = steps.get(batch);
    if (exact !== undefined) return exact;
    const smallest = sizes[0] as number;
    const largest = sizes.at(-1) as number;
    if (batch < smallest) return steps.get(smallest) as number;
    if (batch > largest) return ((steps.get(largest) as number) * (optimistic ? largest : batch)) / largest;
    const upper = sizes.findIndex((size) => size > batch);
    const a = sizes[upper - 1] as number;
    const b = sizes[upper] as number;
    const at = (batch - a) / (b - a);
    return (steps.get(a) as number) * (1 - at) + (steps.get(b) as number) * at;
  }

  /** Milliseconds of encoder time per joining row; 0 before any encoder run. */
  get encodeMsPerRow(): number {
    return this.encodeRowMs ?? 0;
  }

  /** Request-ticks per second one worker advances at `batch` rows; 0 before any run. */
  ticksPerSecond(batch: number): number {
    const ms = this.stepMs(batch);
    return ms > 0 ? (batch * 1000) / ms : 0;
  }
}

function average(previous: number | undefined, value: number): number {
  return previous === undefined ? value : previous + WEIGHT * (value - previous);
}
