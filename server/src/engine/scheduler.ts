/**
 * Tick-level continuous batching, the way Orca and vLLM batch decoding steps: every step advances all
 * active requests by one tick in a single batched run, whatever tick each one is at. At each tick
 * boundary, cancelled requests leave, newly admitted ones join after one batched encoder run, and
 * requests whose halt policy fired leave before the next tick.
 *
 * A request paced by its reader (a stream) never runs more than `readAhead` ticks ahead of the ticks
 * its reader has taken (credits from the main thread; the rule is readerPacing.ts, which the main
 * thread applies too); beyond that it is parked, keeping its state in the batch but costing no
 * compute, until the reader catches up. A stream whose writes back up (gRPC flow
 * control) therefore stops costing compute until it drains, and a cancellation finds the request a few
 * ticks past the last one handed to gRPC, not at the end of its run.
 *
 * Runs inside a worker thread (see schedulerWorker.ts): the graph runs are synchronous, and this loop
 * must never stall the gRPC event loop. Admissions, credits and cancellations posted by the main
 * thread are taken at every boundary: from `inbox`, which hands over whatever has arrived without
 * waiting, or, without one, by yielding a turn of this thread's event loop (a turn per tick cost a
 * lone request about 3% of its time on a 2-core machine).
 */
import { performance } from "node:perf_hooks";
import { setImmediate as nextTurn } from "node:timers/promises";
import { type Halt, HaltTracker } from "./haltPolicy.ts";
import { type OutputLayout, topClassKey } from "./prediction.ts";
import { waitsForReader } from "./readerPacing.ts";
import type { AdmitMessage, Finished, StepMessage, StepRun, TickRows } from "./workerProtocol.ts";

/** Graph-run statistics wait at most this long for a message to ride along with. */
const REPORT_EVERY_MS = 200;

/** The runtime's batch, as the scheduler uses it (CtmBatch implements it). */
export interface TickBatch {
  /** Most rows one encoder run takes; the scheduler joins no more at one boundary. */
  readonly encoderRows?: number;
  join(ids: readonly number[], inputs: Float32Array): Promise<number>;
  leave(ids: Iterable<number>): void;
  park(ids: Iterable<number>): void;
  resume(ids: Iterable<number>): void;
  tick(): Promise<{
    ids: readonly number[];
    logits: Float32Array;
    certainty: Float32Array;
    probabilities: Float32Array;
    /** [rows], when the model has a halting head. */
    halt?: Float32Array;
    /** [rows, heads x tokens], when the model has an attention output. */
    attention?: Float32Array;
    runMs: number;
  }>;
}

interface Answer {
  logits: Float32Array;
  probabilities: Float32Array;
}

interface Active {
  id: number;
  tracker: HaltTracker<Answer>;
  streamTicks: boolean;
  attention: boolean;
  /** 0: not paced. */
  readAhead: number;
  /** The last tick the reader has taken. */
  taken: number;
  parked: boolean;
}

export class Scheduler {
  private incoming: AdmitMessage[] = [];
  private readonly active = new Map<number, Active>();
  private readonly cancelled = new Set<number>();
  private wake: (() => void) | undefined;
  private stopped = false;
  private readonly width: number;
  private runs: StepRun[] = [];
  private reportedAt = 0;
  /** Wall time spent since the last run was recorded (reports, inbox), added to the next run's stepMs. */
  private unaccountedMs = 0;

  constructor(
    private readonly batch: TickBatch,
    private readonly layout: OutputLayout,
    private readonly emit: (step: StepMessage) => void,
    private readonly now: () => number = Date.now,
    /** Delivers the messages that have arrived, synchronously (see the class comment). */
    private readonly inbox?: () => void,
  ) {
    this.width = layout.shape.reduce((a, b) => a * b, 1);
  }

  admit(request: AdmitMessage): void {
    this.incoming.push(request);
    this.wake?.();
  }

  cancel(id: number): void {
    this.cancelled.add(id);
    this.wake?.();
  }

  /** The reader of request `id` has taken its ticks up to `tick`. */
  credit(id: number, tick: number): void {
    const request = this.active.get(id);
    if (request && tick > request.taken) {
      request.taken = tick;
      // It may have been waiting for this credit, parked or about to be.
      this.wake?.();
    }
  }

  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  async run(): Promise<void> {
    while (!this.stopped) {
      if (this.incoming.length === 0 && this.cancelled.size === 0 && !this.anyRunnable()) {
        this.report(undefined, [], true);
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = undefined;
        continue;
      }
      const started = performance.now();
      await this.step();
      if (this.inbox) this.inbox();
      this.unaccountedMs += performance.now() - started;
      if (!this.inbox) await nextTurn();
    }
  }

