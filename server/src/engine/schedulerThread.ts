/**
 * One scheduler worker thread as the main thread sees it: started (resolving once its sessions are
 * open), spoken to by message, stopped. The requests it holds are counted here, for admission.
 *
 * Messages sent during one event-loop task go out together, as one postMessage, once the task's
 * microtasks have run: a burst of arrivals (one socket read can carry many calls) wakes the worker
 * once instead of once per request, and a postMessage costs the event loop more than the message.
 */
import type { Worker } from "node:worker_threads";
import { spawnWorker } from "./spawnWorker.ts";
import type { FromWorker, StepMessage, ToWorker, WorkerData } from "./workerProtocol.ts";

const ENTRY = new URL("./schedulerWorker.ts", import.meta.url);
/** A worker that has not exited this long after being asked to stop is terminated. */
const STOP_TIMEOUT_MS = 5000;

/** What a running thread reports; none of it is called before `start` resolves. */
export interface SchedulerThreadEvents {
  step(thread: SchedulerThread, step: StepMessage): void;
  error(thread: SchedulerThread, error: Error): void;
  exit(thread: SchedulerThread, code: number): void;
}

export class SchedulerThread {
  /** Requests admitted to this thread and not yet finished. */
  readonly requests = new Set<number>();
  /**
   * Those of `requests` parked because their reader stopped taking ticks: they cost no compute and
   * hold no batch slot (see ModelEngine's pacing).
   */
  readonly parked = new Set<number>();
  private outbox: ToWorker[] = [];
  private transfer: ArrayBuffer[] = [];

  private constructor(
    readonly index: number,
    private readonly worker: Worker,
    private readonly exited: Promise<void>,
    readonly provider: "cpu" | "cuda",
    /** Set when `auto` fell back to the CPU: why CUDA could not be used. */
    readonly fallbackReason: string | undefined,
  ) {}

  /** Requests holding a batch slot: admitted, not finished, not parked. */
  get load(): number {
    return this.requests.size - this.parked.size;
  }

  /** Starts a thread; rejects with the reason if it cannot open its sessions. */
  static start(index: number, data: WorkerData, events: SchedulerThreadEvents): Promise<SchedulerThread> {
    const worker = spawnWorker(ENTRY, data);
    const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
    return new Promise((resolve, reject) => {
      let thread: SchedulerThread | undefined;
      worker.on("message", (message: FromWorker) => {
        if (message.type === "ready") {
          thread = new SchedulerThread(index, worker, exited, message.provider, message.fallbackReason);
          resolve(thread);
        } else if (message.type === "failed") {
          reject(new Error(`worker ${index} could not start: ${message.message}`));
        } else if (message.type === "step" && thread) {
          events.step(thread, message);
        }
      });
      worker.on("error", (error) => (thread ? events.error(thread, error) : reject(error)));
      worker.on("exit", (code) =>
        thread
          ? events.exit(thread, code)
          : reject(new Error(`worker ${index} exited with code ${code} while starting`)),
      );
    });
  }

  /** Queues a message; it leaves, in order, with the others queued in this task. */
  post(message: ToWorker, transfer: ArrayBuffer[] = []): void {
    if (this.outbox.length === 0) queueMicrotask(() => this.flush());
    this.outbox.push(message);
    this.transfer.push(...transfer);
  }

  private flush(): void {
    if (this.outbox.length === 0) return;
    this.worker.postMessage(this.outbox, this.transfer);
    this.outbox = [];
    this.transfer = [];
  }

  /** Asks the thread to finish its step and exit; terminates it if it does not. */
  async stop(): Promise<void> {
    this.post({ type: "stop" });
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), STOP_TIMEOUT_MS);
    });
    if ((await Promise.race([this.exited, late])) === "late") await this.worker.terminate();
    clearTimeout(timer);
  }
}
