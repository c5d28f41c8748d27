/**
 * What the token check (grpc/authentication.ts) needs to know of GRPCInferenceService's calls: its
 * health checks need no token; ModelInfer and ModelStreamInfer name their model in `model_name`,
 * ModelMetadata, ModelConfig and ModelStatistics in `name`; loading and unloading, and statistics of
 * every model at once, concern every model.
 */
import type { GuardedService } from "../grpc/authentication.ts";
import { INFERENCE_SERVICE } from "../grpc/serviceNames.ts";

export const oipAccess: GuardedService = {
  service: INFERENCE_SERVICE,
  open: ["ServerLive", "ServerReady", "ModelReady"],
  modelOf(method, message) {
    const { model_name, name } = message as { model_name?: unknown; name?: unknown };
    if (method === "ModelInfer" || method === "ModelStreamInfer")
      return { model: typeof model_name === "string" ? model_name : "", field: "model_name" };
    if (method === "ModelMetadata" || method === "ModelConfig" || method === "ModelStatistics")
      return { model: typeof name === "string" ? name : "", field: "name" };
    return undefined;
  },
  everyModelOf(method, message) {
    if (method === "RepositoryModelLoad" || method === "RepositoryModelUnload")
      return `${method} changes what every client is served`;
    const { name } = (message ?? {}) as { name?: unknown };
    if (method === "ModelStatistics" && !name) return "ModelStatistics without a name covers every model";
    return undefined;
  },
};
