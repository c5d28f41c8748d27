/**
 * The Open Inference Protocol's health and description answers, once for both of its transports:
 * server and model readiness (read from grpc.health.v1's record, so that they agree with it in every
 * state), server metadata, and the model a metadata or configuration request names.
 */
import { readFileSync } from "node:fs";
import type { ModelEngine } from "../../engine/modelEngine.ts";
import type { ModelRegistry } from "../../engine/modelRegistry.ts";
import { invalidArgument } from "../../engine/serverError.ts";
import { encodeModelMetadata } from "./inferEncoding.ts";
import type { ModelMetadataResponseMessage } from "./oipProtocol.ts";

const PACKAGE = JSON.parse(readFileSync(new URL("../../../../package.json", import.meta.url), "utf8")) as {
  name: string;
  version: string;
};

/** What ServerMetadata lists: Triton's names for the extensions this server implements. */
export const EXTENSIONS = [
  "classification",
  "model_configuration",
  "model_repository",
  "statistics",
  "binary_tensor_data",
];

export interface ServerMetadata {
  name: string;
  version: string;
  extensions: string[];
}

/** `server`: a name and version other than package.json's. */
export function serverMetadata(server?: { name: string; version: string }): ServerMetadata {
  const { name, version } = server ?? PACKAGE;
  return { name, version, extensions: EXTENSIONS };
}

/**
 * What readiness is read from: grpc.health.v1's record (health/servingHealth.ts, handed in by
 * server.ts), so that the protocol's answers agree with grpc.health.v1 in every state.
 */
export interface Readiness {
  /** The whole server serves. */
  serving(): boolean;
  /** `model` serves. */
  modelServing(model: string): boolean;
}

export function serverReady(health: Readiness): boolean {
  return health.serving();
}

/**
 * Whether `name` serves (grpc.health.v1's SERVING for its service) and, when `version` is not empty,
 * that version of it is loaded with a running worker. An unknown model or version is not ready.
 */
export function modelReady(registry: ModelRegistry, health: Readiness, name: string, version: string): boolean {
  if (name === "" || !health.modelServing(name)) return false;
  if (version === "") return true;
  if (!/^[1-9][0-9]{0,8}$/.test(version)) return false;
  const engine = registry.engine(name, Number(version));
  return engine !== undefined && !engine.failure;
}

/** A model version string from a request: empty (the highest loaded) or a positive integer. */
export function versionNumber(version: string | undefined, field = "version"): number {
  if (!version) return 0;
  if (!/^[1-9][0-9]{0,8}$/.test(version)) {
    throw invalidArgument(
      `${field} must be empty (the highest loaded version) or a positive integer, got ${JSON.stringify(version)}`,
    );
  }
  return Number(version);
}

/** The model a metadata or configuration request names; a version that failed to load is UNAVAILABLE. */
export function describedModel(
  registry: ModelRegistry,
  name: string | undefined,
  version: string | undefined,
): ModelEngine {
  return registry.get(name ?? "", versionNumber(version), "name");
}

/** ModelMetadata: the model's tensors, and every version of it that is loaded (highest first). */
export function modelMetadata(registry: ModelRegistry, engine: ModelEngine): ModelMetadataResponseMessage {
  return { ...encodeModelMetadata(engine), versions: registry.versions(engine.name).map(String) };
}
