/**
 * The wire contract: proto/ctm/v1/ctm.proto (plus grpc.health.v1, so that reflection describes it too)
 * loaded with the server's options (grpc/protoLoading.ts), the service definition the server serves,
 * and TypeScript shapes of its messages as @grpc/proto-loader decodes them (snake_case fields, enums
 * as names, oneofs named by a `input` string field).
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";
import type { HaltSignal } from "../../model/calibration.ts";
import { LOADER_OPTIONS } from "../grpc/protoLoading.ts";
import { guardedDecoding } from "../grpc/requestDeserializers.ts";
import type { RequestSizeLimits } from "../grpc/requestSize.ts";
import { oversizeRequest, weighClassifyRequest } from "./classifyWeight.ts";

export const CTM_PROTO = "ctm/v1/ctm.proto";

/** The files of the contract: ours and the standard health service. */
export const CONTRACT_FILES = [CTM_PROTO, healthProtoPath];

export interface Protocol {
  packageDefinition: protoLoader.PackageDefinition;
  /** The methods as proto-loader defines them, for clients; the server serves ctmServiceDefinition. */
  ctmService: grpc.ServiceDefinition;
  /** Client constructor for CtmService. */
  CtmClient: grpc.ServiceClientConstructor;
}

let loaded: Protocol | undefined;

export function loadProtocol(): Protocol {
  if (loaded) return loaded;
  const packageDefinition = protoLoader.loadSync(CONTRACT_FILES, LOADER_OPTIONS);
  const grpcObject = grpc.loadPackageDefinition(packageDefinition) as unknown as {
    ctm: { v1: { CtmService: grpc.ServiceClientConstructor } };
  };
  const CtmClient = grpcObject.ctm.v1.CtmService;
  loaded = { packageDefinition, ctmService: CtmClient.service, CtmClient };
  return loaded;
}

/** The methods whose requests carry a model's input. */
const CARRY_INPUT = ["Classify", "ClassifyStream"];

/**
 * CtmService as the server serves it: Classify and ClassifyStream read the image and tensor lengths
 * from the body before decoding it, so that one beyond its limit is handed to the handler as a refusal
 * (RESOURCE_EXHAUSTED naming the flag), never decoded; a body that is no ClassifyRequest reaches the
 * handler as a marker (INVALID_ARGUMENT there, not grpc-js's INTERNAL); a decoded one carries its
 * body size for the in-flight bound (grpc/requestDeserializers.ts).
 */
export function ctmServiceDefinition(limits: RequestSizeLimits): grpc.ServiceDefinition {
  return guardedDecoding(loadProtocol().ctmService, CARRY_INPUT, (body) =>
    oversizeRequest(weighClassifyRequest(body), limits),
  );
}

// ---------------------------------------------------------------- message shapes
export type HaltReasonName =
  | "HALT_REASON_UNSPECIFIED"
  | "HALT_REASON_THRESHOLD"
  | "HALT_REASON_PATIENCE"
  | "HALT_REASON_MAX_TICKS"
  | "HALT_REASON_DEADLINE";

export type HaltSignalName = "HALT_SIGNAL_UNSPECIFIED" | "HALT_SIGNAL_CERTAINTY" | "HALT_SIGNAL_HALT";

/** The engine's halt signals by their ctm.v1 enum names. */
export const HALT_SIGNAL_NAMES: Record<HaltSignal, HaltSignalName> = {
  certainty: "HALT_SIGNAL_CERTAINTY",
  halt: "HALT_SIGNAL_HALT",
};

export interface HaltPolicyMessage {
  /** 0: not set. */
  certainty_threshold?: number;
  /** 0: not set. */
  target_accuracy?: number;
  min_ticks?: number;
  max_ticks?: number;
  patience?: number;
  deadline_ms?: number;
  /** Plain proto3 doubles: 0 means not set. */
  target_consistency?: number;
  target_confidence?: number;
  halt_signal?: HaltSignalName;
  /** 0: not set. */
  halt_threshold?: number;
  /** Floors of a flexible request; 0: not set. */
  min_target_accuracy?: number;
  min_target_consistency?: number;
}

export interface ClassifyRequestMessage {
  model?: string;
  version?: number;
  input?: "image" | "tensor";
  image?: { data?: Uint8Array } | null;
  tensor?: { shape?: number[]; values?: number[] } | null;
  halt_policy?: HaltPolicyMessage | null;
  top_k?: number;
  include_trace?: boolean;
  include_attention?: boolean;
}

