/**
 * How long a call's work may go on: an AbortSignal that fires when the client cancels or the call's
 * deadline passes (so the engine drops the job at the next tick boundary), and a wait for 'drain' that
 * respects a writable call's backpressure. Shared by every service, so that ctm.v1 and the Open
 * Inference Protocol cancel and pace their work the same way.
 */
import type * as grpc from "@grpc/grpc-js";
import { ServerError } from "../../engine/serverError.ts";
import { resetCall } from "./callStream.ts";

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

/** How close to its deadline a cancelled call counts as timed out rather than cancelled by its client. */
const DEADLINE_SLACK_MS = 5;

/** Aborts when the client cancels or the call's deadline passes. */
export function abortSignalOf(call: AbortableCall): CallAbort {
  const controller = new AbortController();
  const deadline = call.getDeadline();
  const deadlineAt = deadline instanceof Date ? deadline.getTime() : deadline;
  const expire = () => controller.abort(new DOMException("the call's deadline passed", "TimeoutError"));
  // grpc-js ends a call whose deadline passed as if it were cancelled; tell the two apart here. Its
  // deadline timer may fire a moment before the wall clock reaches the deadline (timers round), so a
  // cancellation within DEADLINE_SLACK_MS of it counts as the deadline.
  const onCancel = () =>
    Date.now() >= deadlineAt - DEADLINE_SLACK_MS
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

/**
 * Resolves on 'drain', or when the call ends first (a cancelled call never drains); rejects with
 * DEADLINE_EXCEEDED when neither happens within `idleMs`: a client that stops reading would otherwise
 * hold its request (and its HTTP/2 stream) for as long as its connection lives. DEADLINE_EXCEEDED
 * rather than RESOURCE_EXHAUSTED: what ran out is time, and retrying at once would not help a client
 * that does not read. No status could reach it (trailers wait behind the messages it does not take),
 * so the call's stream is reset, which lets go of them too.
 */
export function drained(
  call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>,
  idleMs: number,
  onIdle: (details: string) => void,
): Promise<void> {
  if (call.cancelled || call.destroyed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const finish = () => {
      clearTimeout(timer);
      call.removeListener("drain", done);
      call.removeListener("cancelled", done);
      call.removeListener("close", done);
    };
    const done = () => {
      finish();
      resolve();
    };
    const timer = setTimeout(() => {
      finish();
      const details = `the client took no message for ${idleMs} ms (--stream-write-idle-ms); the stream was ended to free its place in the batch`;
      onIdle(details);
      reject(new ServerError("DEADLINE_EXCEEDED", details));
      resetCall(call);
    }, idleMs);
    call.once("drain", done);
    call.once("cancelled", done);
    call.once("close", done);
  });
}
