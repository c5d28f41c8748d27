/**
 * One bound on the request bytes that all calls in progress hold together. Per-message limits alone
 * let 100 concurrent calls of 16 MiB each hold 1.6 GB; here a call's message counts from the moment
 * it is received until the call ends (status sent or cancelled), and a message that would take the
 * total past the bound is refused with RESOURCE_EXHAUSTED at once, before the handler sees it.
 *
 * Only messages that carry their body size (the requests that carry a model's input, see weighedDecoding
 * in requestDeserializers.ts) count: the others are a few bytes. A stream's messages (ModelStreamInfer)
 * each count until their handler is done with them and calls releaseMessage, so that a long stream
 * does not hold every request it sent.
 */
import * as grpc from "@grpc/grpc-js";
import { ServerError } from "../../engine/serverError.ts";
import { messageBytesOf } from "./requestDeserializers.ts";

export class InflightBytes {
  private held = 0;

  constructor(readonly limit: number) {}

  /** Bytes held by calls in progress. */
  get bytes(): number {
    return this.held;
  }

  /** Takes `bytes` if they fit under the bound; false (and nothing taken) if not. */
  tryTake(bytes: number): boolean {
    if (this.held + bytes > this.limit) return false;
    this.held += bytes;
    return true;
  }

  give(bytes: number): void {
    this.held -= bytes;
    if (this.held < 0) throw new Error(`in-flight bytes went negative (${this.held}). This is a bug.`);
  }
}

/** The refusal of a request of `bytes` that does not fit (also the playground's HTTP port's). */
export function inflightRefusal(inflight: InflightBytes, bytes: number): ServerError {
  return new ServerError(
    "RESOURCE_EXHAUSTED",
    `the server holds ${inflight.bytes} bytes of requests in progress; this ${bytes}-byte request would pass the ${inflight.limit} it allows (--max-inflight-bytes); retry shortly`,
  );
}

const RELEASE = Symbol("release message bytes");

/** Gives back the bytes a streamed request message holds, once its handler is done with it (idempotent). */
export function releaseMessage(message: unknown): void {
  if (typeof message === "object" && message !== null && RELEASE in message)
    (message as { [RELEASE]: () => void })[RELEASE]();
}

/** Counts each call's request message against `inflight` until the call ends (a stream's: see releaseMessage). */
export function inflightInterceptor(inflight: InflightBytes): grpc.ServerInterceptor {
  return (method, call) => {
    let taken = 0;
    let ended = false;
    let refused = false;
    const release = () => {
      ended = true;
      if (taken > 0) inflight.give(taken);
      taken = 0;
    };
    return new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMessage(message, nextMessage) {
            const bytes = messageBytesOf(message);
            if (bytes === undefined || ended) return nextMessage(message);
            if (!inflight.tryTake(bytes)) {
              ended = true;
              refused = true;
              return call.sendStatus({
                code: grpc.status.RESOURCE_EXHAUSTED,
                details: inflightRefusal(inflight, bytes).details,
              });
            }
            taken += bytes;
            if (method.requestStream) {
              let released = false;
              Object.defineProperty(message, RELEASE, {
                value: () => {
                  if (released || ended) return;
                  released = true;
                  taken -= bytes;
                  inflight.give(bytes);
                },
              });
            }
            nextMessage(message);
          },
          onReceiveHalfClose(nextHalfClose) {
            if (!refused) nextHalfClose();
          },
          onCancel: release,
        });
      },
      sendStatus(status, next) {
        release();
        next(status);
      },
    });
  };
}
