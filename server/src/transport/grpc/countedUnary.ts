/**
 * One unary call answered from a function: its result, or its refusal through the one error policy,
 * counted in the request metrics either way. The repository and statistics RPCs of ctm.v1 and of the
 * Open Inference Protocol answer this way.
 */
import { performance } from "node:perf_hooks";
import type * as grpc from "@grpc/grpc-js";
import { status as grpcStatus } from "@grpc/grpc-js";
import type { ModelRegistry } from "../../engine/modelRegistry.ts";
import type { Logger } from "../../logger.ts";
import type { ServerMetrics } from "../../metrics.ts";
import { toStatus } from "./errorPolicy.ts";
import { recordRequest } from "./requestMetrics.ts";

export type CountedUnary = <T>(
  method: string,
  model: string,
  callback: grpc.sendUnaryData<T>,
  answer: () => T | Promise<T>,
) => Promise<void>;

export function countedUnary(registry: ModelRegistry, metrics: ServerMetrics, log: Logger): CountedUnary {
  return async (method, model, callback, answer) => {
    const started = performance.now();
    try {
      const response = await answer();
      callback(null, response);
      recordRequest(registry, metrics, model, method, grpcStatus.OK, started);
    } catch (error) {
      const status = toStatus(error, log, { method, model });
      callback(status);
      recordRequest(registry, metrics, model, method, status.code, started);
    }
  };
}
