/**
 * The Open Inference Protocol's repository and statistics RPCs on inference.GRPCInferenceService:
 * ModelStatistics, RepositoryIndex, RepositoryModelLoad and RepositoryModelUnload, each a thin gRPC
 * shell around oip/repositoryCalls.ts, refused through the one error policy and counted in the
 * request metrics. The token check (grpc/authentication.ts) comes before any of them runs.
 */
import type * as grpc from "@grpc/grpc-js";
import type { ModelControl } from "../../engine/modelControl.ts";
import type { ModelRegistry } from "../../engine/modelRegistry.ts";
import type { Logger } from "../../logger.ts";
import type { ServerMetrics } from "../../metrics.ts";
import { countedUnary } from "../grpc/countedUnary.ts";
import {
  loadModel,
  modelStatistics,
  type RepositoryParameters,
  repositoryIndex,
  unloadModel,
} from "./repositoryCalls.ts";

interface ParameterMessage {
  parameter_choice?: "bool_param" | "int64_param" | "string_param" | "bytes_param";
  bool_param?: boolean;
  int64_param?: number;
  string_param?: string;
  bytes_param?: Uint8Array;
}

interface RepositoryModelRequest {
  repository_name?: string;
  model_name?: string;
  parameters?: Record<string, ParameterMessage>;
}

/** The parameters as the shared calls take them: each its set value. */
function parametersOf(request: RepositoryModelRequest): RepositoryParameters {
  const parameters: RepositoryParameters = {};
  for (const [key, parameter] of Object.entries(request.parameters ?? {})) {
    const choice = parameter.parameter_choice;
    const value = choice ? parameter[choice] : undefined;
    if (value !== undefined) parameters[key] = value;
  }
  return parameters;
}

export function createRepositoryService(
  control: ModelControl,
  registry: ModelRegistry,
  metrics: ServerMetrics,
  log: Logger,
): grpc.UntypedServiceImplementation {
  const unary = countedUnary(registry, metrics, log);

  return {
    ModelStatistics(
      call: grpc.ServerUnaryCall<{ name?: string; version?: string }, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) {
      const { name = "", version = "" } = call.request;
      return unary("ModelStatistics", name, callback, () => modelStatistics(control, name, version));
    },

    RepositoryIndex(call: grpc.ServerUnaryCall<{ ready?: boolean }, unknown>, callback: grpc.sendUnaryData<unknown>) {
      return unary("RepositoryIndex", "", callback, () => repositoryIndex(control, call.request.ready ?? false));
    },

    RepositoryModelLoad(
      call: grpc.ServerUnaryCall<RepositoryModelRequest, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) {
      const name = call.request.model_name ?? "";
      return unary("RepositoryModelLoad", name, callback, async () => {
        await loadModel(control, name, parametersOf(call.request));
        return {};
      });
    },

    RepositoryModelUnload(
      call: grpc.ServerUnaryCall<RepositoryModelRequest, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) {
      const name = call.request.model_name ?? "";
      return unary("RepositoryModelUnload", name, callback, async () => {
        await unloadModel(control, name, parametersOf(call.request));
        return {};
      });
    },
  };
}
