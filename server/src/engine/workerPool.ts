/**
 * One model's scheduler workers, supervised: opened at start-up, and each one that dies restarted,
 * with backoff while restarts fail. While the model has no worker at all and its restart failed, it is
 * FAILED (`failure` names the cause) until a restart succeeds. During a drain a worker that dies is
 * not restarted, and after close() none starts at all.
 *
 * The pool knows workers, not requests: what a dead worker's requests become, and what the queue does
 * while the model is FAILED, is the engine's (modelEngine.ts), told through the events.
 */
import type { EngineLog } from "./engineLog.ts";
import { SchedulerThread } from "./schedulerThread.ts";
import type { StepMessage, WorkerData } from "./workerProtocol.ts";

/** First wait before restarting a worker again after a restart failed; it doubles up to the cap. */
const RESTART_BACKOFF_MS = 500;
const RESTART_BACKOFF_CAP_MS = 30_000;

/** How long to wait before the restart after `failed` restarts in a row have failed. */
function restartBackoffMs(failed: number): number {
  return Math.min(RESTART_BACKOFF_CAP_MS, RESTART_BACKOFF_MS * 2 ** failed);
}

/** Provider fallback reasons already logged at warn by this process (see open). */
const reportedFallbacks = new Set<string>();

/** What the pool tells the engine; none of it is called after close(). */
export interface WorkerPoolEvents {
  /** A worker opened (at start-up or as a replacement) and is in `workers`: it can take requests. */
  opened(): void;
  step(worker: SchedulerThread, step: StepMessage): void;
  /**
   * A worker exited and has left `workers`; its requests are lost. `restarting`: a replacement is
   * being started (false during a drain).
   */
  lost(worker: SchedulerThread, code: number, restarting: boolean): void;
}

export class WorkerPool {
  /** The running workers, each with its sessions open. */
  readonly workers: SchedulerThread[] = [];
  provider: "cpu" | "cuda" = "cpu";
  /** drain() was called: a worker that dies is not restarted. */
  private draining = false;
  /** close() was called: no worker may start or be restarted any more. */
  private closed = false;
  /** Why the model has no worker and cannot get one; undefined while it serves. */
  private failed: string | undefined;
  private readonly failureListeners: ((failure: string | undefined) => void)[] = [];
  /** Workers starting (at start-up or as replacements), for close() to wait for. */
  private readonly starting = new Set<Promise<unknown>>();
  private readonly restartTimers = new Set<NodeJS.Timeout>();

  constructor(
    /** The model's name, for messages and logs. */
    private readonly model: string,
    private readonly data: WorkerData,
    private readonly log: EngineLog,
    private readonly events: WorkerPoolEvents,
  ) {}

  /** Starts `count` workers; resolves once every one has its sessions open, rejects if one cannot. */
  async open(count: number): Promise<void> {
    // Settled, not raced: a worker still starting when another fails must be stopped too (by close()).
    const started = await Promise.allSettled(Array.from({ length: count }, (_, i) => this.start(i)));
    const failure = started.find((outcome) => outcome.status === "rejected");
    if (failure) throw failure.reason;
  }

  /**
   * Why the model is not serving: it has no running worker and restarting one failed (the message
   * names the cause). Undefined while it serves; it clears by itself when a restart succeeds.
   */
  get failure(): string | undefined {
    return this.failed;
  }

  /** Calls `listener` whenever `failure` changes, in the order the listeners were added. */
  onFailureChange(listener: (failure: string | undefined) => void): void {
    this.failureListeners.push(listener);
  }

  /** From now on a worker that dies is not restarted. */
  drain(): void {
    this.draining = true;
  }

  /** Stops every worker, those still starting included, and restarts none any more. */
  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.restartTimers) clearTimeout(timer);
    this.restartTimers.clear();
    // A worker still starting stops itself once it is up (open checks `closed`).
    await Promise.allSettled([...this.starting]);
    await Promise.all(this.workers.map((worker) => worker.stop()));
    this.workers.length = 0;
  }

  /** Starts worker `index` and adds it to `workers`; one that comes up after close() is stopped instead. */
  private async start(index: number): Promise<void> {
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
    let worker: SchedulerThread;
    try {
      worker = await SchedulerThread.start(index, this.data, {
        step: (w, step) => this.events.step(w, step),
        error: (w, error) =>
          this.log.error({ model: this.model, worker: w.index, err: error }, "scheduler worker failed"),
        exit: (w, code) => this.onExit(w, code),
      });
    } catch (error) {
      throw new Error(`model ${this.model}: ${error instanceof Error ? error.message : String(error)}`);
    }
    if (this.closed) {
      await worker.stop();
      return;
    }
    this.provider = worker.provider;
    if (worker.fallbackReason) {
      // The same reason holds for every model and worker of the process: one warning says it, the rest
      // go to debug, so that a CPU machine serving several models logs one clear line.
      const first = !reportedFallbacks.has(worker.fallbackReason);
      reportedFallbacks.add(worker.fallbackReason);
      this.log[first ? "warn" : "debug"](
        { model: this.model, worker: index, provider: "cpu", reason: worker.fallbackReason },
        `provider auto: CUDA is unavailable, falling back to CPU: ${worker.fallbackReason}`,
      );
    }
    this.workers.push(worker);
    this.events.opened();
  }

  /**
   * A worker that dies takes its requests with it (the engine fails them); a replacement keeps the
   * model serving. During a drain none is started.
   */
  private onExit(worker: SchedulerThread, code: number): void {
    const at = this.workers.indexOf(worker);
    if (at >= 0) this.workers.splice(at, 1);
    if (this.closed) return;
    const restarting = !this.draining;
    this.log.error(
      { model: this.model, worker: worker.index, code, lost: worker.requests.size },
      restarting
        ? "scheduler worker exited; restarting it"
        : "scheduler worker exited during shutdown; not restarting it",
    );
    this.events.lost(worker, code, restarting);
    if (restarting) this.restart(worker.index, `its inference worker ${worker.index} stopped (exit code ${code})`, 0);
  }

  /**
   * Starts worker `index` again; while that fails, tries again after a doubling wait (up to
   * RESTART_BACKOFF_CAP_MS). A model left with no worker meanwhile is FAILED until one starts.
   */
  private restart(index: number, cause: string, attempt: number): void {
    this.start(index).then(
      () => {
        if (this.closed || this.failed === undefined || this.workers.length === 0) return;
        this.log.info(
          { model: this.model, worker: index, attempts: attempt + 1 },
          "scheduler worker restarted; serving again",
        );
        this.setFailure(undefined);
      },
      (error: unknown) => {
        if (this.closed) return;
        const wait = restartBackoffMs(attempt);
        const reason = error instanceof Error ? error.message : String(error);
        this.log.error(
          { model: this.model, worker: index, attempt: attempt + 1, retryInMs: wait, err: error },
          "could not restart scheduler worker",
        );
        if (this.workers.length === 0) {
          this.setFailure(
            `model ${this.model} is not serving: ${cause} and could not be restarted: ${reason}; the server keeps retrying`,
          );
        }
        const timer = setTimeout(() => {
          this.restartTimers.delete(timer);
          this.restart(index, cause, attempt + 1);
        }, wait);
        this.restartTimers.add(timer);
      },
    );
  }

  /** Enters or leaves the FAILED state, and tells the listeners. */
  private setFailure(failure: string | undefined): void {
    if (failure === this.failed) return;
    this.failed = failure;
    for (const listener of this.failureListeners) listener(failure);
  }
}
