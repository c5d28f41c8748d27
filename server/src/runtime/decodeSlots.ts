/**
 * How many images libvips decodes at once, for the whole process, apart from the tick queue. Each
 * decode takes a libuv thread and up to sharp.concurrency() libvips threads; a burst of large images
 * (100 calls of six 7000 x 7000 PNGs took 181 CPU-seconds) would otherwise all start together and
 * starve the event loop and the inference workers of the cores. Waiting for a slot costs nothing, and
 * a request that is cancelled or refused meanwhile leaves the line without decoding anything.
 *
 * One line per process (libvips and libuv's pool are per process), sized by --decode-slots.
 */
import { availableParallelism } from "node:os";

/** Half the cores (at least one): the other half stay with the event loop and the tick workers. */
export function defaultDecodeSlots(cpus = availableParallelism()): number {
  return Math.max(1, Math.ceil(cpus / 2));
}

let slots = defaultDecodeSlots();
let busy = 0;
let started = 0;
const waiting: (() => void)[] = [];

/** Sets how many decodes may run at once (start-up; decodes already running keep their slots). */
export function setDecodeSlots(count: number): void {
  if (!Number.isInteger(count) || count < 1) throw new Error(`decode slots must be a positive integer, got ${count}`);
  slots = count;
  while (busy < slots && waiting.length > 0) {
    busy++;
    waiting.shift()?.();
  }
}

/** Decodes started since the process began, and images waiting for a slot now (for the metrics). */
export function decodeCounts(): { started: number; waiting: number } {
  return { started, waiting: waiting.length };
}

/**
 * Runs `decode` once a slot is free. Rejects with `signal`'s reason, without running it, if the
 * signal aborts first.
 */
export async function inDecodeSlot<T>(decode: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  signal?.throwIfAborted();
  if (busy < slots) busy++;
  else {
    // The slot is handed over by the decode that frees it (busy stays counted).
    await new Promise<void>((resolve, reject) => {
      const take = () => {
        signal?.removeEventListener("abort", leave);
        resolve();
      };
      const leave = () => {
        const at = waiting.indexOf(take);
        if (at >= 0) waiting.splice(at, 1);
        reject(signal?.reason);
      };
      waiting.push(take);
      signal?.addEventListener("abort", leave, { once: true });
    });
  }
  started++;
  try {
    return await decode();
  } finally {
    const next = busy <= slots ? waiting.shift() : undefined;
    if (next) next();
    else busy--;
  }
}
