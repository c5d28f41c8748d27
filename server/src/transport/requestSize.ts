/**
 * How big a ClassifyRequest may be, and what it weighs on the wire before it is decoded.
 *
 * Decoding a 16 MiB float tensor costs the event loop about 260 ms, and a gzip body of a few KB
 * inflates to the whole message limit; a model with a 28 x 28 input needs about 3 KB. So the message
 * limit follows from what the served models take (an image, or a tensor of their input's size), and
 * a request's image and tensor lengths are read from the protobuf framing, skipping every payload,
 * before a single value is decoded.
 */
import { ServerError } from "../engine/serverError.ts";

/** What the served models take, as far as request size goes. */
export interface ServedInput {
  kind: "image" | "tensor";
  /** The input's shape, without the batch dimension. */
  shape: readonly number[];
}

export interface RequestSizeLimits {
  /** Largest gRPC message read (grpc-js refuses larger ones itself). */
  maxMessageBytes: number;
  maxImageBytes: number;
  maxTensorValues: number;
}

/** Room for the request's other fields: model name, shape, halt policy. */
export const OTHER_FIELDS_BYTES = 64 * 1024;

/**
 * Fills in the limits left at 0 (derived): the tensor limit is the largest served input, and the
 * message limit is what the largest acceptable image (if any model takes images) or tensor needs.
 */
export function deriveRequestSizeLimits(
  given: RequestSizeLimits,
  inputs: readonly ServedInput[],
): RequestSizeLimits & { derived: ("maxMessageBytes" | "maxTensorValues")[] } {
  const derived: ("maxMessageBytes" | "maxTensorValues")[] = [];
  let maxTensorValues = given.maxTensorValues;
  if (maxTensorValues === 0) {
    maxTensorValues = Math.max(1, ...inputs.map((input) => input.shape.reduce((a, b) => a * b, 1)));
    derived.push("maxTensorValues");
  }
  let maxMessageBytes = given.maxMessageBytes;
  if (maxMessageBytes === 0) {
    const image = inputs.some((input) => input.kind === "image") ? given.maxImageBytes : 0;
    // A packed float is 4 bytes; the length prefixes are covered by OTHER_FIELDS_BYTES.
    maxMessageBytes = Math.max(image, maxTensorValues * 4) + OTHER_FIELDS_BYTES;
    derived.push("maxMessageBytes");
  }
  return { maxMessageBytes, maxImageBytes: given.maxImageBytes, maxTensorValues, derived };
}

/** The sizes a ClassifyRequest body declares. Malformed framing stops the count: the decoder reports it. */
export interface RequestWeight {
  imageBytes: number;
  tensorValues: number;
}

/** ClassifyRequest field numbers (proto/ctm/v1/ctm.proto). */
const REQUEST_IMAGE = 3;
const REQUEST_TENSOR = 4;
const IMAGE_DATA = 1;
const TENSOR_VALUES = 2;

export function weighClassifyRequest(body: Uint8Array): RequestWeight {
  const weight: RequestWeight = { imageBytes: 0, tensorValues: 0 };
  forEachField(body, 0, body.length, (field, wireType, start, end) => {
    if (wireType !== 2) return;
    if (field === REQUEST_IMAGE) {
      forEachField(body, start, end, (f, w, s, e) => {
        if (f === IMAGE_DATA && w === 2) weight.imageBytes = Math.max(weight.imageBytes, e - s);
      });
    } else if (field === REQUEST_TENSOR) {
      forEachField(body, start, end, (f, w, s, e) => {
        if (f !== TENSOR_VALUES) return;
        // Packed (the proto3 default) or one fixed32 field per value; a message may mix both.
        if (w === 2) weight.tensorValues += Math.floor((e - s) / 4);
        else if (w === 5) weight.tensorValues += 1;
      });
    }
  });
  return weight;
}

/** RESOURCE_EXHAUSTED naming the field, the bound and the flag, or undefined when the request fits. */
export function oversizeRequest(weight: RequestWeight, limits: RequestSizeLimits): ServerError | undefined {
  if (weight.imageBytes > limits.maxImageBytes) {
    return new ServerError(
      "RESOURCE_EXHAUSTED",
      `input.image.data is ${weight.imageBytes} bytes, beyond the ${limits.maxImageBytes} this server accepts (--max-image-bytes)`,
    );
  }
  if (weight.tensorValues > limits.maxTensorValues) {
    return new ServerError(
      "RESOURCE_EXHAUSTED",
      `input.tensor.values has ${weight.tensorValues} values, beyond the ${limits.maxTensorValues} this server accepts (--max-tensor-values; the largest input it serves)`,
    );
  }
  return undefined;
}

/**
 * Calls `visit(field, wireType, payloadStart, payloadEnd)` for each field of the message in
 * bytes[from, to), without decoding any payload. Stops at the first malformed tag or length.
 */
function forEachField(
  bytes: Uint8Array,
  from: number,
  to: number,
  visit: (field: number, wireType: number, start: number, end: number) => void,
): void {
  let at = from;
  const varint = (): number | undefined => {
    let value = 0;
    for (let shift = 0; shift < 64 && at < to; shift += 7) {
      const byte = bytes[at++] as number;
      // Past 2^53 the exact value does not matter: any such length runs past the end.
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    return undefined;
  };
  while (at < to) {
    const tag = varint();
    if (tag === undefined) return;
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    let start = at;
    if (wireType === 0) {
      if (varint() === undefined) return;
    } else if (wireType === 1) {
      at += 8;
    } else if (wireType === 2) {
      const length = varint();
      if (length === undefined) return;
      start = at;
      at += length;
    } else if (wireType === 5) {
      at += 4;
    } else {
      return;
    }
    if (at > to) return;
    visit(field, wireType, start, at);
  }
}
