/**
 * Closed loop: `concurrency` callers, each sending its next request the moment the previous one
 * answers, until the budget is spent. Requests in flight when a duration ends still count.
 */
import type { Caller, CallOutcome } from "./ctmCaller.ts";
import type { Sample } from "./samples.ts";
import type { Budget } from "./sweepPlan.ts";

export interface DriveOptions {
  budget: Budget;
  call: Caller;
  /** The next input; the sweep hands samples out round-robin. */
  nextSample: () => Sample;
  onOutcome: (sample: Sample, outcome: CallOutcome) => void;
  signal: AbortSignal;
}

export interface Drive {
  /** From the first send to the last answer. */
  elapsedS: number;
  sent: number;
  /** Open loop only: requests sent per second of schedule. */
  offeredRps: number | null;
}

export async function driveClosedLoop(concurrency: number, options: DriveOptions): Promise<Drive> {
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
