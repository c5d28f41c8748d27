/**
 * Engine results -> Open Inference Protocol messages: inference responses (outputs as raw
 * little-endian tensors, as Triton sends them and tritonclient's as_numpy reads them, plus scalar
 * response parameters), model metadata and model configuration derived from the manifest.
 */
import { type GuaranteePlan, guaranteeOutcome } from "../../engine/haltGuarantee.ts";
import type { HaltPolicy, HaltReason } from "../../engine/haltPolicy.ts";
import type { InferenceResult, ModelEngine } from "../../engine/modelEngine.ts";
import { type Prediction, positionsOf } from "../../engine/prediction.ts";
import type { HaltSignal } from "../../model/calibration.ts";
import { IMAGE_INPUT, OUTPUT_NAMES, type OutputName, TENSOR_INPUT } from "./inferDecoding.ts";
import type {
  InferOutputTensorMessage,
  InferParameterMessage,
  ModelConfigMessage,
  ModelInferResponseMessage,
  ModelMetadataResponseMessage,
  ParameterMap,
} from "./oipProtocol.ts";

/** What one batch row of a response describes: a tick, and with `result` the request's answer. */
export interface RowView {
  tick: number;
  certainty: number;
  /** The halting head's output: only for a model with one. */
  halt?: number;
  /** The signal the request halts on. */
  signal: HaltSignal;
  logits: Float32Array;
  prediction: Prediction;
  result: InferenceResult | undefined;
}

/** ModelInfer's row: the answer tick. */
export function answerView(result: InferenceResult): RowView {
  return {
    tick: result.answerTick,
    certainty: result.certainty,
    ...(result.halt !== undefined && { halt: result.halt }),
    signal: result.policy.signal,
    logits: result.logits,
    prediction: result.prediction,
    result,
  };
}

export interface ResponseShape {
  id: string;
  outputs: OutputName[];
  classification: number;
  /** Streams: whether this is the request's last response (the parameter triton_final_response). */
  final?: boolean;
}

/** Outputs that describe the whole request: present only when every row has its result. */
const RESULT_OUTPUTS: ReadonlySet<OutputName> = new Set(["answer_tick", "ticks_used", "halt_reason"]);

export function encodeInferResponse(
  engine: ModelEngine,
  rows: RowView[],
  shape: ResponseShape,
): ModelInferResponseMessage {
  const { output } = engine.definition.manifest;
  const batch = rows.length;
  const finished = rows.every((row) => row.result !== undefined);
  const outputs: InferOutputTensorMessage[] = [];
  const raw: Buffer[] = [];
  const add = (name: string, datatype: string, dims: number[], data: Buffer) => {
    outputs.push({ name, datatype, shape: [batch, ...dims] });
    raw.push(data);
  };
  const halting = hasHaltOutput(engine);
  for (const name of shape.outputs) {
    if (RESULT_OUTPUTS.has(name) && !finished) continue;
    // Every output by default is every output the model has: a model without a halting head has no halt.
    if (name === "halt" && !halting) continue;
    const results = rows.map((row) => row.result as InferenceResult);
    switch (name) {
      case "probabilities":
        if (shape.classification > 0) {
          const k = shape.classification;
          add(name, "BYTES", [k], bytesTensor(rows.flatMap((row) => classificationOf(row.prediction, k))));
        } else {
          add(name, "FP32", output.shape, float32(rows.flatMap((row) => softmax(row.logits, output.shape))));
        }
        break;
      case "logits":
        add(name, "FP32", output.shape, float32(rows.flatMap((row) => Array.from(row.logits))));
        break;
      case "certainty":
        add(name, "FP32", [], float32(rows.map((row) => row.certainty)));
        break;
      case "halt":
        add(name, "FP32", [], float32(rows.map((row) => row.halt ?? Number.NaN)));
        break;

      case "tick":
        add(name, "INT32", [], int32(rows.map((row) => row.tick)));
        break;
      case "answer_tick":
        add(name, "INT32", [], int32(results.map((r) => r.answerTick)));
        break;
      case "ticks_used":
        add(name, "INT32", [], int32(results.map((r) => r.ticksUsed)));
        break;
      case "halt_reason":
        add(name, "BYTES", [], bytesTensor(results.map((r) => r.reason)));
        break;
    }
  }
  return {
    model_name: engine.name,
    model_version: String(engine.definition.manifest.version),
    id: shape.id,
    parameters: responseParameters(rows, finished, shape.final),
    outputs,
    raw_output_contents: raw,
  };
}

/**
 * Scalars a client can read without decoding a tensor: the applied policy once answered, and, for a
 * single row (every stream response), that row's tick and answer.
 */
