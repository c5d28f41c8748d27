/**
 * Open loop: requests start on a schedule (constant spacing or Poisson arrivals) whatever the server
 * does, and each one's latency counts from its scheduled time, not from when it actually left. A
 * server (or a client event loop) that stalls therefore shows up in the latencies of every request
 * that was due during the stall, instead of silently delaying them: no coordinated omission.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Drive, DriveOptions } from "./closedLoop.ts";

/** How open-loop requests are spaced: evenly, or as a Poisson process (exponential gaps). */
export type Arrival = "constant" | "poisson";

/** mulberry32: small, fast, and the same sequence for the same seed on every platform. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Scheduled send times in milliseconds from the start: the first at 0, then gaps of 1/rate seconds
 * (constant) or exponentially distributed with mean 1/rate (Poisson).
 */
export function arrivalSchedule(rate: number, arrival: Arrival, seed: number): () => number {
  const meanGapMs = 1000 / rate;
  const random = seededRandom(seed);
  let next = 0;
  return () => {
    const due = next;
    // 1 - random() is in (0, 1], so the logarithm is finite.
    next += arrival === "constant" ? meanGapMs : -Math.log(1 - random()) * meanGapMs;
    return due;
  };
}

/** A send closer than this to its time goes now: timers are not finer than a millisecond anyway. */
const SEND_EARLY_MS = 0.5;

export async function driveOpenLoop<S, O>(
  rate: number,
  arrival: Arrival,
  seed: number,
  options: DriveOptions<S, O>,
): Promise<Drive> {
  const { budget, call, nextSample, onOutcome, signal } = options;
  const schedule = arrivalSchedule(rate, arrival, seed);
  const inFlight = new Set<Promise<void>>();
  const start = performance.now();
  let sent = 0;
  let lastDone = start;
  let lastDue = 0;
  let failure: { error: unknown } | undefined;
  while (!signal.aborted && !failure) {
    const offset = schedule();
    if (budget.kind === "duration" ? offset >= budget.seconds * 1000 : sent >= budget.count) break;
    const due = start + offset;
    const wait = due - performance.now();
    if (wait > SEND_EARLY_MS) {
      try {
        await sleep(wait, undefined, { signal });
      } catch {
        break; // aborted
      }
    }
    const sample = nextSample();
    sent++;
    lastDue = offset;
    const request: Promise<void> = call(sample, due, signal).then(
      (outcome) => {
        lastDone = performance.now();
        onOutcome(sample, outcome);
        inFlight.delete(request);
      },
      (error: unknown) => {
        failure ??= { error };
        inFlight.delete(request);
      },
    );
    inFlight.add(request);
  }
  await Promise.all(inFlight);
  if (failure) throw failure.error;
  const scheduleS = budget.kind === "duration" ? budget.seconds : (lastDue + 1000 / rate) / 1000;
  return { elapsedS: (lastDone - start) / 1000, sent, offeredRps: sent / scheduleS };
}
