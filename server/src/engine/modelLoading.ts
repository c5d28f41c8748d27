/**
 * Loads every model folder into the registry under one policy for the ones that cannot be loaded:
 * `exit` fails the start with the first error, `skip` records the model as failed (listed, not ready,
 * its calls UNAVAILABLE with the error) and serves the others.
 *
 * Every manifest is parsed before any worker starts, so a broken manifest under `exit` costs no thread;
 * each worker then checks its graphs against the manifest as it opens them (runtime/graphContract.ts).
 */
import type { ModelErrorPolicy } from "../config.ts";
import { discoverModelFolders, loadModelFolder, type ModelDefinition } from "../model/modelFolder.ts";
import { type EngineLog, type EngineObserver, type EngineOptions, ModelEngine } from "./modelEngine.ts";
import type { FailedModel, ModelRegistry } from "./modelRegistry.ts";

export interface ModelLoadingOptions {
  modelsDir: string;
  onModelError: ModelErrorPolicy;
  engine: EngineOptions;
}

/**
 * Fills `registry`. Throws when the models folder is unusable, when a model fails under `exit`, and
 * when no model at all could be loaded; engines already started stay in the registry for the caller
 * to close.
 */
export async function loadModels(
  registry: ModelRegistry,
  options: ModelLoadingOptions,
  log: EngineLog,
  observer: EngineObserver | undefined,
): Promise<void> {
  const fail = (dir: string, definition: ModelDefinition | undefined, error: unknown) => {
    if (options.onModelError === "exit") throw error;
    const failed = failedModel(dir, definition, error);
    registry.addFailure(failed);
    log.error(
      { model: failed.name, version: failed.version, dir, err: error },
      `model ${failed.name} failed to load and is not served (--on-model-error skip): ${failed.reason}`,
    );
  };

  const parsed: ModelDefinition[] = [];
  for (const dir of discoverModelFolders(options.modelsDir)) {
    try {
      parsed.push(loadModelFolder(dir));
    } catch (error) {
      fail(dir, undefined, error);
    }
  }
  // Settled, not raced: under `exit` every engine that did start must reach the registry to be closed.
  const started = await Promise.allSettled(
    parsed.map((definition) => ModelEngine.start(definition, options.engine, log, observer)),
  );
  const errors: unknown[] = [];
  started.forEach((outcome, i) => {
    const definition = parsed[i] as ModelDefinition;
    if (outcome.status === "fulfilled") {
      const engine = outcome.value;
      registry.add(engine);
      const { name, version } = definition.manifest;
      log.info(
        {
          model: name,
          version,
          dir: definition.dir,
          threads: options.engine.session.threads,
          provider: engine.provider,
        },
        "model loaded",
      );
    } else {
      errors.push(outcome.reason);
      if (options.onModelError === "skip") fail(definition.dir, definition, outcome.reason);
    }
  });
  if (errors.length > 0 && options.onModelError === "exit") throw errors[0];
  if (registry.all().length === 0) {
    const reasons = registry.failed().map((f) => `${f.name}/${f.version}: ${f.reason}`);
    throw new Error(`no model in ${options.modelsDir} could be loaded: ${reasons.join("; ")}`);
  }
}

function failedModel(dir: string, definition: ModelDefinition | undefined, error: unknown): FailedModel {
  const [versionDir, nameDir] = dir.split(/[\\/]/).reverse();
  return {
    name: definition?.manifest.name ?? nameDir ?? dir,
    version: definition?.manifest.version ?? Number(versionDir),
    dir,
    reason: error instanceof Error ? error.message : String(error),
    definition,
  };
}
