/** Engine results -> ctm.v1 messages. */
import { guaranteeOutcome } from "../../engine/haltGuarantee.ts";
import { bestSignal, type HaltPolicy, type HaltReason, signalsOf } from "../../engine/haltPolicy.ts";
import type { InferenceResult, ModelEngine, TickReport } from "../../engine/modelEngine.ts";
import type { FailedModel, ListedModel } from "../../engine/modelRegistry.ts";
import type { Prediction } from "../../engine/prediction.ts";
import {
  type CalibrationData,
  GUARANTEE_KINDS,
  HALT_SIGNALS,
  type SignalCalibration,
} from "../../model/calibration.ts";
import type { ModelDefinition } from "../../model/modelFolder.ts";
import type { TestMetrics } from "../../model/testMetrics.ts";
import type {
  CalibrationDataMessage,
  CertifiedTargetMessage,
  ClassifyResponseMessage,
  GuaranteeMessage,
  HaltPolicyMessage,
  HaltReasonName,
  ModelInfoMessage,
  SignalCalibrationMessage,
  TestMetricsMessage,
  TickUpdateMessage,
} from "./ctmProtocol.ts";
import { HALT_SIGNAL_NAMES } from "./ctmProtocol.ts";

const REASONS: Record<HaltReason, HaltReasonName> = {
  THRESHOLD: "HALT_REASON_THRESHOLD",
  PATIENCE: "HALT_REASON_PATIENCE",
  MAX_TICKS: "HALT_REASON_MAX_TICKS",
  DEADLINE: "HALT_REASON_DEADLINE",
};

export function encodePolicy(policy: HaltPolicy): HaltPolicyMessage {
  const message: HaltPolicyMessage = {
    // The threshold goes in the field of its signal; the other stays 0 ("not set").
    certainty_threshold: policy.signal === "certainty" ? policy.threshold : 0,
    halt_threshold: policy.signal === "halt" ? policy.threshold : 0,
    halt_signal: HALT_SIGNAL_NAMES[policy.signal],
    min_ticks: policy.minTicks,
    max_ticks: policy.maxTicks,
    patience: policy.patience,
    deadline_ms: policy.deadlineMs,
  };
  if (policy.targetAccuracy !== undefined) message.target_accuracy = policy.targetAccuracy;
  if (policy.targetConsistency !== undefined) message.target_consistency = policy.targetConsistency;
  if (policy.targetConfidence !== undefined) message.target_confidence = policy.targetConfidence;
  if (policy.minTarget !== undefined) {
    message[policy.targetConsistency !== undefined ? "min_target_consistency" : "min_target_accuracy"] =
      policy.minTarget;
  }
  return message;
}

function encodeGuarantee(policy: HaltPolicy, reason: HaltReason): GuaranteeMessage | null {
  if (!policy.guarantee) return null;
  const outcome = guaranteeOutcome(policy.guarantee, reason);
  return {
    kind: outcome.kind,
    target: outcome.target,
    confidence: outcome.confidence,
    met: outcome.met,
    threshold: outcome.threshold,
    calibration_count: outcome.calibrationCount,
    risk_bound: outcome.riskBound,
    certified_target: outcome.certifiedTarget,
    certified_confidence: outcome.certifiedConfidence,
    note: outcome.note,
    signal: HALT_SIGNAL_NAMES[outcome.signal],
    requested_target: policy.loweredFrom?.target ?? outcome.target,
    min_target: policy.minTarget ?? 0,
    lowered_by_load: policy.loweredFrom !== undefined,
    requested_threshold: policy.loweredFrom?.threshold ?? outcome.threshold,
  };
}

function encodeCalibrationData(data: CalibrationData | undefined): CalibrationDataMessage | null {
  if (!data) return null;
  return {
    kind: data.kind,
    split: data.split ?? "",
    dir: data.dir ?? "",
    sha256: data.sha256 ?? "",
    date: data.date ?? "",
    count: data.count,
  };
}

