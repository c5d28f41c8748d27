/**
 * How big a ClassifyRequest may be, and what it weighs on the wire before it is decoded.
 *
 * Decoding a 16 MiB float tensor costs the event loop about 260 ms, and a gzip body of a few KB
 * inflates to the whole message limit; a model with a 28 x 28 input needs about 3 KB. So the message
 * limit follows from what the served models take (an image, or a tensor of their input's size), and
 * a request's image and tensor lengths are read from the protobuf framing, skipping every payload,
 * before a single value is decoded.
 */
import { ServerError } from "../../engine/serverError.ts";

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

/** The sizes a ClassifyRequest body declares. Malformed framing stops the count: the decoder reports it. */
export interface RequestWeight {
  imageBytes: number;
  tensorValues: number;
  /** Entries of input.tensor.shape. */
  shapeEntries?: number;
}

/** ClassifyRequest field numbers (proto/ctm/v1/ctm.proto). */
const REQUEST_IMAGE = 3;
const REQUEST_TENSOR = 4;
const IMAGE_DATA = 1;
const TENSOR_SHAPE = 1;
const TENSOR_VALUES = 2;

export function weighClassifyRequest(body: Uint8Array): RequestWeight {
  const weight = { imageBytes: 0, tensorValues: 0, shapeEntries: 0 };
  forEachField(body, 0, body.length, (field, wireType, start, end) => {
    if (wireType !== 2) return;
    if (field === REQUEST_IMAGE) {
      forEachField(body, start, end, (f, w, s, e) => {
        if (f === IMAGE_DATA && w === 2) weight.imageBytes = Math.max(weight.imageBytes, e - s);
      });
    } else if (field === REQUEST_TENSOR) {
      forEachField(body, start, end, (f, w, s, e) => {
        if (f === TENSOR_SHAPE) weight.shapeEntries += w === 2 ? varintCount(body, s, e) : 1;
        if (f !== TENSOR_VALUES) return;
        // Packed (the proto3 default) or one fixed32 field per value; a message may mix both.
        if (w === 2) weight.tensorValues += Math.floor((e - s) / 4);
        else if (w === 5) weight.tensorValues += 1;
      });
    }
  });
  return weight;
}

/** What a ModelInferRequest body declares, counted the same way. */
export interface InferRequestWeight {
  /** Entries of inputs, of outputs, of raw_input_contents, of the request's parameters. */
  inputs: number;
  outputs: number;
  rawInputs: number;
  parameters: number;
  /** The most entries any input's shape has. */
  shapeEntries: number;
  /** The most values any input's contents hold, of any numeric type; and its encoded elements. */
  contentValues: number;
  contentBytes: number;
}

/** ModelInferRequest field numbers (proto/inference/v2/grpc_service.proto). */
const INFER = { parameters: 4, inputs: 5, outputs: 6, rawInputs: 7 } as const;
const INFER_INPUT = { shape: 3, contents: 5 } as const;
const CONTENTS_BYTES = 8;
/** InferTensorContents fields of fixed width (4 or 8 bytes a value when packed); the rest are varints. */
const FIXED_WIDTH: Record<number, number> = { 6: 4, 7: 8 };

export function weighInferRequest(body: Uint8Array): InferRequestWeight {
  const weight: InferRequestWeight = {
    inputs: 0,
    outputs: 0,
    rawInputs: 0,
    parameters: 0,
    shapeEntries: 0,
    contentValues: 0,
    contentBytes: 0,
  };
  forEachField(body, 0, body.length, (field, wireType, start, end) => {
    if (field === INFER.parameters) weight.parameters++;
    else if (field === INFER.outputs) weight.outputs++;
    else if (field === INFER.rawInputs) weight.rawInputs++;
    if (field !== INFER.inputs || wireType !== 2) return;
    weight.inputs++;
    let shape = 0;
    forEachField(body, start, end, (f, w, s, e) => {
      if (f === INFER_INPUT.shape) shape += w === 2 ? varintCount(body, s, e) : 1;
      if (f !== INFER_INPUT.contents || w !== 2) return;
      let values = 0;
      let elements = 0;
      forEachField(body, s, e, (cf, cw, cs, ce) => {
        if (cf === CONTENTS_BYTES) elements++;
        else if (cw !== 2) values++;
        else
          values += FIXED_WIDTH[cf] ? Math.floor((ce - cs) / (FIXED_WIDTH[cf] as number)) : varintCount(body, cs, ce);
      });
      weight.contentValues = Math.max(weight.contentValues, values);
      weight.contentBytes = Math.max(weight.contentBytes, elements);
    });
    weight.shapeEntries = Math.max(weight.shapeEntries, shape);
  });
  return weight;
}

