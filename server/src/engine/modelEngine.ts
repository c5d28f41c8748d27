/**
 * One loaded model: admission, the queue, and the scheduler workers that think.
 *
 * Runs on the main thread and never touches a graph: it validates a request, preprocesses its input,
 * queues it (bounded: a full queue is RESOURCE_EXHAUSTED at once), hands it to the least-loaded worker
 * with a free batch slot, and relays that worker's per-tick results to the request's reader. A reader
 * that goes away (cancellation, deadline, a failed write) cancels the request, and its worker drops it
 * at the next tick boundary. A paced reader that stops taking ticks parks its request, which then holds
 * no batch slot until the reader catches up.
 *
 * A worker that dies is restarted, with backoff while restarts fail. While the model has no worker at
 * all and its restart failed, it is FAILED: queued and new requests get UNAVAILABLE with the cause at
 * once (never a wait for a slot that will not come), and listeners (health, GetModel) are told, until
 * a restart succeeds.
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
import { SchedulerThread } from "./schedulerThread.ts";
import { ServerError } from "./serverError.ts";
import { LadderCache, servedPolicy, type TargetLadder } from "./targetLadder.ts";
import { TickCapacity } from "./tickCapacity.ts";
import { timerDelay } from "./timerDelay.ts";
import type { Finished, StepMessage, StepRun, ToWorker, WorkerData } from "./workerProtocol.ts";

/** Provider fallback reasons already logged at warn by this process (see startWorker). */
const reportedFallbacks = new Set<string>();

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

/** The slice of a pino logger the engine uses. */
export interface EngineLog {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
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

/** First wait before restarting a worker again after a restart failed; it doubles up to the cap. */
const RESTART_BACKOFF_MS = 500;
const RESTART_BACKOFF_CAP_MS = 30_000;

/**
 * How many ticks a paced request may be computed ahead of its reader: enough to hide the round trip
 * of a credit, few enough that a cancellation finds the request near the tick its client last saw.
 */
export const READ_AHEAD_TICKS = 4;

export class ModelEngine {
  readonly name: string;
  readonly limits: TickLimits;
  readonly defaultPolicy: HaltPolicy;
  provider: "cpu" | "cuda" = "cpu";

