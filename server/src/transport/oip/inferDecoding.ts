/**
 * An Open Inference Protocol ModelInferRequest (as decoded by proto-loader) -> the same domain objects
 * a ctm.v1 ClassifyRequest becomes: one ModelInput per batch row and one HaltPolicyRequest, which the
 * engine then checks exactly as it checks ctm.v1's. Only what is particular to the protocol is checked
 * here: tensor names, datatypes, shapes, the two ways of carrying data, and parameter types.
 *
 * The protocol's names for things: the tensor input is "input" (FP32, the manifest's input shape with
 * a leading batch dimension), an image model's encoded images are "image" (BYTES [N, 1], one per row), and
 * the halt policy is request `parameters` named as ctm.v1's halt_policy fields.
 */
import type { HaltPolicyRequest } from "../../engine/haltPolicy.ts";
import type { ModelInput } from "../../engine/modelInput.ts";
import { echo, invalidArgument, ServerError } from "../../engine/serverError.ts";
import { HALT_SIGNALS, type HaltSignal } from "../../model/calibration.ts";
import type { InputSpec } from "../../model/manifest.ts";
import type {
  InferInputTensorMessage,
  InferParameterMessage,
  ModelInferRequestMessage,
  ParameterMap,
} from "./oipProtocol.ts";

/** The FP32 tensor input. */
export const TENSOR_INPUT = "input";
/** An image model's BYTES input of encoded images. */
export const IMAGE_INPUT = "image";

/**
 * What a response can hold. A response describes one tick (ModelInfer: the answer tick); the last
 * three describe the whole request and come with ModelInfer and the last response of a stream.
 */
export const OUTPUT_NAMES = [
  "probabilities",
  "logits",
  "certainty",
  "halt",
  "tick",
  "answer_tick",
  "ticks_used",
  "halt_reason",
] as const;
export type OutputName = (typeof OUTPUT_NAMES)[number];

/** Request parameters that set the halt policy, by their ctm.v1 halt_policy names. */
const POLICY_PARAMETERS = {
  certainty_threshold: "certaintyThreshold",
  halt_threshold: "haltThreshold",
  target_accuracy: "targetAccuracy",
  target_consistency: "targetConsistency",
  target_confidence: "targetConfidence",
  min_target_accuracy: "minTargetAccuracy",
  min_target_consistency: "minTargetConsistency",
  min_ticks: "minTicks",
  max_ticks: "maxTicks",
  patience: "patience",
  deadline_ms: "deadlineMs",
} as const satisfies Record<string, keyof HaltPolicyRequest>;

/**
 * Parameters tritonclient and perf_analyzer may send that change nothing here: a request's priority
 * and queue timeout (every request is admitted or refused at once), and whether a stream should end
 * with an empty response (its last tick's response is already flagged final).
 */
const IGNORED_PARAMETERS = new Set(["priority", "timeout", "triton_enable_empty_final_response"]);
const SEQUENCE_PARAMETERS = new Set(["sequence_id", "sequence_start", "sequence_end"]);

/**
 * The longest request id: it comes back in every response of the request (one per tick on a stream),
 * so a 500 KB id would be sent, and held for a slow reader, once per tick.
 */
export const MAX_ID_CHARS = 1024;

export interface DecodedInfer {
  model: string;
  version: number;
  id: string;
  policy: HaltPolicyRequest;
  /** The outputs to send, in request order; every output when the request names none. */
  outputs: OutputName[];
  /** Top classes to report as a classification (BYTES "probability:index:label") output; 0: none. */
  classification: number;
}

/** The model-independent part of a request: its model, id, halt policy and wanted outputs. */
export function decodeInferRequest(request: ModelInferRequestMessage): DecodedInfer {
  const id = request.id ?? "";
  if (id.length > MAX_ID_CHARS) {
    throw invalidArgument(
      `id ${echo(id)} is longer than the ${MAX_ID_CHARS} characters an id may have (it is sent back with every response)`,
    );
  }
  return {
    model: request.model_name ?? "",
    version: decodeVersion(request.model_version ?? ""),
    id: request.id ?? "",
    policy: decodePolicy(request.parameters ?? {}),
    ...decodeOutputs(request.outputs ?? []),
  };
}

function decodeVersion(version: string): number {
  if (version === "") return 0;
  if (!/^[1-9][0-9]{0,8}$/.test(version)) {
    throw invalidArgument(
      `model_version must be empty (the loaded version) or a positive integer, got ${JSON.stringify(version)}`,
    );
  }
  return Number(version);
}

function decodePolicy(parameters: ParameterMap): HaltPolicyRequest {
  const policy: HaltPolicyRequest = {};
  for (const [key, parameter] of Object.entries(parameters)) {
    if (key in POLICY_PARAMETERS) {
      policy[POLICY_PARAMETERS[key as keyof typeof POLICY_PARAMETERS]] = numberParameter(key, parameter);
    } else if (key === "halt_signal") {
      policy.haltSignal = signalParameter(parameter);
    } else if (SEQUENCE_PARAMETERS.has(key)) {
      throw invalidArgument(`parameters.${key} is set, but this server serves no sequence models`);
    } else if (!IGNORED_PARAMETERS.has(key)) {
      throw invalidArgument(
        `parameters.${key} is not a parameter this server reads; the halt policy is set by halt_signal, ${Object.keys(POLICY_PARAMETERS).join(", ")}`,
      );
    }
  }
  return policy;
}

