/**
 * grpc.health.v1's per-model services follow the set of served models as it changes: a model's
 * service reads SERVING while at least one of its versions serves (loaded, with a running worker) and
 * NOT_SERVING once none does (unloaded, failed, or its workers died), from the moment the change is
 * made. The Open Inference Protocol's ModelReady and the health port read the same record, and the
 * metric ctm_model_version_serving has a series for each version that serves.
 */
import type { ModelControl } from "../../engine/modelControl.ts";
import { type ModelRegistry, nameOf } from "../../engine/modelRegistry.ts";
import type { ServerMetrics } from "../../metrics.ts";
import { modelHealthService } from "./modelHealth.ts";
import type { ServingHealth } from "./servingHealth.ts";

/** The versions of `name` that serve now: loaded, with a running worker. */
export function servingVersions(registry: ModelRegistry, name: string): number[] {
  return registry.versions(name).filter((version) => !registry.engine(name, version)?.failure);
}

/**
 * Sets every known model's health and serving versions now, and again whenever `control` changes one;
 * `stopping` says when shutdown has taken health over (every service NOT_SERVING, whatever happens to
 * the models).
 */
export function followModelSet(
  registry: ModelRegistry,
  control: ModelControl,
  health: ServingHealth,
  metrics: ServerMetrics,
  stopping: () => boolean,
): void {
  const update = (name: string) => {
    const serving = servingVersions(registry, name);
    metrics.modelVersions(name, serving);
    if (stopping()) return;
    health.setStatus(modelHealthService(name), serving.length > 0 ? "SERVING" : "NOT_SERVING");
  };
  for (const name of new Set(registry.listed().map(nameOf))) update(name);
  control.onChange(update);
}
