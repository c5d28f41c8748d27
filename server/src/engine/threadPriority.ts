/**
 * Lowers the scheduling priority of the calling thread. Inference workers do this so that, when the
 * cores are busy, the event loop that answers health checks, admits requests and streams ticks runs
 * first: it needs little CPU but needs it promptly, whereas a tick run that waits a moment delays its
 * batch by only that moment. Threads started afterwards (onnxruntime's intra-op pool) inherit it.
 *
 * Linux only (nice is per thread there, addressed by thread id); elsewhere, or without permission,
 * nothing changes and the caller gets `false`.
 */
import { readlinkSync } from "node:fs";
import { getPriority, setPriority } from "node:os";

export function lowerThreadPriority(by: number): boolean {
  try {
    const tid = Number(readlinkSync("/proc/thread-self").split("/").pop());
    if (!Number.isInteger(tid) || tid <= 0) return false;
    setPriority(tid, Math.min(19, getPriority(tid) + by));
    return true;
  } catch {
    return false;
  }
}