/** parameters.halt_signal: the signal's name as the engine and ctm.v1's JSON examples write it. */
function signalParameter(parameter: InferParameterMessage): HaltSignal {
  const text = parameter.parameter_choice === "string_param" ? (parameter.string_param ?? "") : undefined;
  const signal = HALT_SIGNALS.find((s) => s === text);
  if (signal === undefined) {
    const choice = parameter.parameter_choice;
    const given = choice ? `${choice} ${JSON.stringify(parameter[choice])}` : "no value";
    throw invalidArgument(
      `parameters.halt_signal must be a string_param, ${HALT_SIGNALS.map((s) => JSON.stringify(s)).join(" or ")}, got ${given}`,
    );
  }
  return signal;
}

/** `key`: the parameter's name under `parameters.`, or its full path when it starts with "outputs[". */
function numberParameter(key: string, parameter: InferParameterMessage): number {
  const choice = parameter.parameter_choice;
  if (choice === "double_param" || choice === "int64_param" || choice === "uint64_param") {
    return Number(parameter[choice]);
  }
  // A number written as a string too: perf_analyzer's --request-parameter has no floating-point type.
  const text = parameter.string_param ?? "";
  if (choice === "string_param" && /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/.test(text)) return Number(text);
  const given = choice ? `${choice} ${JSON.stringify(parameter[choice])}` : "no value";
  const field = key.startsWith("outputs[") ? key : `parameters.${key}`;
  throw invalidArgument(
    `${field} must be a number (double_param, int64_param, or a string_param holding one), got ${given}`,
  );
}

function decodeOutputs(requested: NonNullable<ModelInferRequestMessage["outputs"]>): {
  outputs: OutputName[];
  classification: number;
} {
  if (requested.length === 0) return { outputs: [...OUTPUT_NAMES], classification: 0 };
  const outputs: OutputName[] = [];
  let classification = 0;
  requested.forEach((output, i) => {
    const name = output.name ?? "";
    if (!(OUTPUT_NAMES as readonly string[]).includes(name)) {
      throw invalidArgument(
        `outputs[${i}].name must be one of ${OUTPUT_NAMES.join(", ")}, got ${JSON.stringify(name)}`,
      );
    }
    if (outputs.includes(name as OutputName)) throw invalidArgument(`outputs[${i}].name ${name} is requested twice`);
    const count = output.parameters?.classification;
    if (count) {
      if (name !== "probabilities") {
        throw invalidArgument(`outputs[${i}].parameters.classification applies only to the probabilities output`);
      }
      const k = numberParameter(`outputs[${i}].parameters.classification`, count);
      if (!Number.isInteger(k) || k < 1) {
        throw invalidArgument(`outputs[${i}].parameters.classification must be a positive integer, got ${k}`);
      }
      classification = k;
    }
    outputs.push(name as OutputName);
  });
  return { outputs, classification };
}

/**
 * The request's batch rows as engine inputs: N rows of an FP32 [N, ...shape] tensor, or N encoded
 * images of a BYTES [N, 1] (or [N]) tensor. `maxBatch` bounds N.
 */
export function decodeRows(
  request: ModelInferRequestMessage,
  spec: InputSpec,
  model: string,
  maxBatch: number,
): ModelInput[] {
  const inputs = request.inputs ?? [];
  const accepted = spec.image
    ? `"${TENSOR_INPUT}" (FP32 [-1, ${spec.shape.join(", ")}]) or "${IMAGE_INPUT}" (BYTES [-1, 1])`
    : `"${TENSOR_INPUT}" (FP32 [-1, ${spec.shape.join(", ")}])`;
  if (inputs.length !== 1) {
    throw invalidArgument(`inputs must hold exactly one tensor, ${accepted}, for model ${model}; got ${inputs.length}`);
  }
  const input = inputs[0] as InferInputTensorMessage;
  const raw = request.raw_input_contents ?? [];
  if (raw.length > 1) throw invalidArgument(`raw_input_contents must hold one entry per input (1), got ${raw.length}`);
  const data = raw[0];
  if (data !== undefined && hasContents(input)) {
    throw invalidArgument("inputs[0].contents must be empty when raw_input_contents carries the data");
  }
  const name = input.name ?? "";
  if (name === TENSOR_INPUT) return tensorRows(input, data, spec, maxBatch);
  if (name === IMAGE_INPUT && spec.image) return imageRows(input, data, maxBatch);
  throw invalidArgument(`inputs[0].name must be ${accepted} for model ${model}, got ${JSON.stringify(name)}`);
}

function hasContents(input: InferInputTensorMessage): boolean {
  const contents = input.contents;
  return !!contents && Object.values(contents).some((values) => Array.isArray(values) && values.length > 0);
}

