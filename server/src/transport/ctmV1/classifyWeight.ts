/**
 * What a ClassifyRequest weighs on the wire, read from its framing before it is decoded, and the
 * refusal of one beyond the limits (grpc/requestSize.ts).
 */
import { ServerError } from "../../engine/serverError.ts";
import { forEachField, varintCount } from "../grpc/protobufFraming.ts";
import type { RequestSizeLimits } from "../grpc/requestSize.ts";

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
