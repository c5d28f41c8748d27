/**
 * Loading model versions: each folder's manifest is read and checked first, then the engines of every
 * version that parsed start together. Used for the start-up load and for every later load (a load
 * request, a poll that found a new or changed version), under one rule for what fails: the error names
 * the folder, the file and the problem, and the caller decides what a failure costs (modelControl.ts:
 * at start-up under --on-model-error exit, the start; otherwise the version, listed with its error).
 *
 * Every manifest is parsed before any worker starts, so a broken manifest costs no thread; each worker
 * then checks its graphs against the manifest as it opens them (runtime/graphContract.ts).
 */
import { loadModelFolder, type ModelDefinition } from "../model/modelFolder.ts";
import { type EngineLog, type EngineObserver, type EngineOptions, ModelEngine } from "./modelEngine.ts";
import type { FailedModel } from "./modelRegistry.ts";

/** A version folder to load, and the observer its engine reports to. */
export interface VersionToLoad {
  dir: string;
  observer: (definition: ModelDefinition) => EngineObserver | undefined;
}

export type LoadOutcome =
  | { dir: string; engine: ModelEngine; definition: ModelDefinition }
  | { dir: string; failed: FailedModel; error: unknown };

/**
 * Loads `versions`: parses every manifest (and `check`s it: a model the server's fixed bounds cannot
 * serve fails here), then starts the engines of those that parsed, all at once. Never throws: each
 * version comes back loaded or failed, in the order given.
 */
export async function loadVersions(
  versions: readonly VersionToLoad[],
  engineOptions: EngineOptions,
  log: EngineLog,
  check: (definition: ModelDefinition) => void = () => {},
): Promise<LoadOutcome[]> {
  type Parsed = { version: VersionToLoad; definition: ModelDefinition } | { version: VersionToLoad; error: unknown };
  const parsed = versions.map((version): Parsed => {
    try {
      const definition = loadModelFolder(version.dir);
      check(definition);
      return { version, definition };
    } catch (error) {
      return { version, error };
    }
  });
  // Settled, not raced: every engine that did start must reach the caller, to serve or be closed.
  return Promise.all(
    parsed.map(async (item): Promise<LoadOutcome> => {
      const { dir } = item.version;
      if ("error" in item) return { dir, failed: failedModel(dir, undefined, item.error), error: item.error };
      const { definition } = item;
      try {
        const engine = await ModelEngine.start(definition, engineOptions, log, item.version.observer(definition));
        const { name, version } = definition.manifest;
        log.info(
          { model: name, version, dir, threads: engineOptions.session.threads, provider: engine.provider },
          "model loaded",
        );
        return { dir, engine, definition };
      } catch (error) {
        return { dir, failed: failedModel(dir, definition, error), error };
      }
    }),
  );
}

export function failedModel(dir: string, definition: ModelDefinition | undefined, error: unknown): FailedModel {
  const [versionDir, nameDir] = dir.split(/[\\/]/).reverse();
  return {
    name: definition?.manifest.name ?? nameDir ?? dir,
    version: definition?.manifest.version ?? Number(versionDir),
    dir,
    reason: error instanceof Error ? error.message : String(error),
    definition,
  };
}
