/**
 * ClassifyRequest (as decoded by proto-loader) -> the engine's ClassifyJob. Only shape is checked
 * here; bounds that depend on the model are the engine's to check.
 */
import type { ClassifyJob } from "../engine/modelEngine.ts";
import type { ModelInput } from "../engine/modelInput.ts";
import { invalidArgument } from "../engine/serverError.ts";
import type { ClassifyRequestMessage } from "./protocol.ts";

export interface DecodedClassify {
  model: string;
  version: number;
  job: Omit<ClassifyJob, "streamTicks" | "pacedByReader">;
  includeTrace: boolean;
}

export function decodeClassifyRequest(request: ClassifyRequestMessage): DecodedClassify {
  const policy = request.halt_policy ?? {};
  return {
    model: request.model ?? "",
    version: request.version ?? 0,
    job: {
      input: decodeInput(request),
      policy: {
        certaintyThreshold: policy.certainty_threshold ?? undefined,
        targetAccuracy: policy.target_accuracy ?? undefined,
        minTicks: policy.min_ticks,
        maxTicks: policy.max_ticks,
        patience: policy.patience,
        deadlineMs: policy.deadline_ms,
      },
      topK: request.top_k ?? 0,
    },
    includeTrace: request.include_trace ?? false,
  };
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
