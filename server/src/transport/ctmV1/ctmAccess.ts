/**
 * What the token check (grpc/authentication.ts) needs to know of CtmService's calls: Classify and
 * ClassifyStream name their model in `model`, GetModel and GetModelStatistics in `name`; loading and
 * unloading, and statistics of every model at once, concern every model.
 */
import type { GuardedService } from "../grpc/authentication.ts";
import { CTM_SERVICE } from "../grpc/serviceNames.ts";

export const ctmAccess: GuardedService = {
  service: CTM_SERVICE,
  modelOf(method, message) {
    const { model, name } = message as { model?: unknown; name?: unknown };
    if (method === "GetModel" || method === "GetModelStatistics")
      return { model: typeof name === "string" ? name : "", field: "name" };
    if (method === "Classify" || method === "ClassifyStream")
      return { model: typeof model === "string" ? model : "", field: "model" };
    return undefined;
  },
  everyModelOf(method, message) {
    if (method === "LoadModel" || method === "UnloadModel") return `${method} changes what every client is served`;
    const { name } = (message ?? {}) as { name?: unknown };
    if (method === "GetModelStatistics" && !name) return "GetModelStatistics without a name covers every model";
    return undefined;
  },
};
