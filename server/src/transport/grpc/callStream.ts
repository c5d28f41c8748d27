/**
 * The HTTP/2 stream under a grpc-js server call, for the two things grpc-js offers no public way to do:
 * see a request's bytes before its message is whole (requestArrival.ts counts and times them), and
 * reset a stream whose client stopped reading. A status cannot reach such a client: trailers go out
 * only after the responses queued before them, which the client's flow-control window holds back, so
 * without a reset the call, its queued responses and its stream slot stay until the connection closes.
 *
 * grpc-js 1.14 (pinned exactly in package.json) keeps the stream as `stream` on the call the first
 * interceptor wraps (BaseServerInterceptingCall, server-interceptors.ts). A later grpc-js that moves
 * it fails requestArrival.test.ts; the interceptor then logs that it cannot see the stream.
 */
import http2 from "node:http2";

/** Per call: keyed by the call's metrics recorder, the one object grpc-js gives its handler and every interceptor. */
const streams = new WeakMap<object, http2.ServerHttp2Stream>();

/** Any server call or interceptor call: each hands out the same per-call recorder. */
interface RecordedCall {
  getMetricsRecorder(): object;
}

/** The HTTP/2 stream under the call the first interceptor wraps, or undefined if grpc-js keeps it elsewhere. */
export function http2StreamOf(baseCall: unknown): http2.ServerHttp2Stream | undefined {
  const stream = (baseCall as { stream?: unknown }).stream;
  if (typeof stream !== "object" || stream === null) return undefined;
  const candidate = stream as Partial<http2.ServerHttp2Stream>;
  return typeof candidate.respond === "function" && typeof candidate.close === "function" && "rstCode" in candidate
    ? (stream as http2.ServerHttp2Stream)
    : undefined;
}

/** Remembers `stream` as the call's, for resetCall. */
export function registerCallStream(call: RecordedCall, stream: http2.ServerHttp2Stream): void {
  streams.set(call.getMetricsRecorder(), stream);
}

/**
 * Ends the call's HTTP/2 stream at once with RST_STREAM CANCEL, dropping what is queued for it; grpc-js
 * then reports the call cancelled to its handler. Returns false when the stream is not known.
 */
export function resetCall(call: RecordedCall): boolean {
  const stream = streams.get(call.getMetricsRecorder());
  if (!stream) return false;
  if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
  return true;
}
