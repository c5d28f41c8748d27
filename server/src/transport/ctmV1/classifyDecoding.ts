/**
 * ClassifyRequest (as decoded by proto-loader) -> the engine's ClassifyJob. Only shape is checked
 * here; bounds that depend on the model are the engine's to check.
 */
import type { ClassifyJob } from "../../engine/modelEngine.ts";
import type { ModelInput } from "../../engine/modelInput.ts";
import { invalidArgument } from "../../engine/serverError.ts";
import { HALT_SIGNALS, type HaltSignal } from "../../model/calibration.ts";
import { type RefusedRequest, throwIfUndecodable, type UndecodableRequest } from "../grpc/requestDeserializers.ts";
import { type ClassifyRequestMessage, HALT_SIGNAL_NAMES, type HaltSignalName } from "./ctmProtocol.ts";

export interface DecodedClassify {
  model: string;
  version: number;
  job: Omit<ClassifyJob, "streamTicks" | "pacedByReader" | "onInput">;
  includeTrace: boolean;
}

export function decodeClassifyRequest(
  request: ClassifyRequestMessage | UndecodableRequest | RefusedRequest,
): DecodedClassify {
  throwIfUndecodable(request, "ctm.v1.ClassifyRequest");
  const policy = request.halt_policy ?? {};
  return {
    model: request.model ?? "",
    version: request.version ?? 0,
    job: {
      input: decodeInput(request),
      policy: {
        haltSignal: decodeHaltSignal(policy.halt_signal),
        certaintyThreshold: unlessZero(policy.certainty_threshold),
        haltThreshold: unlessZero(policy.halt_threshold),
        targetAccuracy: unlessZero(policy.target_accuracy),
        targetConsistency: unlessZero(policy.target_consistency),
        targetConfidence: unlessZero(policy.target_confidence),
        minTargetAccuracy: unlessZero(policy.min_target_accuracy),
        minTargetConsistency: unlessZero(policy.min_target_consistency),
        minTicks: policy.min_ticks,
        maxTicks: policy.max_ticks,
        patience: policy.patience,
        deadlineMs: policy.deadline_ms,
      },
      topK: request.top_k ?? 0,
      includeAttention: request.include_attention ?? false,
    },
    includeTrace: request.include_trace ?? false,
  };
}

/**
 * The halt policy's fractions are meaningful only in (0, 1], so the contract spends 0 on "not set"
 * rather than mark them `optional`, which protoparse-based tools such as ghz cannot read. Any other
 * value, NaN and negatives included, goes on to the engine's bounds check.
 */
function unlessZero(value: number | undefined): number | undefined {
  return value === 0 ? undefined : value;
}

/** HALT_SIGNAL_UNSPECIFIED is "not set"; a number proto-loader could not name is no signal at all. */
function decodeHaltSignal(name: HaltSignalName | number | undefined): HaltSignal | undefined {
  if (name === undefined || name === "HALT_SIGNAL_UNSPECIFIED") return undefined;
  const signal = HALT_SIGNALS.find((s) => HALT_SIGNAL_NAMES[s] === name);
  if (signal === undefined) {
    throw invalidArgument(
      `halt_policy.halt_signal must be ${HALT_SIGNALS.map((s) => HALT_SIGNAL_NAMES[s]).join(" or ")} (or unset), got ${name}`,
    );
  }
  return signal;
}

function decodeInput(request: ClassifyRequestMessage): ModelInput {
  if (request.input === "image" && request.image)
    return { kind: "image", data: request.image.data ?? new Uint8Array() };
  if (request.input === "tensor" && request.tensor) {
    return { kind: "tensor", shape: request.tensor.shape ?? [], values: request.tensor.values ?? [] };
  }
  throw invalidArgument(
    "input must be set: send input.image (encoded image bytes) or input.tensor (shape and float values)",
  );
}