  private runnable(request: Active): boolean {
    return !waitsForReader(request.tracker.ticksDone, request.taken, request.readAhead);
  }

  private anyRunnable(): boolean {
    for (const request of this.active.values()) if (this.runnable(request)) return true;
    return false;
  }

  /** Parks requests that are too far ahead of their readers; resumes those whose readers caught up. */
  private pace(): number {
    const park: number[] = [];
    const resume: number[] = [];
    let running = 0;
    for (const request of this.active.values()) {
      const runnable = this.runnable(request);
      if (runnable) running++;
      if (runnable === request.parked) {
        request.parked = !runnable;
        (runnable ? resume : park).push(request.id);
      }
    }
    this.batch.park(park);
    this.batch.resume(resume);
    return running;
  }

  /** One tick boundary: cancellations leave, newcomers join, pacing, one batched tick, halting. */
  private async step(): Promise<void> {
    const started = performance.now();
    const finished: Finished[] = [];
    for (const id of this.cancelled) {
      const active = this.active.get(id);
      if (active) {
        this.active.delete(id);
        this.batch.leave([id]);
        finished.push({ id, outcome: "cancelled", ticksUsed: active.tracker.ticksDone });
      } else if (this.incoming.some((r) => r.id === id)) {
        this.incoming = this.incoming.filter((r) => r.id !== id);
        finished.push({ id, outcome: "cancelled", ticksUsed: 0 });
      }
    }
    this.cancelled.clear();

    const run: StepRun = { batchSize: 0, joined: 0, encodeMs: 0, tickMs: 0, stepMs: 0 };
    let ticks: TickRows | undefined;
    try {
      if (this.incoming.length > 0) await this.join(run, finished);
      if (this.pace() > 0) ticks = await this.tick(run, finished);
    } catch (error) {
      // A failed graph run leaves no trustworthy state: every request in the batch (those joining
      // included: join() made them active) fails and the batch starts empty. Requests admitted while
      // the run was in flight are still in `incoming`, were never part of it, and join at the next
      // boundary.
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      for (const request of this.active.values()) {
        finished.push({ id: request.id, outcome: "failed", ticksUsed: request.tracker.ticksDone, message });
      }
      this.batch.leave([...this.active.keys()]);
      this.active.clear();
    }
    if (run.batchSize > 0 || run.joined > 0) {
      // This step's wall time so far, plus what the boundaries before it spent after their runs
      // were recorded (their reports and inbox): over a run the stepMs add up to the worker's busy time.
      const elapsed = performance.now() - started;
      run.stepMs = this.unaccountedMs + elapsed;
      this.unaccountedMs = -elapsed;
      this.runs.push(run);
    }
    this.report(ticks, finished);
  }

  /** Sends what the main thread needs now; run statistics ride along, or go alone once they are old. */
  private report(ticks: TickRows | undefined, finished: Finished[], flush = false): void {
    const now = performance.now();
    const due = this.runs.length > 0 && (flush || now - this.reportedAt >= REPORT_EVERY_MS);
    if (!ticks && finished.length === 0 && !due) return;
    this.emit({ type: "step", runs: this.runs, ticks, finished });
    this.runs = [];
    this.reportedAt = now;
  }

  private async join(run: StepRun, finished: Finished[]): Promise<void> {
    // Take the newcomers before awaiting: admissions that arrive during the encoder run wait for the
    // next boundary instead of slipping into this one unencoded. At most one encoder run's worth joins
    // per boundary, so that the rows already thinking tick between the runs of a large encoder.
    const now = this.now();
    const limit = this.batch.encoderRows ?? Number.POSITIVE_INFINITY;
    const joining: AdmitMessage[] = [];
    while (this.incoming.length > 0 && joining.length < limit) {
      const r = this.incoming.shift() as AdmitMessage;
      // Its deadline passed on the way here: an answer from no ticks would be a guess.
      if (now >= r.deadlineAt) finished.push({ id: r.id, outcome: "expired", ticksUsed: 0 });
      else joining.push(r);
    }
    if (joining.length === 0) return;
    for (const r of joining) {
      this.active.set(r.id, {
        id: r.id,
        tracker: new HaltTracker<Answer>(r.policy, r.deadlineAt),
        streamTicks: r.streamTicks,
        attention: r.attention,
        readAhead: r.readAhead,
        taken: 0,
        parked: false,
      });
    }
    const rowSize = joining[0]?.input.length ?? 0;
    const inputs = new Float32Array(joining.length * rowSize);
    joining.forEach((r, i) => {
      inputs.set(r.input, i * rowSize);
    });
    run.encodeMs = await this.batch.join(
      joining.map((r) => r.id),
      inputs,
    );
    run.joined = joining.length;
  }

