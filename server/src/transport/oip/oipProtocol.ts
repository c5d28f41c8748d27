/**
 * The Open Inference Protocol's wire contract: proto/inference/v2/grpc_service.proto, loaded with the
 * server's options (grpc/protoLoading.ts), the service definition the server serves, and TypeScript
 * shapes of its messages as @grpc/proto-loader decodes them (snake_case fields, int64 as numbers,
 * bytes as Buffers, a oneof named by its string field).
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { LOADER_OPTIONS } from "../grpc/protoLoading.ts";
import { guardedDecoding } from "../grpc/requestDeserializers.ts";
import type { RequestSizeLimits } from "../grpc/requestSize.ts";
import { unfitInferRequest, weighInferRequest } from "./inferWeight.ts";

export const INFERENCE_PROTO = "inference/v2/grpc_service.proto";

export interface InferenceProtocol {
  packageDefinition: protoLoader.PackageDefinition;
  /** The methods as proto-loader defines them, for clients; the server serves inferenceServiceDefinition. */
  inferenceService: grpc.ServiceDefinition;
  /** Client constructor for GRPCInferenceService (tests). */
  InferenceClient: grpc.ServiceClientConstructor;
}

let loaded: InferenceProtocol | undefined;

export function loadInferenceProtocol(): InferenceProtocol {
  if (loaded) return loaded;
  const packageDefinition = protoLoader.loadSync(INFERENCE_PROTO, LOADER_OPTIONS);
  const grpcObject = grpc.loadPackageDefinition(packageDefinition) as unknown as {
    inference: { GRPCInferenceService: grpc.ServiceClientConstructor };
  };
  const InferenceClient = grpcObject.inference.GRPCInferenceService;
  loaded = { packageDefinition, inferenceService: InferenceClient.service, InferenceClient };
  return loaded;
}

/** The methods whose requests carry a model's input. */
const CARRY_INPUT = ["ModelInfer", "ModelStreamInfer"];

/**
 * GRPCInferenceService as the server serves it: ModelInfer and ModelStreamInfer read a request's
 * lists from its framing before decoding it, so that one that cannot match any served model (a
 * million-entry shape, more values than a batch holds) is handed to the handler as a refusal
 * (INVALID_ARGUMENT naming the field and the bound), never decoded; a body that is no
 * ModelInferRequest reaches the handler as a marker; a decoded one carries its body size for the
 * in-flight bound (grpc/requestDeserializers.ts). `maxBatch` bounds the rows (--max-batch).
 */
export function inferenceServiceDefinition(limits: RequestSizeLimits, maxBatch: number): grpc.ServiceDefinition {
  return guardedDecoding(loadInferenceProtocol().inferenceService, CARRY_INPUT, (body) =>
    unfitInferRequest(weighInferRequest(body), limits, maxBatch),
  );
}

// ---------------------------------------------------------------- message shapes
export type ParameterChoice = "bool_param" | "int64_param" | "string_param" | "double_param" | "uint64_param";

export interface InferParameterMessage {
  parameter_choice?: ParameterChoice;
  bool_param?: boolean;
  int64_param?: number;
  string_param?: string;
  double_param?: number;
  uint64_param?: number;
}

export type ParameterMap = Record<string, InferParameterMessage>;

export interface InferTensorContentsMessage {
  bool_contents?: boolean[];
  int_contents?: number[];
  int64_contents?: number[];
  uint_contents?: number[];
  uint64_contents?: number[];
  fp32_contents?: number[];
  fp64_contents?: number[];
  bytes_contents?: Uint8Array[];
}

export interface InferInputTensorMessage {
  name?: string;
  datatype?: string;
  shape?: number[];
  parameters?: ParameterMap;
  contents?: InferTensorContentsMessage | null;
}

export interface ModelInferRequestMessage {
  model_name?: string;
  model_version?: string;
  id?: string;
  parameters?: ParameterMap;
  inputs?: InferInputTensorMessage[];
  outputs?: { name?: string; parameters?: ParameterMap }[];
  raw_input_contents?: Uint8Array[];
}

export interface InferOutputTensorMessage {
  name: string;
  datatype: string;
  shape: number[];
}

export interface ModelInferResponseMessage {
  model_name: string;
  model_version: string;
  id: string;
  parameters: ParameterMap;
  outputs: InferOutputTensorMessage[];
  raw_output_contents: Buffer[];
}

export interface ModelStreamInferResponseMessage {
  error_message: string;
  infer_response: ModelInferResponseMessage | null;
}

export interface TensorMetadataMessage {
  name: string;
  datatype: string;
  shape: number[];
}

export interface ModelMetadataResponseMessage {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorMetadataMessage[];
  outputs: TensorMetadataMessage[];
}

export interface ModelConfigMessage {
  name: string;
  platform: string;
  backend: string;
  max_batch_size: number;
  input: {
    name: string;
    data_type: string;
    format: string;
    dims: number[];
    reshape: { shape: number[] } | null;
    optional: boolean;
  }[];
  output: { name: string; data_type: string; dims: number[]; reshape: { shape: number[] } | null }[];
  dynamic_batching: { preferred_batch_size: number[]; max_queue_delay_microseconds: number } | null;
  parameters: Record<string, { string_value: string }>;
  model_transaction_policy: { decoupled: boolean };
}