/** N, from a shape that must be [N, ...rowShape]; `wanted` says what was expected. */
function batchOf(input: InferInputTensorMessage, rowShape: number[], maxBatch: number, wanted: string): number {
  const shape = input.shape ?? [];
  const batch = shape[0] ?? 0;
  const matches =
    shape.length === rowShape.length + 1 && rowShape.every((d, i) => shape[i + 1] === d) && Number.isInteger(batch);
  if (!matches) {
    throw invalidArgument(`inputs[0].shape must be ${wanted} for input "${input.name}", got ${echo(shape)}`);
  }
  if (batch < 1 || batch > maxBatch) {
    throw invalidArgument(`inputs[0].shape[0] (the batch) must be in [1, ${maxBatch}] (--max-batch), got ${batch}`);
  }
  return batch;
}

function tensorRows(
  input: InferInputTensorMessage,
  raw: Uint8Array | undefined,
  spec: InputSpec,
  maxBatch: number,
): ModelInput[] {
  if (input.datatype !== "FP32") {
    throw invalidArgument(
      `inputs[0].datatype must be FP32 for input "${TENSOR_INPUT}", got ${JSON.stringify(input.datatype)}`,
    );
  }
  const batch = batchOf(input, spec.shape, maxBatch, `[N, ${spec.shape.join(", ")}]`);
  const size = spec.shape.reduce((a, b) => a * b, 1);
  let values: ArrayLike<number>;
  if (raw !== undefined) {
    if (raw.length !== batch * size * 4) {
      throw invalidArgument(
        `raw_input_contents[0] must be ${batch} x ${size} x 4 = ${batch * size * 4} bytes (FP32, shape [${[batch, ...spec.shape].join(", ")}]), got ${raw.length}`,
      );
    }
    // The protocol's raw tensors are little-endian, as this server's hosts are; copy to align.
    values = new Float32Array(Uint8Array.from(raw).buffer);
  } else {
    values = input.contents?.fp32_contents ?? [];
    if (values.length !== batch * size) {
      throw invalidArgument(
        `inputs[0].contents.fp32_contents must have ${batch * size} values for shape [${[batch, ...spec.shape].join(", ")}], got ${values.length}`,
      );
    }
  }
  return Array.from({ length: batch }, (_, row) => ({
    kind: "tensor",
    shape: spec.shape,
    values: Array.prototype.slice.call(values, row * size, (row + 1) * size) as number[],
  }));
}

function imageRows(input: InferInputTensorMessage, raw: Uint8Array | undefined, maxBatch: number): ModelInput[] {
  if (input.datatype !== "BYTES") {
    throw invalidArgument(
      `inputs[0].datatype must be BYTES for input "${IMAGE_INPUT}", got ${JSON.stringify(input.datatype)}`,
    );
  }
  const shape = input.shape ?? [];
  const batch = batchOf(input, shape.length === 1 ? [] : [1], maxBatch, "[N, 1] or [N]");
  const images = raw !== undefined ? splitBytesTensor(raw, batch) : (input.contents?.bytes_contents ?? []);
  if (images.length !== batch) {
    throw invalidArgument(
      `inputs[0].contents.bytes_contents must hold ${batch} encoded image(s) for shape ${echo(shape)}, got ${images.length}`,
    );
  }
  return images.map((data) => ({ kind: "image", data }));
}

/** A raw BYTES tensor: each element a 4-byte little-endian length, then that many bytes. */
function splitBytesTensor(raw: Uint8Array, count: number): Uint8Array[] {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const elements: Uint8Array[] = [];
  let at = 0;
  while (at < raw.length) {
    const length = at + 4 <= raw.length ? view.getUint32(at, true) : -1;
    if (length < 0 || at + 4 + length > raw.length) {
      throw invalidArgument(
        `raw_input_contents[0] is not a BYTES tensor: element ${elements.length} at byte ${at} runs past the end (${raw.length} bytes); each element is a 4-byte little-endian length and that many bytes`,
      );
    }
    elements.push(raw.subarray(at + 4, at + 4 + length));
    at += 4 + length;
  }
  if (elements.length !== count) {
    throw invalidArgument(`raw_input_contents[0] must hold ${count} encoded image(s), got ${elements.length}`);
  }
  return elements;
}

/**
 * The engine names request fields as ctm.v1 does; a v2 client sent them under other names. This puts
 * the v2 names into a refusal's message, so that it still names the field the client set.
 */
export function inV2Terms(error: unknown, row: number): unknown {
  if (!(error instanceof ServerError)) return error;
  const details = error.details
    .replaceAll("halt_policy.", "parameters.")
    .replaceAll("input.tensor.values", `inputs[0] ("${TENSOR_INPUT}") row ${row} values`)
    .replaceAll("input.image.data", `inputs[0] ("${IMAGE_INPUT}") row ${row}`)
    .replaceAll("top_k", "outputs[].parameters.classification");
  return details === error.details ? error : new ServerError(error.code, details);
}
