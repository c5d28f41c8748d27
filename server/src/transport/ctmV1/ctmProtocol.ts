/**
 * The wire contract: proto/ctm/v1/ctm.proto (plus grpc.health.v1, so that reflection describes it too)
 * loaded with one set of options, and TypeScript shapes of its messages as @grpc/proto-loader decodes
 * them (snake_case fields, enums as names, oneofs named by a `input` string field).
 */
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";
import type { HaltSignal } from "../../model/calibration.ts";
import { tolerantClassifyDecoding } from "../grpc/requestDeserializers.ts";

export const PROTO_DIR = fileURLToPath(new URL("../../../../proto", import.meta.url));
export const CTM_PROTO = "ctm/v1/ctm.proto";
export const CTM_SERVICE = "ctm.v1.CtmService";

/** The files of the contract: ours and the standard health service. */
export const CONTRACT_FILES = [CTM_PROTO, healthProtoPath];

/**
 * How every proto of this server is loaded (the message shapes below assume it). keepCase matters
 * beyond decoding: protobufjs renames fields in the descriptors it builds without it.
 */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

export interface Protocol {
  packageDefinition: protoLoader.PackageDefinition;
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
  loaded = { packageDefinition, ctmService: tolerantClassifyDecoding(CtmClient.service), CtmClient };
  return loaded;
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