export interface ClassScoreMessage {
  index: number;
  label: string;
  probability: number;
}

export interface PositionPredictionMessage {
  position: number;
  index: number;
  label: string;
  probability: number;
}

export interface ClassifyResponseMessage {
  model: string;
  version: number;
  top_k: ClassScoreMessage[];
  positions: PositionPredictionMessage[];
  certainty: number;
  answer_tick: number;
  ticks_used: number;
  halt_reason: HaltReasonName;
  threshold_used: number;
  applied_policy: HaltPolicyMessage;
  trace: TickUpdateMessage[];
  logits: number[];
  guarantee: GuaranteeMessage | null;
  /** The answer tick's halting-head output; absent (undefined) for a model without one. */
  halt?: number;
  halt_signal: HaltSignalName;
}

export interface GuaranteeMessage {
  kind: string;
  target: number;
  confidence: number;
  met: boolean;
  threshold: number;
  calibration_count: number;
  risk_bound: number;
  certified_target: number;
  certified_confidence: number;
  note: string;
  signal: HaltSignalName;
  requested_target: number;
  min_target: number;
  lowered_by_load: boolean;
  requested_threshold: number;
}

export interface CertifiedTargetMessage {
  kind: string;
  target: number;
  confidence: number;
  threshold: number;
  risk_bound: number;
  mean_ticks: number;
}

export interface CalibrationDataMessage {
  kind: string;
  split: string;
  dir: string;
  sha256: string;
  date: string;
  count: number;
}

export interface TickUpdateMessage {
  tick: number;
  certainty: number;
  top_k: ClassScoreMessage[];
  positions: PositionPredictionMessage[];
  logits: number[];
  final: boolean;
  halt_reason: HaltReasonName;
  result: ClassifyResponseMessage | null;
  /** [heads, *token grid] row-major; empty unless the request set include_attention. */
  attention: number[];
  attention_shape: number[];
  /** The tick's halting-head output; absent (undefined) for a model without one. */
  halt?: number;
  halt_signal: HaltSignalName;
}

export interface ListModelsResponseMessage {
  models: ModelInfoMessage[];
}

export interface CalibrationPointMessage {
  threshold: number;
  accuracy: number;
  mean_ticks: number;
  p50_ticks: number;
  p90_ticks: number;
  p99_ticks: number;
  reached_fraction: number;
}

export interface SignalCalibrationMessage {
  signal: HaltSignalName;
  accuracy_full_run: number;
  thresholds: CalibrationPointMessage[];
  certified: CertifiedTargetMessage[];
  accuracy_data: CalibrationDataMessage | null;
  consistency_data: CalibrationDataMessage | null;
}

export interface ModelInfoMessage {
  name: string;
  version: number;
  task: string;
  description: string;
  input: {
    kind: string;
    shape: number[];
    dtype: string;
    image: {
      layout: string;
      channels: number;
      height: number;
      width: number;
      preprocess: string;
      mean: number[];
      std: number[];
    } | null;
    allowed_values: number[];
  };
  output_shape: number[];
  labels: string[];
  trained_ticks: number;
  max_ticks: number;
  calibration: {
    split: string;
    count: number;
    ticks: number;
    accuracy_most_certain: number;
    accuracy_last_tick: number;
    thresholds: CalibrationPointMessage[];
    schema_version: number;
    file: string;
    certified: CertifiedTargetMessage[];
    accuracy_data: CalibrationDataMessage | null;
    consistency_data: CalibrationDataMessage | null;
    signals: SignalCalibrationMessage[];
  } | null;
  default_policy: HaltPolicyMessage;
  provider: string;
  state: ModelStateName;
  load_error: string;
  halt_signals: HaltSignalName[];
  target_signal: HaltSignalName;
  /** null: the manifest has no metrics.test. */
  test_metrics: TestMetricsMessage | null;
}

/** `solved_full_run` and `solved_at_tick` are one-field oneofs: absent (undefined) for single-position outputs. */
export interface TestMetricsMessage {
  count: number;
  accuracy_most_certain: number;
  accuracy_last_tick: number;
  signals: { signal: HaltSignalName; accuracy_full_run: number; solved_full_run?: number }[];
  by_tick: { tick: number; accuracy_at_tick: number; accuracy_most_certain: number; solved_at_tick?: number }[];
}

export type ModelStateName = "MODEL_STATE_UNSPECIFIED" | "MODEL_STATE_READY" | "MODEL_STATE_FAILED";
