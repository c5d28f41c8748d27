/**
 * One loaded model: admission, the queue, and the requests on its scheduler workers (which think;
 * workerPool.ts starts them and keeps them running).
 *
 * Runs on the main thread and never touches a graph: it validates a request, preprocesses its input,
 * queues it (bounded: a full queue is RESOURCE_EXHAUSTED at once), hands it to the least-loaded worker
 * with a free batch slot, and relays that worker's per-tick results to the request's reader. A reader
 * that goes away (cancellation, deadline, a failed write) cancels the request, and its worker drops it
 * at the next tick boundary. A paced reader that stops taking ticks parks its request, which then holds
 * no batch slot until the reader catches up.
 *
 * Its workers are supervised by a WorkerPool (workerPool.ts): a worker that dies is restarted, with
 * backoff while restarts fail. A dead worker's requests fail here at once with UNAVAILABLE. While the
 * model has no worker at all and its restart failed, it is FAILED: queued and new requests get
 * UNAVAILABLE with the cause at once (never a wait for a batch slot that will not come), and listeners
 * (health, GetModel) are told, until a restart succeeds.
 *
 * Every request that passes admission is reported to the observer exactly once, when it leaves
 * `requests` (or, if it never got there, where it ended), under how it ended.
 *
 * Under load a request with a floor may start thinking at a lower certified target than it asked for
 * (loadController.ts): the controller picks its rung when it gets a batch slot, and refuses at
 * admission what would not be answered within --latency-objective-ms even at the floors.
 */
import { performance } from "node:perf_hooks";
import type { GuaranteeKind, HaltSignal } from "../model/calibration.ts";
import type { ModelDefinition } from "../model/modelFolder.ts";
import type { SessionSettings } from "../runtime/executionProvider.ts";
import type { ImageLimits } from "../runtime/imagePreprocess.ts";
import type { EngineLog } from "./engineLog.ts";
import { EventChannel } from "./eventChannel.ts";
import {
  defaultHaltPolicy,
  type HaltPolicy,
  type HaltPolicyRequest,
  type HaltReason,
  resolveHaltPolicy,
  type TickLimits,
} from "./haltPolicy.ts";
import { type Admission, LoadController, type LoadState } from "./loadController.ts";
import { type ModelInput, prepareInput } from "./modelInput.ts";
import type { RequestTiming } from "./modelStatistics.ts";
import { describePrediction, type Prediction, resolveTopK } from "./prediction.ts";
import { READ_AHEAD_TICKS, waitsForReader } from "./readerPacing.ts";
import type { SchedulerThread } from "./schedulerThread.ts";
import { ServerError } from "./serverError.ts";
import { LadderCache, servedPolicy, type TargetLadder } from "./targetLadder.ts";
import { TickCapacity } from "./tickCapacity.ts";
import { timerDelay } from "./timerDelay.ts";
import { WorkerPool } from "./workerPool.ts";
import type { Finished, StepMessage, StepRun, ToWorker } from "./workerProtocol.ts";

export type { EngineLog } from "./engineLog.ts";

export interface EngineOptions {
  workers: number;
  /** Nice steps below the event loop for the worker threads (see threadPriority.ts). */
  workerNice: number;
  maxBatch: number;
  maxQueue: number;
  /** Answer within this, lowering flexible requests and then refusing (loadController.ts); 0: off. */
  latencyObjectiveMs?: number;
  /** Most ticks any request may run; 0: the model's own limit. */
  maxTicks: number;
  image: ImageLimits;
  session: SessionSettings;
}

/** Hooks for metrics; the engine itself knows nothing of Prometheus. */
export interface EngineObserver {
  step(model: string, run: StepRun): void;
  /** Requests waiting for a batch slot, holding one, and parked (their readers stopped taking ticks). */
  occupancy(model: string, queued: number, active: number, parked: number): void;
  finished(model: string, outcome: Finished["outcome"], reason: HaltReason | undefined, ticksUsed: number): void;
  /** How an answered or failed request spent its time, stage by stage (per-version statistics). */
  timed?(model: string, timing: RequestTiming): void;
  /** A request refused at admission: its queue was full, or the latency objective out of reach. */
  refused?(model: string, cause: "queue" | "objective"): void;
  /** The load controller's lowering changed, or the capacity it plans with was measured again. */
  load?(model: string, state: LoadState): void;
  /** A request with a floor was answered: the target it asked for and the one it was served at. */
  served?(model: string, kind: GuaranteeKind, requested: number, served: number): void;
}

