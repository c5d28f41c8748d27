/**
 * How long a call's work may go on: an AbortSignal that fires when the client cancels or the call's
 * deadline passes (so the engine drops the job at the next tick boundary), and a wait for 'drain' that
 * respects a writable call's backpressure. Shared by every service, so that ctm.v1 and the Open
 * Inference Protocol cancel and pace their work the same way.
 */
import type * as grpc from "@grpc/grpc-js";

/** What every kind of server call has: a deadline, and a 'cancelled' event. */
export interface AbortableCall {
  getDeadline(): grpc.Deadline;
  readonly cancelled: boolean;
  readonly destroyed?: boolean;
  on(event: "cancelled", listener: () => void): unknown;
  removeListener(event: "cancelled", listener: () => void): unknown;
}

export interface CallAbort {
  signal: AbortSignal;
  /** Throws the abort reason when the call is gone, even before its 'cancelled' event fired. */
  throwIfGone: () => void;
  dispose: () => void;
}

/** Aborts when the client cancels or the call's deadline passes. */
export function abortSignalOf(call: AbortableCall): CallAbort {
  const controller = new AbortController();
  const deadline = call.getDeadline();
  const deadlineAt = deadline instanceof Date ? deadline.getTime() : deadline;
  const expire = () => controller.abort(new DOMException("the call's deadline passed", "TimeoutError"));
  // grpc-js ends a call whose deadline passed as if it were cancelled; tell the two apart here.
  const onCancel = () =>
    Date.now() >= deadlineAt
      ? expire()
      : controller.abort(new DOMException("the client cancelled the call", "AbortError"));
  call.on("cancelled", onCancel);
  if (call.cancelled) onCancel();
  // grpc-js answers DEADLINE_EXCEEDED by itself but need not tell the handler, so keep a timer too.
  const timer = Number.isFinite(deadlineAt) ? setTimeout(expire, Math.max(0, deadlineAt - Date.now())) : undefined;
  return {
    signal: controller.signal,
    // grpc-js may mark a call cancelled before its 'cancelled' event fires.
    throwIfGone: () => {
      if (call.cancelled || call.destroyed) onCancel();
      controller.signal.throwIfAborted();
    },
    dispose: () => {
      clearTimeout(timer);
      call.removeListener("cancelled", onCancel);
    },
  };
}

/** Resolves on 'drain', or when the call ends first (a cancelled call never drains). */
export function drained(
  call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>,
): Promise<void> {
  if (call.cancelled || call.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      call.removeListener("drain", done);
      call.removeListener("cancelled", done);
      call.removeListener("close", done);
      resolve();
    };
    call.once("drain", done);
    call.once("cancelled", done);
    call.once("close", done);
  });
}