function responseParameters(rows: RowView[], finished: boolean, final: boolean | undefined): ParameterMap {
  const parameters: ParameterMap = {};
  if (final !== undefined) parameters.triton_final_response = boolean(final);
  const first = rows[0];
  if (finished && first?.result) Object.assign(parameters, policyParameters(first.result.policy));
  // Rows are admitted one by one, so load may lower some and not others; each row's own guarantee is
  // in the response of a one-row request.
  if (finished && rows.length > 1) {
    parameters.lowered_rows = int64(rows.filter((row) => row.result?.policy.loweredFrom).length);
  }
  if (rows.length !== 1 || !first) return parameters;
  parameters.tick = int64(first.tick);
  parameters.certainty = double(first.certainty);
  if (first.halt !== undefined) parameters.halt = double(first.halt);
  parameters.halt_signal = string(first.signal);
  const { result } = first;
  if (result) {
    parameters.answer_tick = int64(result.answerTick);
    parameters.ticks_used = int64(result.ticksUsed);
    parameters.halt_reason = string(result.reason);
    if (result.policy.guarantee) Object.assign(parameters, guaranteeParameters(result.policy, result.reason));
  }
  return parameters;
}

/** What ctm.v1's `guarantee` says, flattened: whether this answer carries the calibrated promise. */
function guaranteeParameters(policy: HaltPolicy, reason: HaltReason): ParameterMap {
  const outcome = guaranteeOutcome(policy.guarantee as GuaranteePlan, reason);
  return {
    guarantee_kind: string(outcome.kind),
    guarantee_signal: string(outcome.signal),
    guarantee_target: double(outcome.target),
    guarantee_confidence: double(outcome.confidence),
    guarantee_met: boolean(outcome.met),
    guarantee_risk_bound: double(outcome.riskBound),
    guarantee_calibration_count: int64(outcome.calibrationCount),
    guarantee_note: string(outcome.note),
    guarantee_requested_target: double(policy.loweredFrom?.target ?? outcome.target),
    guarantee_min_target: double(policy.minTarget ?? 0),
    guarantee_lowered_by_load: boolean(policy.loweredFrom !== undefined),
    guarantee_requested_threshold: double(policy.loweredFrom?.threshold ?? outcome.threshold),
  };
}

function policyParameters(policy: HaltPolicy): ParameterMap {
  const parameters: ParameterMap = {
    halt_signal: string(policy.signal),
    threshold_used: double(policy.threshold),
    min_ticks: int64(policy.minTicks),
    max_ticks: int64(policy.maxTicks),
    patience: int64(policy.patience),
    deadline_ms: int64(policy.deadlineMs),
  };
  if (policy.targetAccuracy !== undefined) parameters.target_accuracy = double(policy.targetAccuracy);
  if (policy.targetConsistency !== undefined) parameters.target_consistency = double(policy.targetConsistency);
  if (policy.targetConfidence !== undefined) parameters.target_confidence = double(policy.targetConfidence);
  if (policy.minTarget !== undefined) {
    parameters[policy.targetConsistency !== undefined ? "min_target_consistency" : "min_target_accuracy"] = double(
      policy.minTarget,
    );
  }
  return parameters;
}

const boolean = (value: boolean): InferParameterMessage => ({ bool_param: value });
const int64 = (value: number): InferParameterMessage => ({ int64_param: value });
const double = (value: number): InferParameterMessage => ({ double_param: value });
const string = (value: string): InferParameterMessage => ({ string_param: value });

/** Per position, softmax over the classes: what the tick graph's probabilities output computes. */
function softmax(logits: Float32Array, shape: readonly number[]): number[] {
  const classes = shape[shape.length - 1] as number;
  const out: number[] = [];
  for (let start = 0; start < logits.length; start += classes) {
    const slice = Array.from(logits.subarray(start, start + classes));
    const max = Math.max(...slice);
    const exps = slice.map((v) => Math.exp(v - max));
    const sum = exps.reduce((a, b) => a + b, 0);
    for (const e of exps) out.push(e / sum);
  }
  return out;
}

/** Triton's classification format: "<probability>:<index>:<label>", most probable first. */
function classificationOf(prediction: Prediction, k: number): string[] {
  return prediction.topK.slice(0, k).map((c) => `${c.probability.toFixed(6)}:${c.index}:${c.label}`);
}

function float32(values: number[]): Buffer {
  const array = Float32Array.from(values);
  return Buffer.from(array.buffer, array.byteOffset, array.byteLength);
}

function int32(values: number[]): Buffer {
  const array = Int32Array.from(values);
  return Buffer.from(array.buffer, array.byteOffset, array.byteLength);
}

