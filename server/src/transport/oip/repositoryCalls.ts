/**
 * The Open Inference Protocol's model repository and statistics extensions, once for both transports
 * (gRPC in oip/repositoryService.ts, HTTP/REST in oip/restApi.ts): the index, load and unload with
 * their parameters, and per-version statistics in Triton's message shapes (which are also the REST
 * JSON's: the same field names, uint64 as numbers).
 */
import type { IndexEntry, ModelControl } from "../../engine/modelControl.ts";
import type { StageDuration } from "../../engine/modelStatistics.ts";
import { invalidArgument } from "../../engine/serverError.ts";
import { parseVersionPolicy, type VersionPolicy, versionPolicyFromConfig } from "../../engine/versionPolicy.ts";
import { versionNumber } from "./modelDescription.ts";

/** A load or unload request's parameters, whichever transport they came by. */
export type RepositoryParameters = Record<string, boolean | number | string | Uint8Array>;

export interface ModelIndexMessage {
  name: string;
  version: string;
  state: string;
  reason: string;
}

export function repositoryIndex(control: ModelControl, readyOnly: boolean): { models: ModelIndexMessage[] } {
  return {
    models: control.index(readyOnly).map((entry: IndexEntry) => ({
      name: entry.name,
      version: entry.version === undefined ? "" : String(entry.version),
      state: entry.state,
      reason: entry.reason,
    })),
  };
}

/**
 * Loads (or reloads) `name`. Parameters: `config`, Triton's model configuration as JSON (what
 * tritonclient's load_model(config=...) sends), of which version_policy is read; or `version_policy`,
 * the policy as --version-policy writes it. Model files sent with the request are refused: models
 * come from the models folder only.
 */
export async function loadModel(control: ModelControl, name: string, parameters: RepositoryParameters): Promise<void> {
  if (!name) throw invalidArgument("model_name must name a model folder");
  let policy: VersionPolicy | undefined;
  for (const [key, value] of Object.entries(parameters)) {
    if (key === "config") {
      policy = versionPolicyFromConfig(textOf(key, value), "parameters.config");
    } else if (key === "version_policy") {
      policy = parseVersionPolicy(textOf(key, value), "parameters.version_policy");
    } else if (key.startsWith("file:")) {
      throw invalidArgument(
        `parameters.${key}: this server loads models only from its models folder; put the files in <models-dir>/${name}/<version>/ and load again`,
      );
    } else {
      throw invalidArgument(
        `parameters.${key} is not a load parameter this server reads; it reads config and version_policy`,
      );
    }
  }
  if ("config" in parameters && "version_policy" in parameters) {
    throw invalidArgument("set at most one of parameters.config and parameters.version_policy");
  }
  await control.load(name, policy);
}

/**
 * Unloads `name`, or with the parameter `version` one version of it. `unload_dependents` is accepted
 * and changes nothing: a CTM has no dependent models.
 */
export async function unloadModel(
  control: ModelControl,
  name: string,
  parameters: RepositoryParameters,
): Promise<void> {
  if (!name) throw invalidArgument("model_name must name a loaded model");
  let version = 0;
  for (const [key, value] of Object.entries(parameters)) {
    if (key === "version") {
      version =
        typeof value === "number" && Number.isInteger(value) && value > 0
          ? value
          : versionNumber(typeof value === "string" ? value : JSON.stringify(value), "parameters.version");
      if (version === 0) throw invalidArgument("parameters.version must be a positive integer, got an empty string");
    } else if (key !== "unload_dependents") {
      throw invalidArgument(
        `parameters.${key} is not an unload parameter this server reads; it reads version and unload_dependents`,
      );
    }
  }
  await control.unload(name, version);
}

function textOf(key: string, value: RepositoryParameters[string]): string {
  if (typeof value === "string") return value;
  if (value instanceof Uint8Array) return Buffer.from(value).toString("utf8");
  throw invalidArgument(`parameters.${key} must be a string, got ${JSON.stringify(value)}`);
}

// ---------------------------------------------------------------- statistics
export interface StatisticDurationMessage {
  count: number;
  ns: number;
}

export interface ModelStatisticsMessage {
  name: string;
  version: string;
  last_inference: number;
  inference_count: number;
  execution_count: number;
  inference_stats: Record<
    "success" | "fail" | "queue" | "compute_input" | "compute_infer" | "compute_output" | "cache_hit" | "cache_miss",
    StatisticDurationMessage
  >;
  batch_stats: {
    batch_size: number;
    compute_input: StatisticDurationMessage;
    compute_infer: StatisticDurationMessage;
    compute_output: StatisticDurationMessage;
  }[];
  ctm_ticks: { computed: number; used: number; halts: Record<string, number> };
}

/** Statistics of every loaded version (`name` empty), of a model's loaded versions, or of one version. */
export function modelStatistics(
  control: ModelControl,
  name: string,
  version: string,
): { model_stats: ModelStatisticsMessage[] } {
  if (name === "" && version !== "") throw invalidArgument("version needs a name: the statistics of which model?");
  const stats = control.statistics(name, versionNumber(version));
  const duration = (d: StageDuration): StatisticDurationMessage => ({ count: d.count, ns: d.ns });
  const none = { count: 0, ns: 0 };
  return {
    model_stats: stats.map(({ engine, statistics: s }) => ({
      name: engine.name,
      version: String(engine.definition.manifest.version),
      last_inference: s.lastInference,
      inference_count: s.inferenceCount,
      execution_count: s.executionCount,
      inference_stats: {
        success: duration(s.success),
        fail: duration(s.fail),
        queue: duration(s.queue),
        compute_input: duration(s.computeInput),
        compute_infer: duration(s.computeInfer),
        compute_output: duration(s.computeOutput),
        // No response cache: a CTM's answer depends on its halt policy as much as on its input.
        cache_hit: none,
        cache_miss: none,
      },
      batch_stats: s.batchStatistics().map((b) => ({
        batch_size: b.batchSize,
        compute_input: duration(b.computeInput),
        compute_infer: duration(b.computeInfer),
        compute_output: duration(b.computeOutput),
      })),
      ctm_ticks: { computed: s.ticks.computed, used: s.ticks.used, halts: { ...s.ticks.halts } },
    })),
  };
}