  private readonly slots: SchedulerThread[] = [];
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
  /** close() was called: no worker may start or be restarted any more. */
  private closed = false;
  private idle: (() => void) | undefined;
  /** Why the model has no worker and cannot get one; undefined while it serves. */
  private failed: string | undefined;
  private readonly failureListeners: ((failure: string | undefined) => void)[] = [];
  /** Workers starting (at start-up or as replacements), for close() to wait for. */
  private readonly starting = new Set<Promise<unknown>>();
  private readonly restartTimers = new Set<NodeJS.Timeout>();
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
        active: this.slots.reduce((sum, slot) => sum + slot.load, 0),
        workers: Math.max(1, this.slots.length),
        maxBatch: options.maxBatch,
      }),
      (state) => observer?.load?.(this.name, state),
    );
  }

  /** Starts the model's workers; resolves once every one has its sessions open. */
  static async start(
    definition: ModelDefinition,
    options: EngineOptions,
    log: EngineLog,
    observer?: EngineObserver,
  ): Promise<ModelEngine> {
    const engine = new ModelEngine(definition, options, log, observer);
    // Settled, not raced: a worker still starting when another fails must be stopped too.
    const started = await Promise.allSettled(Array.from({ length: options.workers }, (_, i) => engine.startWorker(i)));
    const failure = started.find((outcome) => outcome.status === "rejected");
    if (failure) {
      await engine.close();
      throw failure.reason;
    }
    return engine;
  }

  /**
   * Why the model is not serving: it has no running worker and restarting one failed (the message
   * names the cause). Undefined while it serves; it clears by itself when a restart succeeds.
   */
  get failure(): string | undefined {
    return this.failed;
  }

  /** Calls `listener` whenever `failure` changes (health follows it). */
  onFailureChange(listener: (failure: string | undefined) => void): void {
    this.failureListeners.push(listener);
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
    if (this.failed) throw new ServerError("UNAVAILABLE", this.failed);
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
      if (this.failed) {
        this.observer?.finished(this.name, "failed", undefined, 0);
        throw new ServerError("UNAVAILABLE", this.failed);
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
    this.closed = true;
    this.cutOff ??= "the server is shutting down";
    this.controller.close();
    for (const timer of this.restartTimers) clearTimeout(timer);
    this.restartTimers.clear();
    for (const request of [...this.requests.values()])
      this.settle(request, "cancelled", new ServerError("UNAVAILABLE", "the server is shutting down"));
    this.queue = [];
    // A worker still starting stops itself once it is up (openWorker checks `closed`).
    await Promise.allSettled([...this.starting]);
    await Promise.all(this.slots.map((thread) => thread.stop()));
    this.slots.length = 0;
  }

  // ---------------------------------------------------------------- admission
  /**
   * Claims a place in the queue, or refuses at once when it is full or, with a latency objective, when
   * even every flexible request at its floor would not answer this one within it.
   */
  private reserve(ladder: TargetLadder): Admission {
    const { maxBatch, maxQueue, latencyObjectiveMs } = this.options;
    // A slot whose batch is over max-batch (readers that resumed at once) offers nothing, not less.
    const free = this.slots.reduce((sum, slot) => sum + Math.max(0, maxBatch - slot.load), 0);
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
      const running = this.slots.reduce((sum, slot) => sum + slot.load, 0);
      this.observer?.refused?.(this.name, "queue");
      throw new ServerError(
        "RESOURCE_EXHAUSTED",
        `model ${this.name} is at capacity: ${running} request(s) running (max-batch ${maxBatch} x ${this.slots.length} worker(s)) and ${waiting} waiting (max-queue ${maxQueue}); retry later`,
      );
    }
    this.preparing++;
    return admission;
  }

  /** Moves queued requests to the least-loaded workers with a free slot. */
  private dispatch(): void {
    while (this.queue.length > 0) {
      let slot: SchedulerThread | undefined;
      for (const s of this.slots) if (s.load < this.options.maxBatch && (!slot || s.load < slot.load)) slot = s;
      if (!slot) break;
      const request = this.queue.shift() as Request;
      clearTimeout(request.expiry);
      if (Date.now() >= request.deadlineAt) {
        this.expire(request);
        continue;
      }
      slot.requests.add(request.id);
      request.worker = slot;
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
      slot.post(message, [request.input.buffer as ArrayBuffer]);
    }
    this.reportOccupancy();
  }

  private reportOccupancy(): void {
    const active = this.slots.reduce((sum, slot) => sum + slot.load, 0);
    const parked = this.slots.reduce((sum, slot) => sum + slot.parked.size, 0);
    this.observer?.occupancy(this.name, this.queue.length, active, parked);
  }

  /**
   * Keeps the worker's view of a paced request in step: it parks the request once it is `readAhead`
   * ticks past what the reader has taken, and so does this. A reader that takes ticks as they come is
   * never that far behind (its next read follows each tick within the same event-loop turn), so a
   * parked request is one whose reader is stuck (a gRPC stream waiting for HTTP/2 flow control). It
   * gives its batch slot back, and takes it back when its reader catches up, even over max-batch:
   * its state is on the worker already, and new requests wait until the batch is back under.
   */
  private pace(request: Request): void {
    const slot = request.worker;
    if (!slot || request.readAhead === 0) return;
    const parked = request.pushed - request.taken >= request.readAhead;
    if (parked === slot.parked.has(request.id)) return;
    if (parked) slot.parked.add(request.id);
    else slot.parked.delete(request.id);
    if (parked) this.dispatch();
    else this.reportOccupancy();
  }

  /** Credits go out once per event-loop turn, one message per worker, however many readers took ticks. */
  private credit(request: Request, tick: number): void {
    const slot = request.worker;
    if (!slot || request.readAhead === 0) return;
    request.taken = tick;
    this.pace(request);
    const pending = this.credits.get(slot);
    if (pending) {
      pending.push([request.id, tick]);
      return;
    }
    this.credits.set(slot, [[request.id, tick]]);
    if (this.credits.size === 1) {
      setImmediate(() => {
        for (const [worker, credits] of this.credits) {
          worker.post({ type: "credit", credits });
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

  // ---------------------------------------------------------------- workers
  /** Starts worker `index` and gives it a slot; one that comes up after close() is stopped instead. */
  private async startWorker(index: number): Promise<void> {
    if (this.closed) return;
    // Tracked to the end, stop included, so that close() returns only once no thread of ours is left.
    const starting = this.openWorker(index);
    this.starting.add(starting);
    try {
      await starting;
    } finally {
      this.starting.delete(starting);
    }
  }

  private async openWorker(index: number): Promise<void> {
    const data: WorkerData = {
      model: this.definition,
      session: this.options.session,
      niceness: this.options.workerNice,
      warmUpRows: this.options.maxBatch,
    };
    let thread: SchedulerThread;
    try {
      thread = await SchedulerThread.start(index, data, {
        step: (t, step) => this.onStep(t, step),
        error: (t, error) =>
          this.log.error({ model: this.name, worker: t.index, err: error }, "scheduler worker failed"),
        exit: (t, code) => this.onWorkerExit(t, code),
      });
    } catch (error) {
      throw new Error(`model ${this.name}: ${error instanceof Error ? error.message : String(error)}`);
    }
    if (this.closed) {
      await thread.stop();
      return;
    }
    this.provider = thread.provider;
    if (thread.fallbackReason) {
      // The same reason holds for every model and worker of the process: one warning says it, the rest
      // go to debug, so that a CPU machine serving several models logs one clear line.
      const first = !reportedFallbacks.has(thread.fallbackReason);
      reportedFallbacks.add(thread.fallbackReason);
      this.log[first ? "warn" : "debug"](
        { model: this.name, worker: index, provider: "cpu", reason: thread.fallbackReason },
        `provider auto: CUDA is unavailable, falling back to CPU: ${thread.fallbackReason}`,
      );
    }
    this.slots.push(thread);
    this.dispatch();
  }

  private onStep(slot: SchedulerThread, step: StepMessage): void {
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
      if (!request || request.worker !== slot) continue;
      this.requests.delete(done.id);
      slot.requests.delete(done.id);
      slot.parked.delete(done.id);
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
   * A worker that dies takes its requests with it (they fail at once with UNAVAILABLE); a replacement
   * keeps the model serving. During a drain none is started: the queue then fails at once if no
   * worker is left, rather than waiting out the grace period for a slot that will not come.
   */
  private onWorkerExit(slot: SchedulerThread, code: number): void {
    const at = this.slots.indexOf(slot);
    if (at >= 0) this.slots.splice(at, 1);
    if (this.closed) return;
    const restart = !this.draining;
    this.log.error(
      { model: this.name, worker: slot.index, code, lost: slot.requests.size },
      restart ? "scheduler worker exited; restarting it" : "scheduler worker exited during shutdown; not restarting it",
    );
    const then = restart
      ? "it has been restarted, retry the request"
      : "the server is shutting down and does not restart it; retry the request on another server";
    for (const id of [...slot.requests]) {
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
    if (restart) {
      this.restartWorker(slot.index, `its inference worker ${slot.index} stopped (exit code ${code})`, 0);
    } else if (this.slots.length === 0) {
      const error = `model ${this.name}: its inference worker stopped during shutdown (exit code ${code}) and is not restarted; retry the request on another server`;
      for (const request of [...this.queue]) this.settle(request, "failed", new ServerError("UNAVAILABLE", error));
    }
    this.dispatch();
    this.checkIdle();
  }

  /**
   * Starts worker `index` again; while that fails, tries again after a doubling wait (up to
   * RESTART_BACKOFF_CAP_MS). A model left with no worker meanwhile is FAILED until one starts.
   */
  private restartWorker(index: number, cause: string, attempt: number): void {
    this.startWorker(index).then(
      () => {
        if (this.closed || this.failed === undefined || this.slots.length === 0) return;
        this.log.info(
          { model: this.name, worker: index, attempts: attempt + 1 },
          "scheduler worker restarted; serving again",
        );
        this.setFailure(undefined);
      },
      (error: unknown) => {
        if (this.closed) return;
        const wait = Math.min(RESTART_BACKOFF_CAP_MS, RESTART_BACKOFF_MS * 2 ** attempt);
        const reason = error instanceof Error ? error.message : String(error);
        this.log.error(
          { model: this.name, worker: index, attempt: attempt + 1, retryInMs: wait, err: error },
          "could not restart scheduler worker",
        );
        if (this.slots.length === 0) {
          this.setFailure(
            `model ${this.name} is not serving: ${cause} and could not be restarted: ${reason}; the server keeps retrying`,
          );
        }
        const timer = setTimeout(() => {
          this.restartTimers.delete(timer);
          this.restartWorker(index, cause, attempt + 1);
        }, wait);
        this.restartTimers.add(timer);
      },
    );
  }

  /** Enters or leaves the FAILED state; entering it fails every queued request at once. */
  private setFailure(failure: string | undefined): void {
    if (failure === this.failed) return;
    this.failed = failure;
    if (failure) {
      for (const request of [...this.queue]) this.settle(request, "failed", new ServerError("UNAVAILABLE", failure));
    }
    for (const listener of this.failureListeners) listener(failure);
  }
}