export interface ClassifyJob {
  input: ModelInput;
  policy: HaltPolicyRequest;
  /** 0: the default. */
  topK: number;
  /** Every tick also reports the attention weights (TickReport.attention); the model must have them. */
  includeAttention: boolean;
  /** Report every tick, not only the answer. */
  streamTicks: boolean;
  /**
   * Compute ticks only as fast as the reader takes them (at most READ_AHEAD_TICKS ahead): for
   * streams, whose reader waits for the client. Off for readers that just collect a trace.
   */
  pacedByReader: boolean;
  /**
   * Called once with the preprocessed input, before it is queued (for a client that draws attention
   * over it). The array is handed to a worker right after: copy what you keep.
   */
  onInput?: (input: Float32Array) => void;
}

export interface TickReport {
  tick: number;
  certainty: number;
  /** The halting head's output: only for a model with one. */
  halt?: number;
  /** The signal the request halts on (its policy's). */
  signal: HaltSignal;
  logits: Float32Array;
  prediction: Prediction;
  /** Only for requests with includeAttention: weights row-major in `shape` ([heads, *token grid]). */
  attention?: { weights: Float32Array; shape: readonly number[] };
}

export interface InferenceResult {
  reason: HaltReason;
  ticksUsed: number;
  answerTick: number;
  /** The answer tick's signals; halt only for a model with a halting head. */
  certainty: number;
  halt?: number;
  logits: Float32Array;
  prediction: Prediction;
  policy: HaltPolicy;
}

/**
 * One step of a request. With streamTicks every event carries its tick; the last event, and only it,
 * carries the result (on the same event as the halting tick, so a stream can flag that tick final).
 */
export interface InferenceEvent {
  tick: TickReport | undefined;
  result: InferenceResult | undefined;
}

interface Request {
  id: number;
  input: Float32Array;
  policy: HaltPolicy;
  deadlineAt: number;
  streamTicks: boolean;
  includeAttention: boolean;
  readAhead: number;
  topK: number;
  channel: EventChannel<InferenceEvent>;
  /** The targets it may be served at; policy becomes the one of the rung it starts at. */
  ladder: TargetLadder;
  /** What the load controller predicted for it on arrival; it learns from the wait that came. */
  admission: Admission;
  worker: SchedulerThread | undefined;
  /** The last tick pushed to the channel, and the last one its reader has taken. */
  pushed: number;
  taken: number;
  /** Fires when a queued request's halt_policy deadline passes. */
  expiry: NodeJS.Timeout | undefined;
  /** performance.now() when it arrived, when its input was ready, and when it got a batch slot. */
  arrivedAt: number;
  preparedAt: number;
  dispatchedAt: number;
}

export class ModelEngine {
  readonly name: string;
  readonly limits: TickLimits;
  readonly defaultPolicy: HaltPolicy;

  private readonly pool: WorkerPool;
  private readonly credits = new Map<SchedulerThread, [number, number][]>();
  private readonly requests = new Map<number, Request>();
  private queue: Request[] = [];
  private preparing = 0;
  private nextId = 1;
  /** drain() was called: no new requests. */
  private draining = false;
  /** Why, when it is not the server shutting down (a model version unloaded). */
  private drainReason: string | undefined;
  /** Set once the drain's grace period is over (or close() ran): requests still preparing fail with it. */
  private cutOff: string | undefined;
  private idle: (() => void) | undefined;
  private readonly capacity = new TickCapacity();
  private readonly ladders: LadderCache;
  private readonly controller: LoadController;

