/**
 * The model versions a server serves now, by name and version, and the ones it could not load.
 * Lookups fail with the errors a client sees: NOT_FOUND naming what is loaded, or UNAVAILABLE while
 * the models are still loading and, with the load error, for a version that failed to load.
 *
 * Version 0 in a lookup means the highest loaded version, as Triton picks one for a request that names
 * none. What is loaded changes while the server runs (modelControl.ts): a lookup sees a version from
 * the moment it serves until it is taken out to be unloaded; requests already holding its engine
 * finish on it.
 */
import type { ModelDefinition } from "../model/modelFolder.ts";
import type { ModelEngine } from "./modelEngine.ts";
import { echo, invalidArgument, ServerError } from "./serverError.ts";

/** A model version that could not be loaded: listed with its error, never served. */
export interface FailedModel {
  /** From the manifest when it parsed, else from the folder's name. */
  name: string;
  version: number;
  dir: string;
  /** Why it could not be loaded, naming the file and the problem. */
  reason: string;
  /** Set when the manifest parsed and the failure came later (a graph, a worker). */
  definition: ModelDefinition | undefined;
}

/** A model version as ListModels and GetModel describe it. */
export type ListedModel = { ready: true; engine: ModelEngine } | { ready: false; failed: FailedModel };

export class ModelRegistry {
  private readonly engines = new Map<string, Map<number, ModelEngine>>();
  private readonly failures = new Map<string, Map<number, FailedModel>>();
  private loading = true;

  /** Serves `engine` under its name and version, in place of whatever served or failed there. */
  add(engine: ModelEngine): void {
    const version = engine.definition.manifest.version;
    versionsIn(this.engines, engine.name).set(version, engine);
    this.dropFailure(engine.name, version);
  }

  /** Records a version that could not be loaded (one that serves is not replaced by its failure). */
  addFailure(failed: FailedModel): void {
    if (this.engines.get(failed.name)?.has(failed.version)) return;
    versionsIn(this.failures, failed.name).set(failed.version, failed);
  }

  /** Takes a version out of service: lookups stop finding it. Returns its engine, to be drained. */
  remove(name: string, version: number): ModelEngine | undefined {
    const versions = this.engines.get(name);
    const engine = versions?.get(version);
    versions?.delete(version);
    if (versions?.size === 0) this.engines.delete(name);
    return engine;
  }

  /** Forgets a version's load failure (its folder is gone, or it is no longer wanted). */
  dropFailure(name: string, version: number): void {
    const failed = this.failures.get(name);
    failed?.delete(version);
    if (failed?.size === 0) this.failures.delete(name);
  }

  /** Lookups stop answering UNAVAILABLE for names they do not know. */
  markLoaded(): void {
    this.loading = false;
  }

  /** Every loaded version's engine. */
  all(): ModelEngine[] {
    return [...this.engines.values()].flatMap((versions) => [...versions.values()]);
  }

  failed(): FailedModel[] {
    return [...this.failures.values()].flatMap((versions) => [...versions.values()]);
  }

  /** The loaded versions of `name`, highest first. */
  versions(name: string): number[] {
    return [...(this.engines.get(name)?.keys() ?? [])].sort((a, b) => b - a);
  }

  /** The engine serving `name` at `version` (0: the highest), or undefined. */
  engine(name: string, version = 0): ModelEngine | undefined {
    const versions = this.engines.get(name);
    if (!versions) return undefined;
    return versions.get(version === 0 ? (this.versions(name)[0] as number) : version);
  }

  /** Whether `name` is a model this server serves or tried to (a label a client cannot multiply). */
  knows(name: string): boolean {
    return this.engines.has(name) || this.failures.has(name);
  }

  /** Every model version, loaded or failed, by name, then highest version first. */
  listed(): ListedModel[] {
    const listed: ListedModel[] = [
      ...this.all().map((engine): ListedModel => ({ ready: true, engine })),
      ...this.failed().map((failed): ListedModel => ({ ready: false, failed })),
    ];
    return listed.sort((a, b) => nameOf(a).localeCompare(nameOf(b)) || versionOf(b) - versionOf(a));
  }

  /** A model to run. `version` 0 means the highest loaded version. */
  get(name: string, version: number, field = "model"): ModelEngine {
    const found = this.find(name, version, field);
    if (found.ready) return found.engine;
    const { failed } = found;
    throw new ServerError(
      "UNAVAILABLE",
      `model "${failed.name}" version ${failed.version} failed to load and is not serving: ${failed.reason}`,
    );
  }

  /** A model to describe: like `get`, but a version that failed to load is returned, not refused. */
  find(name: string, version: number, field = "model"): ListedModel {
    if (!name) throw invalidArgument(`${field} must name a loaded model (${this.describe()})`);
    const engines = this.engines.get(name);
    const failures = this.failures.get(name);
    if (!engines && !failures) {
      if (this.loading) throw new ServerError("UNAVAILABLE", "the server is still loading its models; retry shortly");
      throw new ServerError("NOT_FOUND", `model ${echo(name)} is not loaded (${this.describe()})`);
    }
    const engine = this.engine(name, version);
    if (engine) return { ready: true, engine };
    const failed =
      version === 0 ? [...(failures?.values() ?? [])].sort((a, b) => b.version - a.version)[0] : failures?.get(version);
    if (failed) return { ready: false, failed };
    const loaded = [...this.versions(name).map((v) => `${name}/${v}`), ...this.failedNames(name)];
    throw new ServerError(
      "NOT_FOUND",
      `model "${name}" version ${version} is not loaded (loaded: ${loaded.join(", ")})`,
    );
  }

  private failedNames(name: string): string[] {
    return [...(this.failures.get(name)?.keys() ?? [])].map((v) => `${name}/${v} (failed)`);
  }

  private describe(): string {
    const names = this.all().map((e) => `${e.name}/${e.definition.manifest.version}`);
    const loaded = names.length > 0 ? `loaded: ${names.join(", ")}` : "no models are loaded";
    const failed = this.failed().map((f) => `${f.name}/${f.version}`);
    return failed.length > 0 ? `${loaded}; failed to load: ${failed.join(", ")}` : loaded;
  }
}

function versionsIn<T>(map: Map<string, Map<number, T>>, name: string): Map<number, T> {
  let versions = map.get(name);
  if (!versions) {
    versions = new Map();
    map.set(name, versions);
  }
  return versions;
}

/** The name of a listed model, loaded or failed. */
export function nameOf(model: ListedModel): string {
  return model.ready ? model.engine.name : model.failed.name;
}

/** The version of a listed model, loaded or failed. */
export function versionOf(model: ListedModel): number {
  return model.ready ? model.engine.definition.manifest.version : model.failed.version;
}
