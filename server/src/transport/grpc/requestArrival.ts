/**
 * Request bytes as they arrive, before grpc-js has a whole message to decode. grpc-js buffers a
 * message's parts until its last byte comes, with no bound but the message limit and no time limit:
 * 6 connections x 256 streams, each sending most of a 1 MB message and then nothing, held 964 MB with
 * no status and no log line. So this interceptor, first in the chain, reads the gRPC framing of every
 * DATA chunk as it arrives (before grpc-js does) and
 *
 * - takes the bytes of a message still arriving from --max-inflight-bytes, the bound its decoded form
 *   is counted against next (inflightBytes.ts), and gives them back once the message is whole: a
 *   message that would pass the bound ends its call with RESOURCE_EXHAUSTED, as soon as its length
 *   prefix says so;
 * - ends a call with DEADLINE_EXCEEDED when its request does not arrive within `receiveTimeoutMs`:
 *   for a unary or server-streaming method, the request message and the end of the client's stream,
 *   from the call's start; for a client- or bidi-streaming one, each message from its first byte (a
 *   stream may rightly wait between messages);
 * - refuses a message whose length prefix is beyond the message limit with the refusal `tooLarge`
 *   words (naming the flag to change), before grpc-js's own "Received message larger than max";
 * - takes, for a compressed message, what inflating it may hold (its parts and their concatenation:
 *   twice the message limit) from the same bound, from the moment it is whole until grpc-js hands it
 *   on decoded: grpc-js inflates it where nothing counts it, and 96 gzip bombs of a few KB each,
 *   inflating at once to the 8 MiB limit, took 523 MiB. The reservation is held for the few
 *   milliseconds inflation takes, so it costs an honest client nothing it would notice.
 *
 * A call it ends has its stream reset afterwards, so that a client still sending stops.
 */
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { http2StreamOf, registerCallStream } from "./callStream.ts";
import { type InflightBytes, inflightRefusal } from "./inflightBytes.ts";

export interface ArrivalOptions {
  inflight: InflightBytes;
  /** How long a request may take to arrive (see above); the server's --receive-timeout-ms. */
  receiveTimeoutMs: number;
  /** Largest message read: grpc.max_receive_message_length. */
  maxMessageBytes: number;
  /**
   * The largest message of the method at `path` (at most maxMessageBytes): methods that carry no input
   * (health, model descriptions, reflection) have no use for megabytes, and a 1 MB health service name
   * decoded a hundred times over is 100 MB of the event loop's memory counted nowhere.
   */
  limitOf?: (path: string) => number;
  /** The refusal of a message of `bytes` beyond `limit` (maxMessageBytes or the method's own). */
  tooLarge: (bytes: number, limit: number) => string;
  /** Told once if grpc-js no longer shows the call's HTTP/2 stream (then nothing here applies). */
  onMissingStream: () => void;
}

const PREFIX_BYTES = 5;

