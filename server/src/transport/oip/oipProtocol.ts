/**
 * The Open Inference Protocol's wire contract: proto/inference/v2/grpc_service.proto, loaded with the
 * options ctm.v1 uses, and TypeScript shapes of its messages as @grpc/proto-loader decodes them
 * (snake_case fields, int64 as numbers, bytes as Buffers, a oneof named by its string field).
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { LOADER_OPTIONS } from "../ctmV1/ctmProtocol.ts";
import { tolerantDecoding, weighedDecoding } from "../grpc/requestDeserializers.ts";

export const INFERENCE_PROTO = "inference/v2/grpc_service.proto";
export const INFERENCE_SERVICE = "inference.GRPCInferenceService";

export interface InferenceProtocol {
  packageDefinition: protoLoader.PackageDefinition;
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
  loaded = {
    packageDefinition,
    inferenceService: weighedDecoding(tolerantDecoding(InferenceClient.service, ["ModelInfer", "ModelStreamInfer"]), [
      "ModelInfer",
      "ModelStreamInfer",
    ]),
    InferenceClient,
  };
  return loaded;
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