  private constructor(
    readonly definition: ModelDefinition,
    private readonly options: EngineOptions,
    private readonly log: EngineLog,
    private readonly observer: EngineObserver | undefined,
  ) {
    const { manifest, calibration } = definition;
    this.name = manifest.name;
    this.limits = {
      model: manifest.name,
      trainedTicks: manifest.ticks.trained,
      maxTicks: options.maxTicks > 0 ? Math.min(manifest.ticks.max, options.maxTicks) : manifest.ticks.max,
      calibration,
      serverMaxTicks: options.maxTicks,
      hasHaltSignal: manifest.outputs.halt !== undefined,
    };
    this.defaultPolicy = defaultHaltPolicy(this.limits);
    this.ladders = new LadderCache(this.limits);
    this.controller = new LoadController(
      options.latencyObjectiveMs ?? 0,
      this.capacity,
      () => ({
        queued: this.queue,
        preparing: this.preparing,
        active: this.workers.reduce((sum, worker) => sum + worker.load, 0),
        workers: Math.max(1, this.workers.length),
        maxBatch: options.maxBatch,
      }),
      (state) => observer?.load?.(this.name, state),
    );
    this.pool = new WorkerPool(
      this.name,
      { model: definition, session: options.session, niceness: options.workerNice, warmUpRows: options.maxBatch },
      log,
      {
        opened: () => this.dispatch(),
        step: (worker, step) => this.onStep(worker, step),
        lost: (worker, code, restarting) => this.onWorkerLost(worker, code, restarting),
      },
    );
    // Added first, so that the queue has failed before anyone else hears of the failure.
    this.pool.onFailureChange((failure) => {
      if (failure) {
        for (const request of [...this.queue]) this.settle(request, "failed", new ServerError("UNAVAILABLE", failure));
      }
    });
  }

  /** Starts the model's workers; resolves once every one has its sessions open. */
  static async start(
    definition: ModelDefinition,
    options: EngineOptions,
    log: EngineLog,
    observer?: EngineObserver,
  ): Promise<ModelEngine> {
    const engine = new ModelEngine(definition, options, log, observer);
    try {
      await engine.pool.open(options.workers);
    } catch (error) {
      await engine.close();
      throw error;
    }
    return engine;
  }

  /** The execution provider the workers run on. */
  get provider(): "cpu" | "cuda" {
    return this.pool.provider;
  }

  /** The running workers (the pool's). */
  private get workers(): readonly SchedulerThread[] {
    return this.pool.workers;
  }

  /**
   * Why the model is not serving: it has no running worker and restarting one failed (the message
   * names the cause). Undefined while it serves; it clears by itself when a restart succeeds.
   */
  get failure(): string | undefined {
    return this.pool.failure;
  }

  /** Calls `listener` whenever `failure` changes (health follows it). */
  onFailureChange(listener: (failure: string | undefined) => void): void {
    this.pool.onFailureChange(listener);
  }