export function arrivalInterceptor(options: ArrivalOptions): grpc.ServerInterceptor {
  const { inflight, receiveTimeoutMs, maxMessageBytes } = options;
  let warned = false;
  return (method, call) => {
    const stream = http2StreamOf(call);
    if (!stream) {
      if (!warned) options.onMissingStream();
      warned = true;
      return new grpc.ServerInterceptingCall(call);
    }
    registerCallStream(call, stream);
    const messageLimit = Math.min(maxMessageBytes, options.limitOf?.(method.path) ?? maxMessageBytes);
    let ended = false;
    /** Bytes of the message arriving now, taken from `inflight`. */
    let held = 0;
    const prefix = Buffer.alloc(PREFIX_BYTES);
    let prefixHave = 0;
    /** Body bytes of the current message still to come. */
    let remaining = 0;
    let messageBytes = 0;
    let timer: NodeJS.Timeout | undefined;
    /** Per whole message not yet handed on, in order: what its inflation may hold (0: not compressed). */
    const inflating: number[] = [];

    const release = () => {
      if (held > 0) inflight.give(held);
      held = 0;
    };
    const finish = () => {
      ended = true;
      clearTimeout(timer);
      release();
      for (const bytes of inflating.splice(0)) if (bytes > 0) inflight.give(bytes);
      stream.removeListener("data", onData);
    };
    /** Ends the call with `status`, then resets the stream once the status is out. */
    const refuse = (code: grpc.status, details: string) => {
      if (ended) return;
      finish();
      call.sendStatus({ code, details });
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
    };
    const startTimer = (what: () => string) => {
      clearTimeout(timer);
      timer = setTimeout(
        () =>
          refuse(
            grpc.status.DEADLINE_EXCEEDED,
            `${what()} did not arrive within ${receiveTimeoutMs} ms (--receive-timeout-ms); the call was ended`,
          ),
        receiveTimeoutMs,
      );
      timer.unref?.();
    };
    const arrived = () =>
      messageBytes > 0 ? `the request message (${messageBytes - remaining} of ${messageBytes} bytes came)` : "";

    function onData(chunk: Buffer): void {
      if (ended) return;
      let at = 0;
      while (at < chunk.length && !ended) {
        if (remaining === 0) {
          // A message starts: its 5-byte prefix (compressed flag, length).
          if (prefixHave === 0 && method.requestStream) startTimer(() => arrived() || "the request message");
          const got = Math.min(PREFIX_BYTES - prefixHave, chunk.length - at);
          chunk.copy(prefix, prefixHave, at, at + got);
          prefixHave += got;
          at += got;
          if (!take(got)) return;
          if (prefixHave < PREFIX_BYTES) continue;
          const length = prefix.readUInt32BE(1);
          if (length > messageLimit) {
            refuse(grpc.status.RESOURCE_EXHAUSTED, options.tooLarge(length, messageLimit));
            return;
          }
          // A message that could not be held whole is refused before its body comes: reading it only
          // to refuse it at the bound would take the bytes, and the time, all the same.
          if (inflight.bytes - held + PREFIX_BYTES + length > inflight.limit) {
            refuse(grpc.status.RESOURCE_EXHAUSTED, inflightRefusal(inflight, PREFIX_BYTES + length).details);
            return;
          }
          remaining = length;
          messageBytes = PREFIX_BYTES + length;
          if (remaining === 0) whole();
          continue;
        }
        const body = Math.min(remaining, chunk.length - at);
        remaining -= body;
        at += body;
        if (!take(body)) return;
        if (remaining === 0) whole();
      }
    }
    function take(bytes: number): boolean {
      if (inflight.tryTake(bytes)) {
        held += bytes;
        return true;
      }
      refuse(grpc.status.RESOURCE_EXHAUSTED, inflightRefusal(inflight, held + bytes).details);
      return false;
    }
    /** The message is whole: grpc-js decodes it next, and the in-flight bound counts it from there. */
    function whole(): void {
      release();
      const inflation = prefix[0] === 1 ? 2 * maxMessageBytes : 0;
      prefixHave = 0;
      messageBytes = 0;
      if (method.requestStream) clearTimeout(timer);
      if (inflation > 0 && !inflight.tryTake(inflation)) {
        const refusal = inflightRefusal(inflight, inflation).details;
        refuse(
          grpc.status.RESOURCE_EXHAUSTED,
          `inflating this compressed message may take ${inflation} bytes: ${refusal}`,
        );
        return;
      }
      inflating.push(inflation);
    }

    // Before grpc-js's own listener, so that a refusal here comes before its decoder sees the bytes.
    stream.prependListener("data", onData);
    if (!method.requestStream) startTimer(() => arrived() || "the request (its message and the end of its stream)");
    return new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMessage(message, nextMessage) {
            const inflation = inflating.shift();
            if (inflation) inflight.give(inflation);
            nextMessage(message);
          },
          onReceiveHalfClose(nextHalfClose) {
            if (!method.requestStream) clearTimeout(timer);
            nextHalfClose();
          },
          onCancel() {
            finish();
          },
        });
      },
      sendStatus(status, next) {
        finish();
        next(status);
      },
    });
  };
}
