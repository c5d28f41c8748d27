/**
 * Node's setTimeout takes at most 2^31 - 1 ms (about 24.8 days): a longer delay fires after 1 ms, with
 * a TimeoutOverflowWarning. halt_policy.deadline_ms is a uint32, so a client may ask for 49.7 days; a
 * timer for such a deadline waits the longest Node allows and is armed again when it fires early.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** The delay to give setTimeout for a moment `at` (epoch ms): 0 if past, never beyond MAX_TIMER_MS. */
export function timerDelay(at: number, now = Date.now()): number {
  return Math.min(MAX_TIMER_MS, Math.max(0, at - now));
}
