/**
 * ctm.v1's model control and statistics RPCs (LoadModel, UnloadModel, ListRepository,
 * GetModelStatistics) on CtmService, beside Classify: thin shells over the engine's model control,
 * as the Open Inference Protocol's repository RPCs are, refused through the one error policy and
 * counted in the request metrics. The token check (grpc/authentication.ts) comes first.
 */
import type * as grpc from "@grpc/grpc-js";
import type { IndexEntry, ModelControl } from "../../engine/modelControl.ts";
import type { ModelRegistry } from "../../engine/modelRegistry.ts";
import type { StageDuration } from "../../engine/modelStatistics.ts";
import { invalidArgument } from "../../engine/serverError.ts";
import { parseVersionPolicy } from "../../engine/versionPolicy.ts";
import type { Logger } from "../../logger.ts";
import type { ServerMetrics } from "../../metrics.ts";
import { countedUnary } from "../grpc/countedUnary.ts";

const STATES: Record<IndexEntry["state"], string> = {
  READY: "REPOSITORY_STATE_READY",
  LOADING: "REPOSITORY_STATE_LOADING",
  UNLOADING: "REPOSITORY_STATE_UNLOADING",
  UNAVAILABLE: "REPOSITORY_STATE_UNAVAILABLE",
};

function repositoryModels(entries: IndexEntry[]) {
  return {
    models: entries.map((entry) => ({
      name: entry.name,
      version: entry.version ?? 0,
      state: STATES[entry.state],
      reason: entry.reason,
    })),
  };
}

export function createCtmRepository(
  control: ModelControl,
  registry: ModelRegistry,
  metrics: ServerMetrics,
  log: Logger,
): grpc.UntypedServiceImplementation {
  const unary = countedUnary(registry, metrics, log);
  const versionsOf = (name: string) => repositoryModels(control.index().filter((entry) => entry.name === name));

  return {
    LoadModel(
      call: grpc.ServerUnaryCall<{ name?: string; version_policy?: string }, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) {
      const { name = "", version_policy: policy = "" } = call.request;
      return unary("LoadModel", name, callback, async () => {
        if (!name) throw invalidArgument("name must name a model folder");
        await control.load(name, policy ? parseVersionPolicy(policy, "version_policy") : undefined);
        return versionsOf(name);
      });
    },

    UnloadModel(
      call: grpc.ServerUnaryCall<{ name?: string; version?: number }, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) {
      const { name = "", version = 0 } = call.request;
      return unary("UnloadModel", name, callback, async () => {
        if (!name) throw invalidArgument("name must name a loaded model");
        await control.unload(name, version);
        return versionsOf(name);
      });
    },

    ListRepository(
      call: grpc.ServerUnaryCall<{ ready_only?: boolean }, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) {
      return unary("ListRepository", "", callback, () =>
        repositoryModels(control.index(call.request.ready_only ?? false)),
      );
    },

    GetModelStatistics(
      call: grpc.ServerUnaryCall<{ name?: string; version?: number }, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) {
      const { name = "", version = 0 } = call.request;
      return unary("GetModelStatistics", name, callback, () => {
        if (!name && version !== 0) throw invalidArgument("version needs a name: the statistics of which model?");
        const duration = (d: StageDuration) => ({ count: d.count, ns: d.ns });
        return {
          models: control.statistics(name, version).map(({ engine, statistics: s }) => ({
            name: engine.name,
            version: engine.definition.manifest.version,
            last_inference_ms: s.lastInference,
            inference_count: s.inferenceCount,
            execution_count: s.executionCount,
            success: duration(s.success),
            fail: duration(s.fail),
            queue: duration(s.queue),
            compute_input: duration(s.computeInput),
            compute_infer: duration(s.computeInfer),
            compute_output: duration(s.computeOutput),
            batches: s.batchStatistics().map((b) => ({
              batch_size: b.batchSize,
              compute_input: duration(b.computeInput),
              compute_infer: duration(b.computeInfer),
              compute_output: duration(b.computeOutput),
            })),
            ticks: { computed: s.ticks.computed, used: s.ticks.used, halts: { ...s.ticks.halts } },
          })),
        };
      });
    },
  };
}
