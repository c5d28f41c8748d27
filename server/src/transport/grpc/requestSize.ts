/**
 * How big a request may be. Decoding a 16 MiB float tensor costs the event loop about 260 ms, and a
 * gzip body of a few KB inflates to the whole message limit; a model with a 28 x 28 input needs about
 * 3 KB. So the message limit follows from what the served models take (an image, or a tensor of their
 * input's size), and each protocol reads a request's lengths from its protobuf framing
 * (protobufFraming.ts), skipping every payload, before a single value is decoded: ctm.v1's
 * ClassifyRequest in ctmV1/classifyWeight.ts, the Open Inference Protocol's in oip/inferWeight.ts.
 */
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
  /** Most entries a tensor's shape may have: the largest rank of the served inputs (0: not checked). */
  maxTensorRank?: number;
}

/** Room for the request's other fields: model name, shape, halt policy. */
export const OTHER_FIELDS_BYTES = 64 * 1024;

/**
 * Fills in the limits left at 0 (derived): the tensor limit is the largest served input, and the
 * message limit is what the largest acceptable image (if any model takes images) or tensor needs.
 */
export function deriveRequestSizeLimits(given: RequestSizeLimits, inputs: readonly ServedInput[]): DerivedSizeLimits {
  const derived: ("maxMessageBytes" | "maxTensorValues")[] = [];
  let maxTensorValues = given.maxTensorValues;
  if (maxTensorValues === 0) {
    maxTensorValues = Math.max(1, ...inputs.map((input) => input.shape.reduce((a, b) => a * b, 1)));
    derived.push("maxTensorValues");
  }
  let maxMessageBytes = given.maxMessageBytes;
  let messageBasis: DerivedSizeLimits["messageBasis"] = "given";
  if (maxMessageBytes === 0) {
    const image = inputs.some((input) => input.kind === "image") ? given.maxImageBytes : 0;
    // A packed float is 4 bytes; the length prefixes are covered by OTHER_FIELDS_BYTES.
    maxMessageBytes = Math.max(image, maxTensorValues * 4) + OTHER_FIELDS_BYTES;
    messageBasis = image >= maxTensorValues * 4 ? "image" : "tensor";
    derived.push("maxMessageBytes");
  }
  const maxTensorRank = Math.max(1, ...inputs.map((input) => input.shape.length));
  return { maxMessageBytes, maxImageBytes: given.maxImageBytes, maxTensorValues, maxTensorRank, derived, messageBasis };
}

export interface DerivedSizeLimits extends RequestSizeLimits {
  derived: ("maxMessageBytes" | "maxTensorValues")[];
  /** What the message limit follows: the image limit, the tensor limit, or --max-message-bytes itself. */
  messageBasis: "image" | "tensor" | "given";
}

/**
 * The refusal of a request message of `bytes`, beyond the message limit, naming the flag that moves
 * the limit: grpc-js's own words ("Received message larger than max (3676687 vs 1114112)") name none,
 * and for an image the one to raise is --max-image-bytes, which the message limit follows.
 */
export function messageTooLarge(bytes: number, limits: DerivedSizeLimits): string {
  const head = `the request message is ${bytes} bytes, beyond the ${limits.maxMessageBytes} this server reads`;
  const rest = `${OTHER_FIELDS_BYTES / 1024} KiB for the other fields; --max-message-bytes sets the limit directly`;
  if (limits.messageBasis === "image") {
    return `${head} (--max-image-bytes ${limits.maxImageBytes} plus ${rest}): send a smaller image (npm run classify shrinks large ones before sending) or raise --max-image-bytes`;
  }
  if (limits.messageBasis === "tensor") {
    return `${head} (--max-tensor-values ${limits.maxTensorValues} x 4 bytes, the largest input served, plus ${rest})`;
  }
  return `${head} (--max-message-bytes)`;
}
