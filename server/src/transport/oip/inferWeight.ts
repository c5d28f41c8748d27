/**
 * What a ModelInferRequest declares, read from its framing before it is decoded, and the refusal of
 * one that cannot match any served model whatever its values.
 */
import { ServerError } from "../../engine/serverError.ts";
import { forEachField, varintCount } from "../grpc/protobufFraming.ts";
import type { RequestSizeLimits } from "../grpc/requestSize.ts";

/** What a ModelInferRequest body declares (entries and values; malformed framing stops the count). */
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
