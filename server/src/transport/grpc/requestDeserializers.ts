/**
 * ClassifyRequest (as decoded by proto-loader) -> the engine's ClassifyJob. Only shape is checked
 * here; bounds that depend on the model are the engine's to check.
 */
import type * as grpc from "@grpc/grpc-js";
import type { ClassifyJob } from "../../engine/modelEngine.ts";
import type { ModelInput } from "../../engine/modelInput.ts";
import { invalidArgument, type ServerError } from "../../engine/serverError.ts";
import { HALT_SIGNALS, type HaltSignal } from "../../model/calibration.ts";
import { type ClassifyRequestMessage, HALT_SIGNAL_NAMES, type HaltSignalName } from "../ctmV1/ctmProtocol.ts";
import {
  oversizeRequest,
  type RequestSizeLimits,
  unfitInferRequest,
  weighClassifyRequest,
  weighInferRequest,
} from "./requestSize.ts";

export interface DecodedClassify {
  model: string;
  version: number;
  job: Omit<ClassifyJob, "streamTicks" | "pacedByReader" | "onInput">;
  includeTrace: boolean;
}

/** Marks a request body that is not a valid protobuf message; see tolerantClassifyDecoding. */
const UNDECODABLE = Symbol("undecodable request");

interface UndecodableRequest {
  [UNDECODABLE]: { bytes: number; reason: string };
}

/** Marks a request refused from its size alone, before it was decoded; see sizedClassifyDecoding. */
const REFUSED = Symbol("refused request");

interface RefusedRequest {
  [REFUSED]: ServerError;
}

/** The size of the message body a decoded request came from, for in-flight accounting. */
export const MESSAGE_BYTES = Symbol("message bytes");

/** The body size a decoded ClassifyRequest came from; undefined for any other message. */
export function messageBytesOf(message: unknown): number | undefined {
  return typeof message === "object" && message !== null && MESSAGE_BYTES in message
    ? (message as { [MESSAGE_BYTES]: number })[MESSAGE_BYTES]
    : undefined;
}

type Deserialize = (bytes: Buffer) => unknown;

