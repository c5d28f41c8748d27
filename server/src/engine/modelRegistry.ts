/**
 * The models a server serves, by name, and the ones it could not load (--on-model-error skip). Lookups
 * fail with the errors a client sees: NOT_FOUND naming what is loaded, or UNAVAILABLE while the models
 * are still loading and, with the load error, for a model that failed to load.
 */
import type { ModelDefinition } from "../model/modelFolder.ts";
import type { ModelEngine } from "./modelEngine.ts";
import { echo, invalidArgument, ServerError } from "./serverError.ts";

/** A model folder that could not be loaded: listed with its error, never served. */
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

/** A model as ListModels and GetModel describe it. */
export type ListedModel = { ready: true; engine: ModelEngine } | { ready: false; failed: FailedModel };

export class ModelRegistry {
  private readonly engines = new Map<string, ModelEngine>();
  private readonly failures = new Map<string, FailedModel>();
  private loading = true;

  add(engine: ModelEngine): void {
    this.engines.set(engine.name, engine);
  }

  addFailure(failed: FailedModel): void {
    this.failures.set(failed.name, failed);
  }

  /** Lookups stop answering UNAVAILABLE. */
  markLoaded(): void {
    this.loading = false;
  }

  /** The loaded engines. */
  all(): ModelEngine[] {
    return [...this.engines.values()];
  }

  failed(): FailedModel[] {
    return [...this.failures.values()];
  }

  /** Every model, loaded or failed, by name. */
  listed(): ListedModel[] {
    const listed: ListedModel[] = [
      ...this.all().map((engine): ListedModel => ({ ready: true, engine })),
      ...this.failed().map((failed): ListedModel => ({ ready: false, failed })),
    ];
    return listed.sort((a, b) => nameOf(a).localeCompare(nameOf(b)));
  }

  /** A model to run. `version` 0 means whichever version is loaded. */
  get(name: string, version: number, field = "model"): ModelEngine {
    const found = this.find(name, version, field);
    if (found.ready) return found.engine;
    const { failed } = found;
    throw new ServerError(
      "UNAVAILABLE",
      `model "${failed.name}" version ${failed.version} failed to load and is not serving: ${failed.reason}`,
    );
  }

  /** A model to describe: like `get`, but a model that failed to load is returned, not refused. */
  find(name: string, version: number, field = "model"): ListedModel {
    if (!name) throw invalidArgument(`${field} must name a loaded model (${this.describe()})`);
    const engine = this.engines.get(name);
    const failed = this.failures.get(name);
    if (!engine && !failed) {
      if (this.loading) throw new ServerError("UNAVAILABLE", "the server is still loading its models; retry shortly");
      throw new ServerError("NOT_FOUND", `model ${echo(name)} is not loaded (${this.describe()})`);
    }
    const loaded = engine ? engine.definition.manifest.version : (failed as FailedModel).version;
    if (version !== 0 && version !== loaded) {
      throw new ServerError(
        "NOT_FOUND",
        `model "${name}" version ${version} is not loaded (loaded: ${name}/${loaded})`,
      );
    }
    return engine ? { ready: true, engine } : { ready: false, failed: failed as FailedModel };
  }

  private describe(): string {
    const names = this.all().map((e) => `${e.name}/${e.definition.manifest.version}`);
    const loaded = names.length > 0 ? `loaded: ${names.join(", ")}` : "no models are loaded";
    const failed = this.failed().map((f) => `${f.name}/${f.version}`);
    return failed.length > 0 ? `${loaded}; failed to load: ${failed.join(", ")}` : loaded;
  }
}

/** The name of a listed model, loaded or failed. */
export function nameOf(model: ListedModel): string {
  return model.ready ? model.engine.name : model.failed.name;
}
