/** One finished RPC into the request metrics, under a model label a client cannot multiply. */
import { performance } from "node:perf_hooks";
import { status as grpcStatus } from "@grpc/grpc-js";
import { type ModelRegistry, nameOf } from "../../engine/modelRegistry.ts";
import type { ServerMetrics } from "../../metrics.ts";

export function recordRequest(
  registry: ModelRegistry,
  metrics: ServerMetrics,
  model: string,
  method: string,
  code: grpcStatus,
  started: number,
): void {
  // A name the client made up is not a label: each would be a new series, held for good.
  const served = registry.listed().some((listed) => nameOf(listed) === model);
  metrics.requestFinished(
    model === "" ? "(none)" : served ? model : "(unknown)",
    method,
    grpcStatus[code] ?? String(code),
    (performance.now() - started) / 1000,
  );
}