/** The protocol's BYTES layout: each element a 4-byte little-endian length, then its bytes. */
function bytesTensor(values: string[]): Buffer {
  return Buffer.concat(
    values.flatMap((value) => {
      const bytes = Buffer.from(value, "utf8");
      const length = Buffer.alloc(4);
      length.writeUInt32LE(bytes.length);
      return [length, bytes];
    }),
  );
}

// ---------------------------------------------------------------- model descriptions
interface TensorSpec {
  name: string;
  datatype: "FP32" | "INT32" | "BYTES";
  /** Without the batch dimension. */
  dims: number[];
}

function inputsOf(engine: ModelEngine): TensorSpec[] {
  const { input } = engine.definition.manifest;
  const inputs: TensorSpec[] = [{ name: TENSOR_INPUT, datatype: "FP32", dims: input.shape }];
  // [1] per row, not a scalar: perf_analyzer cannot send an input whose row shape is empty.
  if (input.image) inputs.push({ name: IMAGE_INPUT, datatype: "BYTES", dims: [1] });
  return inputs;
}

/** Whether the model has a halting head, and so a "halt" output. */
export function hasHaltOutput(engine: ModelEngine): boolean {
  return engine.definition.manifest.outputs.halt !== undefined;
}

function outputsOf(engine: ModelEngine): TensorSpec[] {
  const { shape } = engine.definition.manifest.output;
  const specs: Record<OutputName, Omit<TensorSpec, "name">> = {
    probabilities: { datatype: "FP32", dims: shape },
    logits: { datatype: "FP32", dims: shape },
    certainty: { datatype: "FP32", dims: [] },
    halt: { datatype: "FP32", dims: [] },
    tick: { datatype: "INT32", dims: [] },
    answer_tick: { datatype: "INT32", dims: [] },
    ticks_used: { datatype: "INT32", dims: [] },
    halt_reason: { datatype: "BYTES", dims: [] },
  };
  return OUTPUT_NAMES.filter((name) => name !== "halt" || hasHaltOutput(engine)).map((name) => ({
    name,
    ...specs[name],
  }));
}

/** The platform a model reports: the runtime behind the tick-by-tick engine. */
const PLATFORM = "ctm_onnxruntime";

export function encodeModelMetadata(engine: ModelEngine): ModelMetadataResponseMessage {
  const tensor = (spec: TensorSpec) => ({ name: spec.name, datatype: spec.datatype, shape: [-1, ...spec.dims] });
  return {
    name: engine.name,
    versions: [String(engine.definition.manifest.version)],
    platform: PLATFORM,
    inputs: inputsOf(engine).map(tensor),
    outputs: outputsOf(engine).map(tensor),
  };
}

const CONFIG_TYPES = { FP32: "TYPE_FP32", INT32: "TYPE_INT32", BYTES: "TYPE_STRING" } as const;

/**
 * Triton's model configuration, for clients that read it (perf_analyzer): batching up to
 * `maxBatch` rows a request, the engine's own batching reported as dynamic batching, and decoupled,
 * since ModelStreamInfer answers a request with one response per tick.
 */
export function encodeModelConfig(engine: ModelEngine, maxBatch: number): ModelConfigMessage {
  const { manifest } = engine.definition;
  const inputs = inputsOf(engine);
  return {
    name: engine.name,
    platform: PLATFORM,
    backend: "ctm",
    max_batch_size: maxBatch,
    // Exactly one of an image model's two inputs is sent, so each is optional on its own.
    input: inputs.map((spec) => ({
      name: spec.name,
      data_type: CONFIG_TYPES[spec.datatype],
      format: spec.name === TENSOR_INPUT && manifest.input.image ? "FORMAT_NCHW" : "FORMAT_NONE",
      dims: spec.dims.length > 0 ? spec.dims : [1],
      reshape: spec.dims.length > 0 ? null : { shape: [] },
      optional: inputs.length > 1,
    })),
    output: outputsOf(engine).map((spec) => ({
      name: spec.name,
      data_type: CONFIG_TYPES[spec.datatype],
      dims: spec.dims.length > 0 ? spec.dims : [1],
      reshape: spec.dims.length > 0 ? null : { shape: [] },
    })),
    dynamic_batching: { preferred_batch_size: [], max_queue_delay_microseconds: 0 },
    parameters: {
      trained_ticks: { string_value: String(manifest.ticks.trained) },
      max_ticks: { string_value: String(engine.limits.maxTicks) },
      labels: { string_value: manifest.output.labels.join(",") },
      positions: { string_value: String(positionsOf(manifest.output)) },
    },
    model_transaction_policy: { decoupled: false },
  };
}