/** Every grid point a threshold on the signal certifies, per kind; the uncertified ones are left out. */
function encodeCertified(calibrated: SignalCalibration): CertifiedTargetMessage[] {
  return GUARANTEE_KINDS.flatMap((kind) =>
    (calibrated.guarantees[kind]?.certified ?? [])
      .filter((p) => p.threshold !== null)
      .map((p) => ({
        kind,
        target: p.target,
        confidence: p.confidence,
        threshold: p.threshold as number,
        risk_bound: p.riskBound,
        mean_ticks: p.meanTicks,
      })),
  );
}

function encodeThresholds(calibrated: SignalCalibration) {
  return calibrated.thresholds.map((p) => ({
    threshold: p.threshold,
    accuracy: p.accuracy,
    mean_ticks: p.meanTicks,
    p50_ticks: p.p50Ticks,
    p90_ticks: p.p90Ticks,
    p99_ticks: p.p99Ticks,
    reached_fraction: p.reachedFraction,
  }));
}

function encodeSignalCalibration(
  signal: (typeof HALT_SIGNALS)[number],
  calibrated: SignalCalibration,
): SignalCalibrationMessage {
  return {
    signal: HALT_SIGNAL_NAMES[signal],
    accuracy_full_run: calibrated.accuracyFullRun,
    thresholds: encodeThresholds(calibrated),
    certified: encodeCertified(calibrated),
    accuracy_data: encodeCalibrationData(calibrated.guarantees.accuracy?.data),
    consistency_data: encodeCalibrationData(calibrated.guarantees.consistency?.data),
  };
}

function encodePrediction(prediction: Prediction) {
  return { top_k: prediction.topK, positions: prediction.positions };
}

/** A per-tick message; `result` makes it the stream's final one. */
export function encodeTick(tick: TickReport, result?: ClassifyResponseMessage): TickUpdateMessage {
  return {
    tick: tick.tick,
    certainty: tick.certainty,
    ...encodePrediction(tick.prediction),
    logits: Array.from(tick.logits),
    final: result !== undefined,
    halt_reason: result ? result.halt_reason : "HALT_REASON_UNSPECIFIED",
    result: result ?? null,
    attention: tick.attention ? Array.from(tick.attention.weights) : [],
    attention_shape: tick.attention ? [...tick.attention.shape] : [],
    ...(tick.halt !== undefined && { halt: tick.halt }),
    halt_signal: HALT_SIGNAL_NAMES[tick.signal],
  };
}

export function encodeResult(
  engine: ModelEngine,
  result: InferenceResult,
  trace: TickUpdateMessage[],
): ClassifyResponseMessage {
  return {
    model: engine.name,
    version: engine.definition.manifest.version,
    ...encodePrediction(result.prediction),
    certainty: result.certainty,
    answer_tick: result.answerTick,
    ticks_used: result.ticksUsed,
    halt_reason: REASONS[result.reason],
    threshold_used: result.policy.threshold,
    applied_policy: encodePolicy(result.policy),
    trace,
    logits: Array.from(result.logits),
    guarantee: encodeGuarantee(result.policy, result.reason),
    ...(result.halt !== undefined && { halt: result.halt }),
    halt_signal: HALT_SIGNAL_NAMES[result.policy.signal],
  };
}

/**
 * A model as ListModels and GetModel describe it: a loaded engine, or a registry entry that is either
 * that or a model that failed to load (then with its load error, and whatever its manifest said).
 */
export function encodeModelInfo(model: ModelEngine | ListedModel): ModelInfoMessage {
  if (!("ready" in model)) return encodeModelInfo({ ready: true, engine: model });
  if (!model.ready) return encodeFailedModel(model.failed);
  const { engine } = model;
  // Loaded, but its workers died and cannot be restarted for now: FAILED with the cause, until one is.
  const { failure } = engine;
  return {
    ...encodeDefinition(engine.definition, engine.defaultPolicy),
    provider: engine.provider,
    state: failure ? "MODEL_STATE_FAILED" : "MODEL_STATE_READY",
    load_error: failure ?? "",
  };
}

function encodeFailedModel(failed: FailedModel): ModelInfoMessage {
  const base = failed.definition
    ? encodeDefinition(failed.definition, undefined)
    : {
        ...EMPTY_INFO,
        input: { ...EMPTY_INFO.input },
      };
  return {
    ...base,
    name: failed.name,
    version: failed.version,
    provider: "",
    state: "MODEL_STATE_FAILED",
    load_error: failed.reason,
  };
}