/** `service` with the request deserializer of each of `methods` replaced by `wrap(its own)`. */
function wrapDeserializers(
  service: grpc.ServiceDefinition,
  methods: string[],
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
 * Classify and ClassifyStream reading the image and tensor lengths from the body before decoding it:
 * one beyond its limit is handed to the handler as a refusal (RESOURCE_EXHAUSTED naming the flag),
 * never decoded. A decoded request carries its body size under MESSAGE_BYTES.
 */
export function sizedClassifyDecoding(
  service: grpc.ServiceDefinition,
  limits: RequestSizeLimits,
): grpc.ServiceDefinition {
  return wrapDeserializers(service, ["Classify", "ClassifyStream"], (deserialize) => (bytes) => {
    const refusal = oversizeRequest(weighClassifyRequest(bytes), limits);
    if (refusal) return { [REFUSED]: refusal } satisfies RefusedRequest;
    return Object.assign(deserialize(bytes) as object, { [MESSAGE_BYTES]: bytes.length });
  });
}

/**
 * ModelInfer and ModelStreamInfer reading a request's lists from its framing before decoding it: one
 * that cannot match any served model (a million-entry shape, more values than a batch holds) is
 * handed to the handler as a refusal (INVALID_ARGUMENT naming the field and the bound), never decoded.
 */
export function sizedInferDecoding(
  service: grpc.ServiceDefinition,
  limits: RequestSizeLimits,
  maxBatch: number,
): grpc.ServiceDefinition {
  return wrapDeserializers(service, ["ModelInfer", "ModelStreamInfer"], (deserialize) => (bytes) => {
    const refusal = unfitInferRequest(weighInferRequest(bytes), limits, maxBatch);
    return refusal ? ({ [REFUSED]: refusal } satisfies RefusedRequest) : deserialize(bytes);
  });
}

/**
 * `service` with `methods` tagging each decoded request with its body size (MESSAGE_BYTES), so that
 * the in-flight bound counts them: a unary call's until the call ends, a stream's message until its
 * handler calls releaseMessage (inflightBytes.ts).
 */
export function weighedDecoding(service: grpc.ServiceDefinition, methods: string[]): grpc.ServiceDefinition {
  return wrapDeserializers(
    service,
    methods,
    (deserialize) => (bytes) => Object.assign(deserialize(bytes) as object, { [MESSAGE_BYTES]: bytes.length }),
  );
}

/**
 * The service definition with Classify and ClassifyStream decoding tolerantly: grpc-js answers a body
 * that fails to deserialize with INTERNAL ("Error deserializing request"), which would blame the
 * server for a client's bytes. The tolerant deserializer hands such a body to the handler as a marker
 * instead, and decodeClassifyRequest refuses it with INVALID_ARGUMENT.
 */
export function tolerantClassifyDecoding(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  return tolerantDecoding(service, ["Classify", "ClassifyStream"]);
}

/** `service` with `methods` decoding tolerantly (see tolerantClassifyDecoding); throwIfUndecodable refuses. */
export function tolerantDecoding(service: grpc.ServiceDefinition, methods: string[]): grpc.ServiceDefinition {
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
 * INVALID_ARGUMENT for a body that tolerantDecoding could not decode as a `messageType`, and the
 * refusal of one a sized decoding refused unread.
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

export function decodeClassifyRequest(
  request: ClassifyRequestMessage | UndecodableRequest | RefusedRequest,
): DecodedClassify {
  if (REFUSED in request) throw request[REFUSED];
  throwIfUndecodable(request, "ctm.v1.ClassifyRequest");
  const policy = request.halt_policy ?? {};
  return {
    model: request.model ?? "",
    version: request.version ?? 0,
    job: {
      input: decodeInput(request),
      policy: {
        haltSignal: decodeHaltSignal(policy.halt_signal),
        certaintyThreshold: unlessZero(policy.certainty_threshold),
        haltThreshold: unlessZero(policy.halt_threshold),
        targetAccuracy: unlessZero(policy.target_accuracy),
        targetConsistency: unlessZero(policy.target_consistency),
        targetConfidence: unlessZero(policy.target_confidence),
        minTargetAccuracy: unlessZero(policy.min_target_accuracy),
        minTargetConsistency: unlessZero(policy.min_target_consistency),
        minTicks: policy.min_ticks,
        maxTicks: policy.max_ticks,
        patience: policy.patience,
        deadlineMs: policy.deadline_ms,
      },
      topK: request.top_k ?? 0,
      includeAttention: request.include_attention ?? false,
    },
    includeTrace: request.include_trace ?? false,
  };
}

/**
 * The halt policy's fractions are meaningful only in (0, 1], so the contract spends 0 on "not set"
 * rather than mark them `optional`, which protoparse-based tools such as ghz cannot read. Any other
 * value, NaN and negatives included, goes on to the engine's bounds check.
 */
function unlessZero(value: number | undefined): number | undefined {
  return value === 0 ? undefined : value;
}

/** HALT_SIGNAL_UNSPECIFIED is "not set"; a number proto-loader could not name is no signal at all. */
function decodeHaltSignal(name: HaltSignalName | number | undefined): HaltSignal | undefined {
  if (name === undefined || name === "HALT_SIGNAL_UNSPECIFIED") return undefined;
  const signal = HALT_SIGNALS.find((s) => HALT_SIGNAL_NAMES[s] === name);
  if (signal === undefined) {
    throw invalidArgument(
      `halt_policy.halt_signal must be ${HALT_SIGNALS.map((s) => HALT_SIGNAL_NAMES[s]).join(" or ")} (or unset), got ${name}`,
    );
  }
  return signal;
}

function decodeInput(request: ClassifyRequestMessage): ModelInput {
  if (request.input === "image" && request.image)
    return { kind: "image", data: request.image.data ?? new Uint8Array() };
  if (request.input === "tensor" && request.tensor) {
    return { kind: "tensor", shape: request.tensor.shape ?? [], values: request.tensor.values ?? [] };
  }
  throw invalidArgument(
    "input must be set: send input.image (encoded image bytes) or input.tensor (shape and float values)",
  );
}
