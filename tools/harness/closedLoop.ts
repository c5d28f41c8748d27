/**
 * Closed loop: `concurrency` callers, each sending its next request the moment the previous one
 * answers, until the budget is spent. Requests in flight when a duration ends still count.
 */

/** How much load a drive offers: for so long, or so many requests. */
export type Budget = { kind: "duration"; seconds: number } | { kind: "requests"; count: number };

/**
 * One request of a load: `intendedAt` (a performance.now() time) is when it was meant to start, which
 * its latency counts from; `signal` cancels it when the drive is aborted.
 */
export type LoadCall<S, O> = (sample: S, intendedAt: number, signal: AbortSignal) => Promise<O>;

export interface DriveOptions<S, O> {
  budget: Budget;
  call: LoadCall<S, O>;
  /** The next input (a sweep hands samples out round-robin). */
  nextSample: () => S;
  onOutcome: (sample: S, outcome: O) => void;
  signal: AbortSignal;
}

export interface Drive {
  /** From the first send to the last answer. */
  elapsedS: number;
  sent: number;
  /** Open loop only: requests sent per second of schedule. */
  offeredRps: number | null;
}

export async function driveClosedLoop<S, O>(concurrency: number, options: DriveOptions<S, O>): Promise<Drive> {
  const { budget, call, nextSample, onOutcome, signal } = options;
  const start = performance.now();
  const end = budget.kind === "duration" ? start + budget.seconds * 1000 : Number.POSITIVE_INFINITY;
  let sent = 0;
  let lastDone = start;
  const more = () => !signal.aborted && (budget.kind === "requests" ? sent < budget.count : performance.now() < end);
  const caller = async () => {
    while (more()) {
      sent++;
      const sample = nextSample();
      const outcome = await call(sample, performance.now(), signal);
      lastDone = performance.now();
      onOutcome(sample, outcome);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, caller));
  return { elapsedS: (lastDone - start) / 1000, sent, offeredRps: null };
}
