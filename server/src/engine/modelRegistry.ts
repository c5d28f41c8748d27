/**
 * The models a server serves, by name. Lookups fail with the errors a client sees: NOT_FOUND naming
 * what is loaded, or UNAVAILABLE while the models are still loading.
 */
import type { ModelEngine } from "./modelEngine.ts";
import { invalidArgument, ServerError } from "./serverError.ts";

export class ModelRegistry {
  private readonly engines = new Map<string, ModelEngine>();
  private loading = true;

  add(engine: ModelEngine): void {
    this.engines.set(engine.name, engine);
  }

  /** Lookups stop answering UNAVAILABLE. */
  markLoaded(): void {
    this.loading = false;
  }

  all(): ModelEngine[] {
    return [...this.engines.values()];
  }

  /** `version` 0 means whichever version is loaded. */
  get(name: string, version: number, field = "model"): ModelEngine {
    if (!name) throw invalidArgument(`${field} must name a loaded model (${this.describe()})`);
    const engine = this.engines.get(name);
    if (!engine) {
      if (this.loading) throw new ServerError("UNAVAILABLE", "the server is still loading its models; retry shortly");
      throw new ServerError("NOT_FOUND", `model "${name}" is not loaded (${this.describe()})`);
    }
    const loaded = engine.definition.manifest.version;
    if (version !== 0 && version !== loaded) {
      throw new ServerError(
        "NOT_FOUND",
        `model "${name}" version ${version} is not loaded (loaded: ${name}/${loaded})`,
      );
    }
    return engine;
  }

  private describe(): string {
    const names = this.all().map((e) => `${e.name}/${e.definition.manifest.version}`);
    return names.length > 0 ? `loaded: ${names.join(", ")}` : "no models are loaded";
  }
}
