/**
 * The gRPC services this server serves, by full name. The port's plumbing (which methods carry a
 * model's input, which need no token) and grpc.health.v1's per-model names refer to them without
 * depending on the protocols that implement them.
 */

/** ctm.v1 (ctmV1/). */
export const CTM_SERVICE = "ctm.v1.CtmService";
/** The Open Inference Protocol (oip/). */
export const INFERENCE_SERVICE = "inference.GRPCInferenceService";
