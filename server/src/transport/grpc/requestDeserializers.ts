/**
 * Wrappers around a gRPC service definition's request deserializers, for any service whose requests
 * carry a model's input. grpc-js decodes a request before any handler sees it, so what must happen
 * before decoding (refusing a request from its size alone), or instead of grpc-js's own reaction to a
 * body it cannot decode, happens here; the handler then refuses what the wrappers marked
 * (throwIfUndecodable). Each protocol composes them once, where it builds its service definition
 * (guardedDecoding).
 */
import type * as grpc from "@grpc/grpc-js";
import { invalidArgument, type ServerError } from "../../engine/serverError.ts";

/** Marks a request body that is not a valid protobuf message; see tolerantDecoding. */
const UNDECODABLE = Symbol("undecodable request");

export interface UndecodableRequest {
  [UNDECODABLE]: { bytes: number; reason: string };
}

/** Marks a request refused from its size alone, before it was decoded; see screenedDecoding. */
const REFUSED = Symbol("refused request");

export interface RefusedRequest {
  [REFUSED]: ServerError;
}

/** The size of the message body a decoded request came from, for in-flight accounting. */
export const MESSAGE_BYTES = Symbol("message bytes");

/** The body size a decoded request came from (see weighedDecoding); undefined for any other message. */
export function messageBytesOf(message: unknown): number | undefined {
  return typeof message === "object" && message !== null && MESSAGE_BYTES in message
    ? (message as { [MESSAGE_BYTES]: number })[MESSAGE_BYTES]
    : undefined;
}

type Deserialize = (bytes: Buffer) => unknown;

/** `service` with the request deserializer of each of `methods` replaced by `wrap(its own)`. */
function wrapDeserializers(
  service: grpc.ServiceDefinition,
  methods: readonly string[],
  wrap: (deserialize: Deserialize) => Deserialize,
): grpc.ServiceDefinition {
  const wrapped: Record<string, grpc.MethodDefinition<unknown, unknown>> = { ...service };
  for (const name of methods) {
    const method = service[name];
    if (!method) throw new Error(`the service has no ${name} method to decode; this is a bug`);
    wrapped[name] = { ...method, requestDeserialize: wrap(method.requestDeserialize) };
  }
  return wrapped as grpc.ServiceDefinition;
}

/**
 * `service` with `methods` decoding tolerantly: grpc-js answers a body that fails to deserialize with
 * INTERNAL ("Error deserializing request"), which would blame the server for a client's bytes. The
 * tolerant deserializer hands such a body to the handler as a marker instead, and throwIfUndecodable
 * refuses it with INVALID_ARGUMENT.
 */
export function tolerantDecoding(service: grpc.ServiceDefinition, methods: readonly string[]): grpc.ServiceDefinition {
  return wrapDeserializers(service, methods, (deserialize) => (bytes) => {
    try {
      return deserialize(bytes);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      return { [UNDECODABLE]: { bytes: bytes.length, reason } } satisfies UndecodableRequest;
    }
  });
}

/**
 * `service` with `methods` tagging each decoded request with its body size (MESSAGE_BYTES), so that
 * the in-flight bound counts them: a unary call's until the call ends, a stream's message until its
 * handler calls releaseMessage (inflightBytes.ts).
 */
export function weighedDecoding(service: grpc.ServiceDefinition, methods: readonly string[]): grpc.ServiceDefinition {
  return wrapDeserializers(
    service,
    methods,
    (deserialize) => (bytes) => Object.assign(deserialize(bytes) as object, { [MESSAGE_BYTES]: bytes.length }),
  );
}

/**
 * `service` with `methods` reading each body with `screen` before decoding it: a body `screen` refuses
 * (from its framing alone) is handed to the handler as that refusal, never decoded.
 */
export function screenedDecoding(
  service: grpc.ServiceDefinition,
  methods: readonly string[],
  screen: (body: Buffer) => ServerError | undefined,
): grpc.ServiceDefinition {
  return wrapDeserializers(service, methods, (deserialize) => (bytes) => {
    const refusal = screen(bytes);
    return refusal ? ({ [REFUSED]: refusal } satisfies RefusedRequest) : deserialize(bytes);
  });
}

/**
 * The whole decoding of the `methods` that carry a model's input, in the one order that works: a body
 * `screen` refuses is never decoded (nor counted in flight: it is not kept); any other is decoded
 * tolerantly, and what comes of it (the message or the undecodable marker) carries its body size.
 */
export function guardedDecoding(
  service: grpc.ServiceDefinition,
  methods: readonly string[],
  screen: (body: Buffer) => ServerError | undefined,
): grpc.ServiceDefinition {
  return screenedDecoding(weighedDecoding(tolerantDecoding(service, methods), methods), methods, screen);
}

/**
 * INVALID_ARGUMENT for a body that tolerantDecoding could not decode as a `messageType`, and the
 * refusal of one that screenedDecoding refused unread.
 */
export function throwIfUndecodable<T extends object>(
  request: T | UndecodableRequest | RefusedRequest,
  messageType: string,
): asserts request is T {
  if (REFUSED in request) throw request[REFUSED];
  if (UNDECODABLE in request) {
    const { bytes, reason } = request[UNDECODABLE];
    throw invalidArgument(`the request (${bytes} bytes) is not a valid ${messageType} message: ${reason}`);
  }
}
