/**
 * The request bounds are fixed when the ports bind (grpc-js takes its message limit then), derived
 * from the models in the folder at start-up. A model loaded later (a poll, a load request) whose input
 * needs more than they allow could never be sent a valid request: it fails to load instead, naming
 * the flag that makes room for it.
 */
import type { InputSpec } from "../../model/manifest.ts";
import type { DerivedSizeLimits } from "./requestSize.ts";

/** Throws when requests for a model with `input` cannot fit the server's bounds. */
export function checkInputFits(model: string, input: InputSpec, limits: DerivedSizeLimits): void {
  const values = input.shape.reduce((a, b) => a * b, 1);
  const fix = "restart the server with it raised (its default is derived from the models in the folder at start-up)";
  if (values > limits.maxTensorValues) {
    throw new Error(
      `model ${model} takes ${values} input values, beyond the ${limits.maxTensorValues} this server accepts (--max-tensor-values); ${fix}`,
    );
  }
  if (limits.maxTensorRank && input.shape.length > limits.maxTensorRank) {
    throw new Error(
      `model ${model}'s input has ${input.shape.length} dimensions, more than the ${limits.maxTensorRank} of the models served at start-up, which bound a request's shape; restart the server to serve it`,
    );
  }
  if (values * 4 > limits.maxMessageBytes) {
    throw new Error(
      `model ${model} takes ${values * 4} bytes of input, beyond the ${limits.maxMessageBytes}-byte messages this server reads (--max-message-bytes); ${fix}`,
    );
  }
}
