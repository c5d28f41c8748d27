/**
 * An Open Inference Protocol REST inference request -> the ModelInferRequest message gRPC would have
 * decoded, so that both transports meet in the same checks, engine and answers (oip/inferCall.ts).
 *
 * The body is JSON ({"id", "parameters", "inputs", "outputs"}, each input's values in `data`), or, with
 * Triton's binary tensor extension, a JSON header of Inference-Header-Content-Length bytes followed by
 * the inputs' raw bytes, each input claiming its share with parameters.binary_data_size (what
 * tritonclient.http and perf_analyzer send). BYTES values in JSON are strings (UTF-8) or {"b64": ...}
 * objects, for encoded images. Only the JSON shape is checked here, and the bounds that must hold
 * before values are copied; every other check is the one gRPC requests get.
 */
import { ServerError } from "../../engine/serverError.ts";
import type { RequestSizeLimits } from "../grpc/requestSize.ts";
import { unfitInferRequest } from "./inferWeight.ts";
import type {
  InferInputTensorMessage,
  InferParameterMessage,
  InferTensorContentsMessage,
  ModelInferRequestMessage,
  ParameterMap,
} from "./oipProtocol.ts";

/** Which outputs the response carries as binary data (Triton's binary_data_output, outputs[].binary_data). */
export interface BinaryOutputs {
  all: boolean;
  byName: ReadonlyMap<string, boolean>;
}

export interface RestInferRequest {
  message: ModelInferRequestMessage;
  binaryOutputs: BinaryOutputs;
}

/** The header that says how much of the body is JSON (the rest is binary tensor data). */
export const HEADER_LENGTH = "inference-header-content-length";

const REQUEST_FIELDS = ["id", "parameters", "inputs", "outputs"];
const INPUT_FIELDS = ["name", "shape", "datatype", "parameters", "data"];
const OUTPUT_FIELDS = ["name", "parameters"];

/** The contents field each datatype's JSON values go to (BYTES: bytes_contents). */
const CONTENTS: Record<string, keyof InferTensorContentsMessage> = {
  BOOL: "bool_contents",
  INT8: "int_contents",
  INT16: "int_contents",
  INT32: "int_contents",
  INT64: "int64_contents",
  UINT8: "uint_contents",
  UINT16: "uint_contents",
  UINT32: "uint_contents",
  UINT64: "uint64_contents",
  FP16: "fp32_contents",
  FP32: "fp32_contents",
  FP64: "fp64_contents",
  BF16: "fp32_contents",
  BYTES: "bytes_contents",
};

const invalid = (details: string) => new ServerError("INVALID_ARGUMENT", details);

/**
 * The message for `model` (at `version`, "" for the highest) from a request body. `maxBatch` and
 * `limits` bound what is copied: no more values than a batch of the largest served input may hold.
 */