  /** One batched tick; halted requests go to `finished`. Returns the rows to stream, if any. */
  private async tick(stats: StepRun, finished: Finished[]): Promise<TickRows | undefined> {
    const run = await this.batch.tick();
    const now = this.now();
    const { width } = this;
    const streamed: number[] = [];
    const halts = new Map<number, Halt<Answer>>();
    run.ids.forEach((id, row) => {
      const request = this.active.get(id);
      if (!request) throw new Error(`row ${row} has id ${id}, which is not active. This is a bug.`);
      const logits = run.logits.slice(row * width, (row + 1) * width);
      const probabilities = run.probabilities.slice(row * width, (row + 1) * width);
      const signals = {
        certainty: run.certainty[row] as number,
        ...(run.halt && { halt: run.halt[row] as number }),
      };
      const halt = request.tracker.observe(signals, topClassKey(logits, this.layout), { logits, probabilities }, now);
      if (request.streamTicks) streamed.push(row);
      if (halt) halts.set(id, halt);
    });
    stats.batchSize = run.ids.length;
    stats.tickMs = run.runMs;
    const ticks = streamed.length > 0 ? this.rows(run, streamed) : undefined;
    for (const [id, halt] of halts) {
      this.active.delete(id);
      finished.push({
        id,
        outcome: "halted",
        reason: halt.reason,
        ticksUsed: halt.ticksUsed,
        answerTick: halt.answerTick,
        certainty: halt.answer.certainty,
        ...(halt.answer.halt !== undefined && { halt: halt.answer.halt }),
        logits: halt.answer.payload.logits,
        probabilities: halt.answer.payload.probabilities,
      });
    }
    this.batch.leave(halts.keys());
    return ticks;
  }

  /** Copies the streamed rows out of the batch's outputs into one message. */
  private rows(run: Awaited<ReturnType<TickBatch["tick"]>>, rows: number[]): TickRows {
    const { width } = this;
    const out: TickRows = {
      ids: [],
      ticks: [],
      certainty: new Float32Array(rows.length),
      ...(run.halt && { halt: new Float32Array(rows.length) }),
      logits: new Float32Array(rows.length * width),
      probabilities: new Float32Array(rows.length * width),
    };
    const wanted = run.attention ? rows.filter((row) => this.active.get(run.ids[row] as number)?.attention) : [];
    const attentionWidth = run.attention ? run.attention.length / run.ids.length : 0;
    if (wanted.length > 0) out.attention = new Float32Array(rows.length * attentionWidth);
    rows.forEach((row, i) => {
      const id = run.ids[row] as number;
      if (out.attention && run.attention && (this.active.get(id) as Active).attention) {
        out.attention.set(run.attention.subarray(row * attentionWidth, (row + 1) * attentionWidth), i * attentionWidth);
      }
      out.ids.push(id);
      out.ticks.push((this.active.get(id) as Active).tracker.ticksDone);
      out.certainty[i] = run.certainty[row] as number;
      if (out.halt && run.halt) out.halt[i] = run.halt[row] as number;
      out.logits.set(run.logits.subarray(row * width, (row + 1) * width), i * width);
      out.probabilities.set(run.probabilities.subarray(row * width, (row + 1) * width), i * width);
    });
    return out;
  }
}

/** The buffers a step message can transfer instead of copying. */
export function transferablesOf(step: StepMessage): ArrayBuffer[] {
  const buffers: ArrayBufferLike[] = [];
  if (step.ticks) buffers.push(step.ticks.certainty.buffer, step.ticks.logits.buffer, step.ticks.probabilities.buffer);
  if (step.ticks?.halt) buffers.push(step.ticks.halt.buffer);
  if (step.ticks?.attention) buffers.push(step.ticks.attention.buffer);
  for (const f of step.finished) {
    if (f.outcome === "halted" && f.logits.buffer !== f.probabilities.buffer)
      buffers.push(f.logits.buffer, f.probabilities.buffer);
  }
  return buffers as ArrayBuffer[];
}