  /**
   * Runs one request: yields an event per tick when `job.streamTicks`, and the result on the last
   * event. Throws a ServerError for a bad request or a full queue, and the signal's reason when the
   * caller aborts; stopping the iteration early cancels the request.
   */
  async *classify(job: ClassifyJob, signal: AbortSignal): AsyncGenerator<InferenceEvent> {
    if (this.draining) {
      throw new ServerError(
        "UNAVAILABLE",
        this.drainReason
          ? `${this.drainReason} and accepts no new requests; retry the request`
          : "the server is shutting down and accepts no new requests",
      );
    }
    if (this.failure) throw new ServerError("UNAVAILABLE", this.failure);
    const policy = resolveHaltPolicy(job.policy, this.limits);
    const topK = resolveTopK(job.topK, this.definition.manifest.output, this.name);
    if (job.includeAttention && !this.definition.manifest.attention) {
      throw new ServerError(
        "INVALID_ARGUMENT",
        `include_attention: model ${this.name} was exported without an attention output (its manifest has no "attention"); re-export it with python -m ctm.export to get one`,
      );
    }
    const receivedAt = Date.now();
    const arrivedAt = performance.now();
    const ladder = this.ladders.of(policy);
    const admission = this.reserve(ladder);
    let input: Float32Array;
    try {
      // A request aborted while its image waits or decodes gives its place back at once.
      const prepared = await prepareInput(
        job.input,
        this.definition.manifest.input,
        this.name,
        this.options.image,
        signal,
      ).catch((error: unknown) => {
        if (signal.aborted) return undefined;
        throw error;
      });
      // Whatever happened while the input was prepared ends the request here, counted once.
      if (signal.aborted || prepared === undefined) {
        this.observer?.finished(this.name, "cancelled", undefined, 0);
        throw signal.reason;
      }
      if (this.cutOff) {
        this.observer?.finished(this.name, "cancelled", undefined, 0);
        throw new ServerError("UNAVAILABLE", this.cutOff);
      }
      if (this.failure) {
        this.observer?.finished(this.name, "failed", undefined, 0);
        throw new ServerError("UNAVAILABLE", this.failure);
      }
      input = prepared;
      job.onInput?.(input);
    } finally {
      this.preparing--;
      this.checkIdle();
    }
    const request: Request = {
      id: this.nextId++,
      input,
      policy,
      deadlineAt: policy.deadlineMs > 0 ? receivedAt + policy.deadlineMs : Number.POSITIVE_INFINITY,
      streamTicks: job.streamTicks,
      includeAttention: job.includeAttention,
      readAhead: job.streamTicks && job.pacedByReader ? READ_AHEAD_TICKS : 0,
      topK,
      channel: new EventChannel<InferenceEvent>(),
      ladder,
      admission,
      worker: undefined,
      pushed: 0,
      taken: 0,
      expiry: undefined,
      arrivedAt,
      preparedAt: performance.now(),
      dispatchedAt: 0,
    };
    this.requests.set(request.id, request);
    this.queue.push(request);
    if (Number.isFinite(request.deadlineAt)) {
      request.expiry = setTimeout(() => this.expire(request), timerDelay(request.deadlineAt));
    }
    this.dispatch();

    const onAbort = () => this.cancel(request, signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    let finished = false;
    try {
      for await (const event of request.channel) {
        if (event.result) finished = true;
        yield event;
        // The reader asked for more: it has taken this tick.
        if (event.tick && !finished) this.credit(request, event.tick.tick);
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      if (!finished) this.cancel(request, new DOMException("the reader stopped early", "AbortError"));
    }
  }

  /**
   * Stops admitting; waits up to `graceMs` for in-flight requests, then cancels the rest. `reason`
   * says why in refusals, when it is not the server shutting down (a model version was unloaded).
   */
  async drain(graceMs: number, reason?: string): Promise<void> {
    this.draining = true;
    this.pool.drain();
    this.drainReason = reason;
    if (this.requests.size > 0 || this.preparing > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => {
          this.idle = resolve;
        }),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, graceMs);
        }),
      ]);
      clearTimeout(timer);
      this.idle = undefined;
    }
    this.cutOff = `${reason ?? "the server shut down"} before this request finished (grace period ${graceMs} ms)`;
    const leftover = [...this.requests.values()];
    if (leftover.length > 0)
      this.log.warn(
        { model: this.name, cancelled: leftover.length, graceMs },
        "grace period over; cancelling in-flight requests",
      );
    for (const request of leftover) this.cancel(request, new ServerError("UNAVAILABLE", this.cutOff));
  }

  /** Stops the workers. Requests still in flight fail. */
  async close(): Promise<void> {
    this.draining = true;
    this.cutOff ??= "the server is shutting down";
    this.controller.close();
    // Before the requests settle: from here on no worker is restarted (nor any event heard).
    const stopped = this.pool.close();
    for (const request of [...this.requests.values()])
      this.settle(request, "cancelled", new ServerError("UNAVAILABLE", "the server is shutting down"));
    this.queue = [];
    await stopped;
  }

  // ---------------------------------------------------------------- admission
  /**
   * Claims a place in the queue, or refuses at once when it is full or, with a latency objective, when
   * even every flexible request at its floor would not answer this one within it.
   */
  private reserve(ladder: TargetLadder): Admission {
    const { maxBatch, maxQueue, latencyObjectiveMs } = this.options;
    // A worker whose batch is over max-batch (readers that resumed at once) offers nothing, not less.
    const free = this.workers.reduce((sum, worker) => sum + Math.max(0, maxBatch - worker.load), 0);
    const waiting = this.queue.length + this.preparing;
    const admission = this.controller.admit(ladder);
    const predictedMs = admission.refusedMs;
    if (predictedMs !== undefined) {
      this.observer?.refused?.(this.name, "objective");
      throw new ServerError(
        "RESOURCE_EXHAUSTED",
        `model ${this.name} cannot answer within the latency objective: with ${waiting} request(s) waiting it would take about ${Math.round(predictedMs)} ms even with every request that gave a floor served at its floor (--latency-objective-ms ${latencyObjectiveMs}); retry later`,
      );
    }
    if (waiting + 1 > free + maxQueue) {
      const running = this.workers.reduce((sum, worker) => sum + worker.load, 0);
      this.observer?.refused?.(this.name, "queue");
      throw new ServerError(
        "RESOURCE_EXHAUSTED",
        `model ${this.name} is at capacity: ${running} request(s) running (max-batch ${maxBatch} x ${this.workers.length} worker(s)) and ${waiting} waiting (max-queue ${maxQueue}); retry later`,
      );
    }
    this.preparing++;
    return admission;
  }

  /** Moves queued requests to the least-loaded workers with a free batch slot. */
  private dispatch(): void {
    while (this.queue.length > 0) {
      let worker: SchedulerThread | undefined;
      for (const w of this.workers) if (w.load < this.options.maxBatch && (!worker || w.load < worker.load)) worker = w;
      if (!worker) break;
      const request = this.queue.shift() as Request;
      clearTimeout(request.expiry);
      if (Date.now() >= request.deadlineAt) {
        this.expire(request);
        continue;
      }
      worker.requests.add(request.id);
      request.worker = worker;
      request.dispatchedAt = performance.now();
      request.policy = servedPolicy(request.policy, request.ladder, this.controller.rungFor(request));
      const message: ToWorker = {
        type: "admit",
        id: request.id,
        input: request.input,
        policy: request.policy,
        deadlineAt: request.deadlineAt,
        streamTicks: request.streamTicks,
        attention: request.includeAttention,
        readAhead: request.readAhead,
      };
      worker.post(message, [request.input.buffer as ArrayBuffer]);
    }
    this.reportOccupancy();
  }

  private reportOccupancy(): void {
    const active = this.workers.reduce((sum, worker) => sum + worker.load, 0);
    const parked = this.workers.reduce((sum, worker) => sum + worker.parked.size, 0);
    this.observer?.occupancy(this.name, this.queue.length, active, parked);
  }

  /**
   * Keeps the worker's view of a paced request in step: the worker parks the request by the rule in
   * readerPacing.ts, counting the ticks it computed, and this applies it to the ticks pushed. A reader that takes ticks as they come is
   * never that far behind (its next read follows each tick within the same event-loop turn), so a
   * parked request is one whose reader is stuck (a gRPC stream waiting for HTTP/2 flow control). It
   * gives its batch slot back, and takes it back when its reader catches up, even over max-batch:
   * its state is on the worker already, and new requests wait until the batch is back under.
   */
  private pace(request: Request): void {
    const { worker } = request;
    if (!worker || request.readAhead === 0) return;
    const parked = waitsForReader(request.pushed, request.taken, request.readAhead);
    if (parked === worker.parked.has(request.id)) return;
    if (parked) worker.parked.add(request.id);
    else worker.parked.delete(request.id);
    if (parked) this.dispatch();
    else this.reportOccupancy();
  }

  /** Credits go out once per event-loop turn, one message per worker, however many readers took ticks. */
  private credit(request: Request, tick: number): void {
    const { worker } = request;
    if (!worker || request.readAhead === 0) return;
    request.taken = tick;
    this.pace(request);
    const pending = this.credits.get(worker);
    if (pending) {
      pending.push([request.id, tick]);
      return;
    }
    this.credits.set(worker, [[request.id, tick]]);
    if (this.credits.size === 1) {
      setImmediate(() => {
        for (const [to, credits] of this.credits) {
          to.post({ type: "credit", credits });
        }
        this.credits.clear();
      });
    }
  }

  private cancel(request: Request, reason: unknown): void {
    if (request.channel.closed) return;
    request.channel.fail(reason);
    // On a worker it stays in `requests` until the worker reports it gone, and is counted then.
    if (request.worker) request.worker.post({ type: "cancel", id: request.id });
    else this.settle(request, "cancelled");
  }

  /** A queued request whose halt_policy deadline passed before it had a tick: DEADLINE_EXCEEDED. */
  private expire(request: Request): void {
    if (request.worker || !this.requests.has(request.id)) return;
    // A deadline beyond Node's longest timer is reached in more than one step.
    if (Date.now() < request.deadlineAt) {
      request.expiry = setTimeout(() => this.expire(request), timerDelay(request.deadlineAt));
      return;
    }
    this.settle(request, "expired", this.expiredError(request));
  }

  private expiredError(request: Request): ServerError {
    return new ServerError(
      "DEADLINE_EXCEEDED",
      `halt_policy.deadline_ms (${request.policy.deadlineMs} ms) passed before the request's first tick (it waited for a batch slot); no tick was run`,
    );
  }

  /**
   * Ends a request the engine still holds: takes it out of the queue, its worker's books and
   * `requests`, counts it once under `outcome`, and fails its reader with `error` (if it has not ended).
   */
  private settle(request: Request, outcome: Finished["outcome"], error?: unknown, ticksUsed = 0): void {
    if (!this.requests.delete(request.id)) return;
    clearTimeout(request.expiry);
    if (request.worker) {
      request.worker.requests.delete(request.id);
      request.worker.parked.delete(request.id);
    } else {
      this.queue = this.queue.filter((r) => r !== request);
    }
    this.observer?.finished(this.name, outcome, undefined, ticksUsed);
    if (outcome === "failed" || outcome === "expired") this.timedFailure(request);
    if (error !== undefined) request.channel.fail(error);
    this.reportOccupancy();
    this.checkIdle();
  }

  private checkIdle(): void {
    if (this.requests.size === 0 && this.preparing === 0) this.idle?.();
  }

  // ---------------------------------------------------------------- results
  private onStep(worker: SchedulerThread, step: StepMessage): void {
    const now = performance.now();
    for (const run of step.runs) {
      this.capacity.observe(run, now);
      this.observer?.step(this.name, run);
    }
    if (step.runs.length > 0) this.observer?.load?.(this.name, this.controller.state);
    const { output, attention } = this.definition.manifest;
    const width = output.shape.reduce((a, b) => a * b, 1);
    const attentionWidth = attention ? attention.shape.reduce((a, b) => a * b, 1) : 0;
    const finished = new Map(step.finished.map((done) => [done.id, done]));
    if (step.ticks) {
      const rows = step.ticks;
      rows.ids.forEach((id, i) => {
        const request = this.requests.get(id);
        if (!request || request.channel.closed) return;
        const done = finished.get(id);
        const probabilities = rows.probabilities.subarray(i * width, (i + 1) * width);
        const tick: TickReport = {
          tick: rows.ticks[i] as number,
          certainty: rows.certainty[i] as number,
          ...(rows.halt && { halt: rows.halt[i] as number }),
          signal: request.policy.signal,
          logits: rows.logits.subarray(i * width, (i + 1) * width),
          prediction: describePrediction(probabilities, output, request.topK),
        };
        if (request.includeAttention && rows.attention && attention) {
          tick.attention = {
            weights: rows.attention.subarray(i * attentionWidth, (i + 1) * attentionWidth),
            shape: attention.shape,
          };
        }
        request.pushed = tick.tick;
        request.channel.push({ tick, result: done?.outcome === "halted" ? this.resultOf(request, done) : undefined });
        if (done?.outcome === "halted") request.channel.end();
        else this.pace(request);
      });
    }
    for (const done of step.finished) {
      const request = this.requests.get(done.id);
      // Gone already: settled by close() or by this worker's exit, and counted then.
      if (!request || request.worker !== worker) continue;
      this.requests.delete(done.id);
      worker.requests.delete(done.id);
      worker.parked.delete(done.id);
      this.observer?.finished(
        this.name,
        done.outcome,
        done.outcome === "halted" ? done.reason : undefined,
        done.ticksUsed,
      );
      // Closed already: cancelled by its reader, or its result went out with its last tick above.
      if (request.channel.closed) continue;
      if (done.outcome === "halted") {
        request.channel.push({ tick: undefined, result: this.resultOf(request, done) });
        request.channel.end();
      } else if (done.outcome === "failed") {
        this.timedFailure(request);
        request.channel.fail(new Error(`model ${this.name}: graph run failed: ${done.message}`));
      } else if (done.outcome === "expired") {
        this.timedFailure(request);
        request.channel.fail(this.expiredError(request));
      } else {
        request.channel.fail(new DOMException("cancelled", "AbortError"));
      }
    }
    this.dispatch();
    this.checkIdle();
  }

  /** The answer of a halted request (built once per request), timed stage by stage for its statistics. */
  private resultOf(request: Request, done: Extract<Finished, { outcome: "halted" }>): InferenceResult {
    const outputAt = performance.now();
    const result: InferenceResult = {
      reason: done.reason,
      ticksUsed: done.ticksUsed,
      answerTick: done.answerTick,
      certainty: done.certainty,
      ...(done.halt !== undefined && { halt: done.halt }),
      logits: done.logits,
      prediction: describePrediction(done.probabilities, this.definition.manifest.output, request.topK),
      policy: request.policy,
    };
    const { guarantee, minTarget, loweredFrom } = request.policy;
    if (guarantee && minTarget !== undefined) {
      this.observer?.served?.(this.name, guarantee.kind, loweredFrom?.target ?? guarantee.target, guarantee.target);
    }
    const end = performance.now();
    this.observer?.timed?.(this.name, {
      outcome: "success",
      totalMs: end - request.arrivedAt,
      inputMs: request.preparedAt - request.arrivedAt,
      queueMs: request.dispatchedAt - request.preparedAt,
      inferMs: outputAt - request.dispatchedAt,
      outputMs: end - outputAt,
    });
    return result;
  }

  private timedFailure(request: Request): void {
    const totalMs = performance.now() - request.arrivedAt;
    this.observer?.timed?.(this.name, { outcome: "fail", totalMs, inputMs: 0, queueMs: 0, inferMs: 0, outputMs: 0 });
  }

  /**
   * A worker that died took its requests with it: they fail at once with UNAVAILABLE (the pool starts
   * a replacement, unless the server is draining). During a drain the queue then fails at once if no
   * worker is left, rather than waiting out the grace period for a batch slot that will not come.
   */
  private onWorkerLost(worker: SchedulerThread, code: number, restarting: boolean): void {
    const then = restarting
      ? "it has been restarted, retry the request"
      : "the server is shutting down and does not restart it; retry the request on another server";
    for (const id of [...worker.requests]) {
      const request = this.requests.get(id);
      if (!request) continue;
      this.settle(
        request,
        "failed",
        new ServerError(
          "UNAVAILABLE",
          `model ${this.name}: the inference worker running this request stopped (exit code ${code}); ${then}`,
        ),
        request.pushed,
      );
    }
    if (!restarting && this.workers.length === 0) {
      const error = `model ${this.name}: its inference worker stopped during shutdown (exit code ${code}) and is not restarted; retry the request on another server`;
      for (const request of [...this.queue]) this.settle(request, "failed", new ServerError("UNAVAILABLE", error));
    }
    this.dispatch();
    this.checkIdle();
  }
}