export function inferRequestFromBody(
  body: Buffer,
  headerLength: string | undefined,
  model: string,
  version: string,
  limits: RequestSizeLimits,
  maxBatch: number,
): RestInferRequest {
  let jsonBytes = body.length;
  if (headerLength !== undefined) {
    if (!/^\d{1,10}$/.test(headerLength.trim()) || Number(headerLength) > body.length) {
      throw invalid(
        `header Inference-Header-Content-Length must be the length of the JSON at the start of the body, at most its ${body.length} bytes, got ${JSON.stringify(headerLength.slice(0, 32))}`,
      );
    }
    jsonBytes = Number(headerLength);
  }
  const root = object(parseJson(body.subarray(0, jsonBytes)), "the request body");
  known(root, "the request body", REQUEST_FIELDS);
  const binary = body.subarray(jsonBytes);

  const id = root.id === undefined ? "" : string(root.id, "id");
  const { parameters, binaryOutput } = requestParameters(root.parameters);
  const inputsJson = root.inputs === undefined ? [] : array(root.inputs, "inputs");
  const outputsJson = root.outputs === undefined ? [] : array(root.outputs, "outputs");
  // The framing bounds gRPC requests get before they are decoded, on the JSON's counts.
  const maxValues = limits.maxTensorValues * maxBatch;
  const weight = {
    inputs: inputsJson.length,
    outputs: outputsJson.length,
    rawInputs: 0,
    parameters: Object.keys(parameters).length,
    shapeEntries: Math.max(
      0,
      ...inputsJson.map((i) =>
        Array.isArray((i as { shape?: unknown })?.shape) ? (i as { shape: unknown[] }).shape.length : 0,
      ),
    ),
    contentValues: 0,
    contentBytes: 0,
  };
  const unfit = unfitInferRequest(weight, limits, maxBatch);
  if (unfit) throw unfit;

  let offset = 0;
  const raw: Uint8Array[] = [];
  const inputs = inputsJson.map((value, i): InferInputTensorMessage => {
    const at = `inputs[${i}]`;
    const input = object(value, at);
    known(input, at, INPUT_FIELDS);
    const datatype = input.datatype === undefined ? "" : string(input.datatype, `${at}.datatype`);
    const shape =
      input.shape === undefined
        ? []
        : array(input.shape, `${at}.shape`).map((d, j) => dimension(d, `${at}.shape[${j}]`));
    const { parameters: inputParameters, binaryDataSize } = inputParameterMap(input.parameters, at);
    const tensor: InferInputTensorMessage = {
      name: input.name === undefined ? "" : string(input.name, `${at}.name`),
      datatype,
      shape,
      parameters: inputParameters,
    };
    if (binaryDataSize !== undefined) {
      if (input.data !== undefined) throw invalid(`${at} has both data and parameters.binary_data_size: send one`);
      if (offset + binaryDataSize > binary.length) {
        throw invalid(
          `${at}.parameters.binary_data_size is ${binaryDataSize}, but only ${binary.length - offset} bytes of binary data follow the JSON header for it (Inference-Header-Content-Length says where the JSON ends)`,
        );
      }
      raw.push(binary.subarray(offset, offset + binaryDataSize));
      offset += binaryDataSize;
      return tensor;
    }
    if (input.data === undefined) throw invalid(`${at} carries no values: set data, or parameters.binary_data_size`);
    tensor.contents = contentsOf(input.data, datatype, at, maxValues, limits, maxBatch);
    return tensor;
  });
  if (offset !== binary.length) {
    throw invalid(
      `the body holds ${binary.length - offset} bytes of binary data after the JSON header that no input's parameters.binary_data_size claims`,
    );
  }
  const byName = new Map<string, boolean>();
  const outputs = outputsJson.map((value, i) => {
    const at = `outputs[${i}]`;
    const output = object(value, at);
    known(output, at, OUTPUT_FIELDS);
    const name = output.name === undefined ? "" : string(output.name, `${at}.name`);
    const parameters: ParameterMap = {};
    const given = output.parameters === undefined ? {} : object(output.parameters, `${at}.parameters`);
    for (const [key, v] of Object.entries(given)) {
      if (key === "binary_data") byName.set(name, boolean(v, `${at}.parameters.binary_data`));
      else parameters[key] = parameterOf(v, `${at}.parameters.${key}`);
    }
    return { name, parameters };
  });
  return {
    message: {
      model_name: model,
      model_version: version,
      id,
      parameters,
      inputs,
      outputs,
      ...(raw.length > 0 && { raw_input_contents: raw }),
    },
    binaryOutputs: { all: binaryOutput, byName },
  };
}

/**
 * The words of a refusal as the REST client sent the fields: gRPC's typed contents and raw contents
 * are REST's `data` and binary data.
 */
export function inRestTerms(error: unknown): unknown {
  if (!(error instanceof ServerError)) return error;
  const details = error.details
    .replace(/inputs\[(\d+|)\]\.contents\.\w+_contents/g, "inputs[$1].data")
    .replace(/inputs\[(\d+|)\]\.contents/g, "inputs[$1].data")
    .replace(/raw_input_contents\[(\d+)\]/g, "inputs[$1]'s binary data (parameters.binary_data_size)");
  return details === error.details ? error : new ServerError(error.code, details);
}

function requestParameters(value: unknown): { parameters: ParameterMap; binaryOutput: boolean } {
  const parameters: ParameterMap = {};
  let binaryOutput = false;
  const given = value === undefined ? {} : object(value, "parameters");
  for (const [key, v] of Object.entries(given)) {
    if (key === "binary_data_output") binaryOutput = boolean(v, "parameters.binary_data_output");
    else parameters[key] = parameterOf(v, `parameters.${key}`);
  }
  return { parameters, binaryOutput };
}

function inputParameterMap(value: unknown, at: string): { parameters: ParameterMap; binaryDataSize?: number } {
  const parameters: ParameterMap = {};
  let binaryDataSize: number | undefined;
  const given = value === undefined ? {} : object(value, `${at}.parameters`);
  for (const [key, v] of Object.entries(given)) {
    if (key === "binary_data_size") {
      if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
        throw invalid(`${at}.parameters.binary_data_size must be a whole number of bytes, got ${describe(v)}`);
      }
      binaryDataSize = v;
    } else {
      parameters[key] = parameterOf(v, `${at}.parameters.${key}`);
    }
  }
  return binaryDataSize === undefined ? { parameters } : { parameters, binaryDataSize };
}