/**
 * INVALID_ARGUMENT for a ModelInferRequest that cannot match any served model whatever its values,
 * read from its framing alone: decoding a million-entry shape costs the event loop about 370 ms of
 * int64 parsing, only to be refused afterwards. `maxBatch` bounds the rows (--max-batch).
 */
export function unfitInferRequest(
  weight: InferRequestWeight,
  limits: RequestSizeLimits,
  maxBatch: number,
): ServerError | undefined {
  const rank = (limits.maxTensorRank ?? 0) + 1;
  const refuse = (what: string, bound: string) =>
    new ServerError("INVALID_ARGUMENT", `${what}, more than ${bound}; refused before decoding`);
  const listed = `the ${MAX_INFER_ENTRIES} this server reads`;
  if (weight.inputs > MAX_INFER_ENTRIES)
    return refuse(`inputs has ${weight.inputs} tensors`, `${listed} (a model takes one)`);
  if (weight.rawInputs > MAX_INFER_ENTRIES) return refuse(`raw_input_contents has ${weight.rawInputs} entries`, listed);
  if (weight.outputs > MAX_INFER_ENTRIES) return refuse(`outputs has ${weight.outputs} entries`, listed);
  if (weight.parameters > MAX_INFER_ENTRIES) return refuse(`parameters has ${weight.parameters} entries`, listed);
  if (limits.maxTensorRank && weight.shapeEntries > rank) {
    return refuse(
      `inputs[].shape has ${weight.shapeEntries} entries`,
      `the ${rank} of any served model's input (the batch, then the input's ${rank - 1} dimensions)`,
    );
  }
  const values = limits.maxTensorValues * maxBatch;
  if (weight.contentValues > values) {
    return refuse(
      `inputs[].contents holds ${weight.contentValues} values`,
      `the ${values} a batch may carry (--max-tensor-values ${limits.maxTensorValues} x --max-batch ${maxBatch})`,
    );
  }
  if (weight.contentBytes > maxBatch) {
    return refuse(
      `inputs[].contents.bytes_contents holds ${weight.contentBytes} elements`,
      `the ${maxBatch} rows a batch may have (--max-batch)`,
    );
  }
  return undefined;
}

/** Entries of a request's lists and maps read beyond any model's need (a few are plenty). */
const MAX_INFER_ENTRIES = 16;

/** Varints in bytes[from, to): one per byte below 0x80. */
function varintCount(bytes: Uint8Array, from: number, to: number): number {
  let count = 0;
  for (let i = from; i < to; i++) if ((bytes[i] as number) < 0x80) count++;
  return count;
}

/**
 * RESOURCE_EXHAUSTED naming the field, the bound and the flag (INVALID_ARGUMENT for a shape no served
 * model has), or undefined when the request fits.
 */
export function oversizeRequest(weight: RequestWeight, limits: RequestSizeLimits): ServerError | undefined {
  if (weight.imageBytes > limits.maxImageBytes) {
    return new ServerError(
      "RESOURCE_EXHAUSTED",
      `input.image.data is ${weight.imageBytes} bytes, beyond the ${limits.maxImageBytes} this server accepts (--max-image-bytes)`,
    );
  }
  if (limits.maxTensorRank && (weight.shapeEntries ?? 0) > limits.maxTensorRank) {
    return new ServerError(
      "INVALID_ARGUMENT",
      `input.tensor.shape has ${weight.shapeEntries} entries, more than the ${limits.maxTensorRank} of any served model's input; refused before decoding`,
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
