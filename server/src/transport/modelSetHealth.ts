/**
 * grpc.health.v1's per-model services follow the set of served models as it changes: a model's
 * service reads SERVING while at least one of its versions serves (loaded, with a running worker) and
 * NOT_SERVING once none does (unloaded, failed, or its workers died), from the moment the change is
 * made. The Open Inference Protocol's ModelReady and the health port read the same record.
 */
import type { ModelControl } from "../engine/modelControl.ts";
import { type ModelRegistry, nameOf } from "../engine/modelRegistry.ts";
import { modelHealthService } from "./modelHealth.ts";
import type { ServingHealth } from "./servingHealth.ts";

/** Whether any version of `name` serves now. */
export function modelServes(registry: ModelRegistry, name: string): boolean {
  return registry.versions(name).some((version) => !registry.engine(name, version)?.failure);
}

/**
 * Sets every known model's health now, and again whenever `control` changes one; `stopping` says when
 * shutdown has taken health over (every service NOT_SERVING, whatever happens to the models).
 */
export function followModelSet(
  registry: ModelRegistry,
  control: ModelControl,
  health: ServingHealth,
  stopping: () => boolean,
): void {
  const update = (name: string) => {
    if (stopping()) return;
    health.setStatus(modelHealthService(name), modelServes(registry, name) ? "SERVING" : "NOT_SERVING");
  };
  for (const name of new Set(registry.listed().map(nameOf))) update(name);
  control.onChange(update);
}
