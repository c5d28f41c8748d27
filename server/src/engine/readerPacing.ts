/**
 * Pacing a request by its reader: the one rule the main thread (ModelEngine, which counts a parked
 * request out of its worker's batch) and the worker (Scheduler, which stops computing it) both apply,
 * each to its own count of the request's ticks, so that they cannot disagree on which requests are
 * parked.
 */

/**
 * How many ticks a paced request may be computed ahead of its reader: enough to hide the round trip
 * of a credit, few enough that a cancellation finds the request near the tick its client last saw.
 */
export const READ_AHEAD_TICKS = 4;

/**
 * Whether a request waits for its reader (is parked): it is paced (`readAhead` > 0) and `readAhead`
 * or more of its `computed` ticks are past the last tick its reader has `taken`.
 */
export function waitsForReader(computed: number, taken: number, readAhead: number): boolean {
  return readAhead > 0 && computed - taken >= readAhead;
}
