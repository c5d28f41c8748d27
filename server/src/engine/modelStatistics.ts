/**
 * One loaded model version's statistics, as Triton's ModelStatistics counts them (counts and
 * cumulative times per stage, per request and per batch size), plus what only a CTM has: ticks.
 *
 * The stages of a CTM request: its input is decoded and preprocessed (compute_input), it waits for a
 * batch slot (queue), its ticks run, batched with every other request's (compute_infer: from its slot
 * to its last tick's outputs on the main thread), and its last tick's outputs become the answer
 * (compute_output). Per batch size, a tick run of that many rows is one execution (compute_infer),
 * an encoder run of that many joining rows is compute_input, and the worker's own work around a tick
 * run (copies, halting checks, messages) is compute_output.
 *
 * The statistics live as long as the version stays loaded: a reload starts them afresh, as Triton's.
 */
import type { HaltReason } from "./haltPolicy.ts";
import type { StepRun } from "./workerProtocol.ts";

/** How one request went through the engine, timed on the main thread (milliseconds). */
export interface RequestTiming {
  /** success: answered; fail: a graph run, its worker or the model failed, or its deadline passed unrun. */
  outcome: "success" | "fail";
  totalMs: number;
  /** The stages, for an answered request (0 for a failed one). */
  inputMs: number;
  queueMs: number;
  inferMs: number;
  outputMs: number;
}

export interface StageDuration {
  count: number;
  ns: number;
}

export interface BatchStatistics {
  batchSize: number;
  computeInput: StageDuration;
  computeInfer: StageDuration;
  computeOutput: StageDuration;
}

export interface TickStatistics {
  /** Request-ticks computed: every row of every tick run. */
  computed: number;
  /** Ticks the answered requests ran, summed (computed less those of cancelled and failed requests). */
  used: number;
  /** Requests that ended, by how: THRESHOLD, PATIENCE, MAX_TICKS, DEADLINE, CANCELLED, FAILED, EXPIRED. */
  halts: Record<string, number>;
}

const stage = (): StageDuration => ({ count: 0, ns: 0 });
const add = (duration: StageDuration, ms: number) => {
  duration.count++;
  duration.ns += Math.round(ms * 1e6);
};

export class ModelStatistics {
  /** When the last request was answered, epoch milliseconds; 0: none yet. */
  lastInference = 0;
  /** Requests answered (each batch row of a v2 request is one). */
  inferenceCount = 0;
  /** Batched tick runs: one run advances every request holding a batch slot by one tick. */
  executionCount = 0;
  readonly success = stage();
  readonly fail = stage();
  readonly queue = stage();
  readonly computeInput = stage();
  readonly computeInfer = stage();
  readonly computeOutput = stage();
  readonly ticks: TickStatistics = { computed: 0, used: 0, halts: {} };
  private readonly batches = new Map<number, BatchStatistics>();

  /** A request that left the engine answered or failed (cancelled ones count only under ticks.halts). */
  request(timing: RequestTiming): void {
    if (timing.outcome === "fail") {
      add(this.fail, timing.totalMs);
      return;
    }
    this.lastInference = Date.now();
    this.inferenceCount++;
    add(this.success, timing.totalMs);
    add(this.computeInput, timing.inputMs);
    add(this.queue, timing.queueMs);
    add(this.computeInfer, timing.inferMs);
    add(this.computeOutput, timing.outputMs);
  }

  /** A worker's graph runs at one tick boundary. */
  step(run: StepRun): void {
    if (run.joined > 0) add(this.batch(run.joined).computeInput, run.encodeMs);
    if (run.batchSize === 0) return;
    this.executionCount++;
    this.ticks.computed += run.batchSize;
    const batch = this.batch(run.batchSize);
    add(batch.computeInfer, run.tickMs);
    add(batch.computeOutput, Math.max(0, run.stepMs - run.tickMs - run.encodeMs));
  }

  /** Every admitted request, once, by how it ended (as the engine's metrics count them). */
  finished(outcome: string, reason: HaltReason | undefined, ticksUsed: number): void {
    const why = reason ?? outcome.toUpperCase();
    this.ticks.halts[why] = (this.ticks.halts[why] ?? 0) + 1;
    if (reason) this.ticks.used += ticksUsed;
  }

  /** Per batch size, smallest first. */
  batchStatistics(): BatchStatistics[] {
    return [...this.batches.values()].sort((a, b) => a.batchSize - b.batchSize);
  }

  private batch(size: number): BatchStatistics {
    let batch = this.batches.get(size);
    if (!batch) {
      batch = { batchSize: size, computeInput: stage(), computeInfer: stage(), computeOutput: stage() };
      this.batches.set(size, batch);
    }
    return batch;
  }
}