/** A JSON parameter as the protocol's typed one: whole numbers are int64, others double. */
function parameterOf(value: unknown, field: string): InferParameterMessage {
  if (typeof value === "boolean") return { parameter_choice: "bool_param", bool_param: value };
  if (typeof value === "string") return { parameter_choice: "string_param", string_param: value };
  if (typeof value === "number") {
    return Number.isInteger(value)
      ? { parameter_choice: "int64_param", int64_param: value }
      : { parameter_choice: "double_param", double_param: value };
  }
  throw invalid(`${field} must be a boolean, a number or a string, got ${describe(value)}`);
}

/**
 * A tensor's JSON values, flattened row-major (nested as the shape, or flat), into the contents field
 * of its datatype. At most `maxValues` are copied and nesting stops at the served inputs' rank.
 */
function contentsOf(
  data: unknown,
  datatype: string,
  at: string,
  maxValues: number,
  limits: RequestSizeLimits,
  maxBatch: number,
): InferTensorContentsMessage {
  const field = CONTENTS[datatype];
  if (!field) {
    throw invalid(`${at}.datatype must be one of ${Object.keys(CONTENTS).join(", ")}, got ${JSON.stringify(datatype)}`);
  }
  const maxDepth = (limits.maxTensorRank ?? 8) + 1;
  const values: unknown[] = [];
  // Depth-first without recursion: a deeply nested array must not overflow the stack.
  const stack: [unknown, number][] = [[data, 0]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop() as [unknown, number];
    if (Array.isArray(item)) {
      if (depth >= maxDepth) {
        throw invalid(
          `${at}.data nests arrays deeper than ${maxDepth} levels (the batch and the served inputs' dimensions)`,
        );
      }
      for (let i = item.length - 1; i >= 0; i--) stack.push([item[i], depth + 1]);
      continue;
    }
    values.push(item);
    if (values.length > maxValues) {
      throw invalid(
        `${at}.data holds more than the ${maxValues} values a batch may carry (--max-tensor-values ${limits.maxTensorValues} x --max-batch ${maxBatch}); refused before decoding`,
      );
    }
  }
  if (field === "bytes_contents") return { bytes_contents: values.map((v, i) => bytesOf(v, `${at}.data[${i}]`)) };
  if (field === "bool_contents") return { bool_contents: values.map((v, i) => boolean(v, `${at}.data[${i}]`)) };
  return {
    [field]: values.map((v, i) => {
      if (typeof v !== "number") throw invalid(`${at}.data[${i}] must be a number (${datatype}), got ${describe(v)}`);
      return v;
    }),
  };
}

/** A BYTES element: a string (its UTF-8 bytes) or {"b64": "<base64>"} for binary data such as an image. */
function bytesOf(value: unknown, field: string): Uint8Array {
  if (typeof value === "string") return Buffer.from(value, "utf8");
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const { b64, ...rest } = value as { b64?: unknown };
    if (typeof b64 === "string" && Object.keys(rest).length === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(b64)) {
      return Buffer.from(b64, "base64");
    }
  }
  throw invalid(`${field} must be a string or {"b64": "<base64>"} (BYTES), got ${describe(value)}`);
}

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch (error) {
    throw invalid(`the request body is not valid JSON: ${(error as Error).message}`);
  }
}

function object(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw invalid(`${field} must be a JSON object, got ${describe(value)}`);
  return value as Record<string, unknown>;
}

function array(value: unknown, field: string): unknown[] {
  if (!Array.isArray(value)) throw invalid(`${field} must be a JSON array, got ${describe(value)}`);
  return value;
}

function string(value: unknown, field: string): string {
  if (typeof value !== "string") throw invalid(`${field} must be a string, got ${describe(value)}`);
  return value;
}

function boolean(value: unknown, field: string): boolean {
  if (typeof value !== "boolean") throw invalid(`${field} must be true or false, got ${describe(value)}`);
  return value;
}

function dimension(value: unknown, field: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 2 ** 31) {
    throw invalid(`${field} must be a whole number, got ${describe(value)}`);
  }
  return value;
}

/** An unknown key is most likely a misspelt one; ignoring it would silently run a different request. */
function known(value: Record<string, unknown>, field: string, keys: readonly string[]): void {
  const unknown = Object.keys(value).find((k) => !keys.includes(k));
  if (unknown !== undefined)
    throw invalid(`${field} has unknown field ${JSON.stringify(unknown.slice(0, 64))}; known: ${keys.join(", ")}`);
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return "an array";
  if (value === null) return "null";
  if (typeof value === "object") return "an object";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 40)}...` : text;
}