const EMPTY_INFO: ModelInfoMessage = {
  name: "",
  version: 0,
  task: "",
  description: "",
  input: { kind: "", shape: [], dtype: "", image: null, allowed_values: [] },
  output_shape: [],
  labels: [],
  trained_ticks: 0,
  max_ticks: 0,
  calibration: null,
  default_policy: {},
  provider: "",
  state: "MODEL_STATE_UNSPECIFIED",
  load_error: "",
  halt_signals: [],
  target_signal: "HALT_SIGNAL_UNSPECIFIED",
  test_metrics: null,
};

function encodeDefinition(definition: ModelDefinition, defaultPolicy: HaltPolicy | undefined): ModelInfoMessage {
  const { manifest, calibration } = definition;
  const { image } = manifest.input;
  const signals = { hasHaltSignal: manifest.outputs.halt !== undefined, calibration };
  return {
    name: manifest.name,
    version: manifest.version,
    task: manifest.task,
    description: manifest.description,
    input: {
      kind: manifest.input.kind,
      shape: manifest.input.shape,
      dtype: manifest.input.dtype,
      image: image
        ? {
            layout: image.layout,
            channels: image.channels,
            height: image.height,
            width: image.width,
            preprocess: image.preprocess,
            mean: image.normalize.mean,
            std: image.normalize.std,
          }
        : null,
      allowed_values: manifest.input.allowedValues ?? [],
    },
    output_shape: manifest.output.shape,
    labels: manifest.output.labels,
    trained_ticks: manifest.ticks.trained,
    max_ticks: manifest.ticks.max,
    calibration: calibration
      ? {
          split: calibration.split,
          count: calibration.count,
          ticks: calibration.ticks,
          accuracy_most_certain: calibration.accuracyMostCertain,
          accuracy_last_tick: calibration.accuracyLastTick,
          // Certainty's, as before halting heads, so that older clients read what they did.
          thresholds: encodeThresholds(calibration.signals.certainty),
          schema_version: calibration.schemaVersion,
          file: calibration.file,
          certified: encodeCertified(calibration.signals.certainty),
          accuracy_data: encodeCalibrationData(calibration.signals.certainty.guarantees.accuracy?.data),
          consistency_data: encodeCalibrationData(calibration.signals.certainty.guarantees.consistency?.data),
          signals: HALT_SIGNALS.flatMap((signal) => {
            const calibrated = calibration.signals[signal];
            return calibrated ? [encodeSignalCalibration(signal, calibrated)] : [];
          }),
        }
      : null,
    default_policy: defaultPolicy ? encodePolicy(defaultPolicy) : {},
    provider: "",
    state: "MODEL_STATE_UNSPECIFIED",
    load_error: "",
    halt_signals: signalsOf(signals).map((signal) => HALT_SIGNAL_NAMES[signal]),
    target_signal: HALT_SIGNAL_NAMES[bestSignal(signals)],
    test_metrics: manifest.testMetrics ? encodeTestMetrics(manifest.testMetrics) : null,
  };
}

function encodeTestMetrics(metrics: TestMetrics): TestMetricsMessage {
  return {
    count: metrics.count,
    accuracy_most_certain: metrics.accuracyMostCertain,
    accuracy_last_tick: metrics.accuracyLastTick,
    signals: HALT_SIGNALS.flatMap((signal) => {
      const measured = metrics.signals[signal];
      if (!measured) return [];
      return [
        {
          signal: HALT_SIGNAL_NAMES[signal],
          accuracy_full_run: measured.accuracyFullRun,
          ...(measured.solvedFullRun !== undefined && { solved_full_run: measured.solvedFullRun }),
        },
      ];
    }),
    by_tick: metrics.byTick.map((row) => ({
      tick: row.tick,
      accuracy_at_tick: row.accuracyAtTick,
      accuracy_most_certain: row.accuracyMostCertain,
      ...(row.solvedAtTick !== undefined && { solved_at_tick: row.solvedAtTick }),
    })),
  };
}
