/**
 * Model control, as Triton's: which model versions serve, and changing that while the server runs.
 *
 *   none      the models folder is read once, at start-up; what loaded then serves until shutdown
 *   poll      the folder is read again every --repository-poll-secs: a new model or version folder
 *             loads, a removed one unloads, a version whose files changed reloads
 *   explicit  the folder is read only when asked: load (or reload) and unload requests
 *             (RepositoryModelLoad / Unload, ctm.v1 LoadModel / UnloadModel); at start-up only the
 *             --load-model models load
 *
 * Which versions of a model serve is its version policy (versionPolicy.ts). A load request may set a
 * model's policy; unloading one version pins the model to the versions still loaded. A version loads
 * beside the ones serving and takes over once it is ready, so a reload or a new latest version never
 * leaves a gap; a version that leaves is taken out of lookups first, then drained: its in-flight
 * requests finish (up to --grace-ms) before its workers stop. Versions the policy no longer selects
 * leave only once one it selects serves: a broken new version does not take the working one down.
 *
 * Changes run one at a time. Listeners hear about every change of a model's served versions (health
 * and metrics follow them). The engine knows nothing of gRPC: refusals are ServerErrors.
 */
import type { ModelControlMode, ModelErrorPolicy } from "../config.ts";
import {
  listRepository,
  loadModelFolder,
  type ModelDefinition,
  type RepositoryModel,
  versionFingerprint,
} from "../model/modelFolder.ts";
import type { EngineLog, EngineObserver, EngineOptions, ModelEngine } from "./modelEngine.ts";
import { type LoadOutcome, loadVersions } from "./modelLoading.ts";
import type { ModelRegistry } from "./modelRegistry.ts";
import { ModelStatistics } from "./modelStatistics.ts";
import { echo, ServerError } from "./serverError.ts";
import {
  describeVersionPolicy,
  policyOf,
  selectVersions,
  type VersionPolicies,
  type VersionPolicy,
} from "./versionPolicy.ts";

export interface ModelControlOptions {
  modelsDir: string;
  mode: ModelControlMode;
  /** poll: how often the models folder is read again. */
  pollMs: number;
  /** explicit: the models loaded at start-up ("*": every one). Other modes load every model. */
  startupModels: readonly string[];
  policies: VersionPolicies;
  /** At start-up only: a model that fails stops the start (exit) or is listed failed (skip). */
  onModelError: ModelErrorPolicy;
  engine: EngineOptions;
  /** How long an unloaded version's in-flight requests may take to finish before they are cancelled. */
  graceMs: number;
  /** Throws when the server cannot serve a model (its fixed request bounds are too small for it). */
  check?: (definition: ModelDefinition) => void;
}

/** Triton's states in a repository index. */
export type VersionState = "READY" | "LOADING" | "UNLOADING" | "UNAVAILABLE";

/** One entry of the repository index: a model version on disk or in memory. */
export interface IndexEntry {
  name: string;
  /** undefined: a model folder without any version folder. */
  version: number | undefined;
  state: VersionState;
  /** Why it is not READY (or, for a READY version whose reload failed, why the old files still serve). */
  reason: string;
}

/** A loaded version and its statistics. */
export interface VersionStatistics {
  engine: ModelEngine;
  statistics: ModelStatistics;
}

interface Loaded {
  fingerprint: string;
  statistics: ModelStatistics;
  /** Which engine of its version it is, for the occupancy it reports. */
  instance: number;
  /** Set when a reload of this version failed: the version serves its old files. */
  reloadError?: string;
}

const key = (name: string, version: number) => `${name}/${version}`;

export class ModelControl {
  private readonly loaded = new Map<ModelEngine, Loaded>();
  /** Versions being loaded now, for the index. */
  private readonly loading = new Map<string, { name: string; version: number }>();
  /** Engines taken out of lookups and draining, for the index. */
  private readonly unloading = new Set<ModelEngine>();
  /** Fingerprints of versions that failed to load: a poll retries one only once its files change. */
  private readonly failedFingerprints = new Map<string, string>();
  /** explicit: the models asked for (at start-up or by a load request). */
  private readonly wanted = new Set<string>();
  /** Policies set by load requests, and by unloading single versions. */
  private readonly overrides = new Map<string, VersionPolicy>();
  /** Per engine: queued, active and parked requests, so that a model's gauges sum its engines. */
  private readonly occupancies = new Map<number, { name: string; values: [number, number, number] }>();
  private nextInstance = 1;
  private readonly retiring = new Set<Promise<void>>();
  private readonly listeners: ((model: string) => void)[] = [];
  private serial: Promise<unknown> = Promise.resolve();
  private poller: NodeJS.Timeout | undefined;
  private polling = false;
  private listingError: string | undefined;
  private closed = false;

  constructor(
    private readonly registry: ModelRegistry,
    private readonly options: ModelControlOptions,
    private readonly log: EngineLog,
    private readonly observer: EngineObserver | undefined,
  ) {}

  get mode(): ModelControlMode {
    return this.options.mode;
  }

  /** Calls `listener` with a model's name whenever its served versions, or one's failure, change. */
  onChange(listener: (model: string) => void): void {
    this.listeners.push(listener);
  }

  /**
   * The start-up load. Throws when the models folder is unusable, when a model fails under
   * --on-model-error exit, when a --load-model model has no folder, and (modes none and poll) when no
   * model at all could be loaded; engines already started stay in the registry for the caller to close.
   */
  async start(): Promise<void> {
    const repository = listRepository(this.options.modelsDir);
    let names = repository.map((model) => model.name);
    if (this.options.mode === "explicit") {
      const asked = this.options.startupModels;
      if (!asked.includes("*")) {
        const missing = asked.filter((name) => !names.includes(name));
        if (missing.length > 0) {
          throw new Error(
            `--load-model names ${missing.map((m) => JSON.stringify(m)).join(", ")}, which ${this.options.modelsDir} has no folder for (it has: ${names.join(", ") || "none"})`,
          );
        }
        names = [...new Set(asked)];
      }
      for (const name of names) this.wanted.add(name);
    }
    const failFast = this.options.onModelError === "exit";
    const { errors } = await this.reconcile(names, repository, { startup: true, retry: true, failFast });
    if (errors.length > 0 && this.options.onModelError === "exit") throw errors[0];
    if (this.options.mode !== "explicit" && this.registry.all().length === 0) {
      const reasons = this.registry.failed().map((f) => `${f.name}/${f.version}: ${f.reason}`);
      throw new Error(
        `no model in ${this.options.modelsDir} could be loaded: ${reasons.join("; ") || "no version folder is selected by --version-policy"}`,
      );
    }
    if (this.options.mode === "poll") this.startPolling();
  }

  /**
   * explicit: loads `name`'s versions as its policy selects them (`policy`, when given, becomes its
   * policy; otherwise --version-policy's): new versions load, versions whose files changed reload,
   * versions no longer selected unload. Resolves once the selected versions serve; rejects, naming the
   * cause, when one could not be loaded (the versions that did load serve).
   */
  load(name: string, policy?: VersionPolicy): Promise<void> {
    this.refuseUnlessExplicit("load");
    return this.exclusive(async () => {
      const repository = this.listing();
      const model = repository.find((m) => m.name === name);
      if (!model) throw this.notInRepository(name, repository);
      const chosen = policy ?? policyOf(this.options.policies, name);
      const available = model.versions.map((v) => v.version);
      if (selectVersions(chosen, available).length === 0) {
        throw new ServerError(
          "FAILED_PRECONDITION",
          `model ${name}: version policy ${describeVersionPolicy(chosen)} selects none of its versions in ${this.options.modelsDir} (${available.join(", ") || "none: no <version>/manifest.json"}); nothing was changed`,
        );
      }
      this.wanted.add(name);
      if (policy) this.overrides.set(name, policy);
      else this.overrides.delete(name);
      const { errors } = await this.reconcile([name], repository, { startup: false, retry: true });
      if (errors.length > 0) {
        const reason = errors.map((e) => (e instanceof Error ? e.message : String(e))).join("; ");
        throw new ServerError("FAILED_PRECONDITION", `model ${name} could not be loaded: ${reason}`);
      }
    });
  }

  /**
   * explicit: unloads every version of `name` (`version` 0) or one version, which pins the model to
   * the versions still loaded (a specific policy, until a load without one). Resolves once the version
   * is out of service; its in-flight requests go on finishing (the index says UNLOADING meanwhile).
   */
  unload(name: string, version = 0): Promise<void> {
    this.refuseUnlessExplicit("unload");
    return this.exclusive(async () => {
      const loaded = this.registry.versions(name);
      if (loaded.length === 0 && !this.registry.knows(name)) {
        const repository = this.listing();
        if (!repository.some((m) => m.name === name)) throw this.notInRepository(name, repository);
      }
      if (version !== 0 && !loaded.includes(version)) {
        throw new ServerError(
          "NOT_FOUND",
          `model ${echo(name)} version ${version} is not loaded (loaded: ${loaded.map((v) => `${name}/${v}`).join(", ") || "none"})`,
        );
      }
      const remaining = loaded.filter((v) => v !== version);
      if (version === 0 || remaining.length === 0) {
        this.wanted.delete(name);
        this.overrides.delete(name);
      } else {
        this.overrides.set(name, { kind: "specific", versions: remaining });
      }
      await this.reconcile([name], this.listing(), { startup: false, retry: false, keepUnselected: false });
    });
  }

  /**
   * Every model version in the models folder or in memory, by name, then version: READY, LOADING,
   * UNLOADING, or UNAVAILABLE with why. `readyOnly`: only the READY ones.
   */
  index(readyOnly = false): IndexEntry[] {
    let repository: RepositoryModel[];
    try {
      repository = this.listing();
    } catch {
      repository = [];
    }
    const entries = new Map<string, IndexEntry>();
    const set = (entry: IndexEntry) => entries.set(`${entry.name}\0${entry.version ?? ""}`, entry);
    for (const model of repository) {
      if (model.versions.length === 0) {
        set({
          name: model.name,
          version: undefined,
          state: "UNAVAILABLE",
          reason: "the model folder holds no <version>/manifest.json",
        });
      }
      const policy = this.policy(model.name);
      const selected = selectVersions(
        policy,
        model.versions.map((v) => v.version),
      );
      for (const { version } of model.versions) {
        let reason: string;
        if (this.options.mode === "explicit" && !this.wanted.has(model.name)) reason = "unloaded";
        else if (!selected.includes(version))
          reason = `not selected by version policy ${describeVersionPolicy(policy)}`;
        else if (this.options.mode === "none")
          reason = "not loaded: --model-control none reads the folder only at start-up";
        else if (this.options.mode === "explicit")
          reason = "not loaded: --model-control explicit reads the folder on a load request";
        else reason = "not loaded yet: the next poll of the folder loads it";
        set({ name: model.name, version, state: "UNAVAILABLE", reason });
      }
    }
    for (const failed of this.registry.failed()) {
      set({ name: failed.name, version: failed.version, state: "UNAVAILABLE", reason: failed.reason });
    }
    for (const engine of this.registry.all()) {
      const reason = engine.failure ?? this.loaded.get(engine)?.reloadError ?? "";
      const state = engine.failure ? "UNAVAILABLE" : "READY";
      set({ name: engine.name, version: engine.definition.manifest.version, state, reason });
    }
    for (const engine of this.unloading) {
      const { version } = engine.definition.manifest;
      // A version reloaded or loaded again while its old engine drains serves: it is READY.
      if (this.registry.engine(engine.name, version)) continue;
      set({ name: engine.name, version, state: "UNLOADING", reason: "its in-flight requests are finishing" });
    }
    for (const { name, version } of this.loading.values()) {
      // A version loading beside a serving one (a reload) is READY: it serves all along.
      if (this.registry.engine(name, version)) continue;
      set({ name, version, state: "LOADING", reason: "" });
    }
    return [...entries.values()]
      .filter((entry) => !readyOnly || entry.state === "READY")
      .sort((a, b) => a.name.localeCompare(b.name) || (a.version ?? 0) - (b.version ?? 0));
  }

  /**
   * The statistics of `name` at `version` (0: every loaded version), or of every loaded version when
   * `name` is empty. NOT_FOUND (or UNAVAILABLE) for a model or version not loaded, as a lookup.
   */
  statistics(name: string, version = 0): VersionStatistics[] {
    let engines: ModelEngine[];
    if (name === "") engines = this.registry.all();
    else if (version !== 0) engines = [this.registry.get(name, version, "name")];
    else {
      this.registry.get(name, 0, "name");
      engines = this.registry.versions(name).map((v) => this.registry.engine(name, v) as ModelEngine);
    }
    return engines
      .flatMap((engine) => {
        const loaded = this.loaded.get(engine);
        return loaded ? [{ engine, statistics: loaded.statistics }] : [];
      })
      .sort(
        (a, b) =>
          a.engine.name.localeCompare(b.engine.name) ||
          a.engine.definition.manifest.version - b.engine.definition.manifest.version,
      );
  }

  /** Stops polling and waits for the change in progress; versions being unloaded are closed. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.poller);
    await this.serial.catch(() => undefined);
    await Promise.allSettled([...this.retiring]);
  }

  // ---------------------------------------------------------------- the work
  private refuseUnlessExplicit(what: "load" | "unload"): void {
    if (this.options.mode === "explicit") return;
    const why =
      this.options.mode === "poll"
        ? "the models folder decides what is loaded (it is polled): add or remove version folders instead"
        : "what loaded at start-up serves until shutdown";
    throw new ServerError(
      "FAILED_PRECONDITION",
      `explicit model ${what} needs --model-control explicit; this server runs with --model-control ${this.options.mode}: ${why}`,
    );
  }

  private notInRepository(name: string, repository: RepositoryModel[]): ServerError {
    return new ServerError(
      "NOT_FOUND",
      `model ${echo(name)} has no folder in ${this.options.modelsDir} (it has: ${repository.map((m) => m.name).join(", ") || "none"})`,
    );
  }

  private listing(): RepositoryModel[] {
    try {
      return listRepository(this.options.modelsDir);
    } catch (error) {
      throw new ServerError("FAILED_PRECONDITION", (error as Error).message);
    }
  }

  private policy(name: string): VersionPolicy {
    return this.overrides.get(name) ?? policyOf(this.options.policies, name);
  }

  /** Runs `work` after every change before it, alone. */
  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new ServerError("UNAVAILABLE", "the server is shutting down"));
    const run = this.serial.then(work, work);
    this.serial = run.catch(() => undefined);
    return run;
  }

  private startPolling(): void {
    this.poller = setInterval(() => {
      if (this.polling || this.closed) return;
      this.polling = true;
      this.exclusive(() => this.poll())
        .catch((error: unknown) => this.log.error({ err: error }, "polling the models folder failed"))
        .finally(() => {
          this.polling = false;
        });
    }, this.options.pollMs);
    this.poller.unref();
  }

  private async poll(): Promise<void> {
    let repository: RepositoryModel[];
    try {
      repository = listRepository(this.options.modelsDir);
    } catch (error) {
      // A folder that is briefly gone (a volume remounting) must not unload everything: keep serving.
      const message = (error as Error).message;
      if (message !== this.listingError) {
        this.log.warn({ err: error }, `cannot read the models folder; serving what is loaded: ${message}`);
      }
      this.listingError = message;
      return;
    }
    this.listingError = undefined;
    const names = new Set([
      ...repository.map((m) => m.name),
      ...this.registry.all().map((e) => e.name),
      ...this.registry.failed().map((f) => f.name),
    ]);
    await this.reconcile([...names], repository, { startup: false, retry: false });
  }

  /**
   * Brings each of `names` to what its policy selects among its version folders in `repository`:
   * loads what is missing or changed, then retires what is no longer selected. `retry`: load versions
   * that failed before even if their files did not change. `keepUnselected` (default true): keep
   * versions no longer selected while no selected one serves. `failFast`: throw the first manifest
   * that does not parse before any worker starts (start-up under --on-model-error exit).
   */
  private async reconcile(
    names: readonly string[],
    repository: readonly RepositoryModel[],
    how: { startup: boolean; retry: boolean; keepUnselected?: boolean; failFast?: boolean },
  ): Promise<{ errors: unknown[] }> {
    const plans = names.map((name) => {
      const model = repository.find((m) => m.name === name);
      const wanted = this.options.mode !== "explicit" || this.wanted.has(name);
      const selected = wanted ? selectVersions(this.policy(name), model?.versions.map((v) => v.version) ?? []) : [];
      const toLoad = (model?.versions ?? [])
        .filter(({ version }) => selected.includes(version))
        .map((v) => ({ ...v, fingerprint: versionFingerprint(v.dir) }))
        .filter(({ version, fingerprint }) => {
          const engine = this.registry.engine(name, version);
          if (engine) return this.options.mode !== "none" && this.loaded.get(engine)?.fingerprint !== fingerprint;
          return how.retry || this.failedFingerprints.get(key(name, version)) !== fingerprint;
        });
      return { name, selected, toLoad };
    });
    const queued = plans.flatMap((plan) =>
      plan.toLoad.map((v) => ({ plan, ...v, statistics: new ModelStatistics(), instance: this.nextInstance++ })),
    );
    if (how.failFast) {
      for (const { dir } of queued) {
        const definition = loadModelFolder(dir);
        this.options.check?.(definition);
      }
    }

    for (const { plan, version } of queued) this.loading.set(key(plan.name, version), { name: plan.name, version });
    let outcomes: LoadOutcome[];
    try {
      outcomes = await loadVersions(
        queued.map(({ plan, dir, statistics, instance }) => ({
          dir,
          observer: () => this.observerFor(plan.name, instance, statistics),
        })),
        this.options.engine,
        this.log,
        this.options.check,
      );
    } finally {
      for (const { plan, version } of queued) this.loading.delete(key(plan.name, version));
    }

    const errors: unknown[] = [];
    outcomes.forEach((outcome, i) => {
      const { plan, version, fingerprint, statistics, instance } = queued[i] as (typeof queued)[number];
      const id = key(plan.name, version);
      if ("engine" in outcome) {
        const { engine } = outcome;
        this.failedFingerprints.delete(id);
        this.loaded.set(engine, { fingerprint, statistics, instance });
        engine.onFailureChange(() => this.notify(plan.name));
        if (this.closed) {
          void engine.close();
          return;
        }
        const previous = this.registry.remove(plan.name, version);
        this.registry.add(engine);
        if (previous) {
          this.log.info({ model: plan.name, version }, "model version reloaded; the one it replaces is draining");
          this.retire(previous);
        }
        return;
      }
      this.occupancies.delete(instance);
      errors.push(outcome.error);
      this.failedFingerprints.set(id, fingerprint);
      const serving = this.registry.engine(plan.name, version);
      const loaded = serving ? this.loaded.get(serving) : undefined;
      if (loaded) {
        loaded.reloadError = `a reload failed, so the files loaded before serve: ${outcome.failed.reason}`;
        this.log.error(
          { model: plan.name, version, dir: outcome.dir, err: outcome.error },
          `model ${plan.name} version ${version} could not be reloaded; the version loaded before keeps serving`,
        );
        return;
      }
      this.registry.addFailure(outcome.failed);
      const { reason } = outcome.failed;
      this.log.error(
        { model: plan.name, version, dir: outcome.dir, err: outcome.error },
        how.startup
          ? `model ${plan.name} failed to load and is not served (--on-model-error ${this.options.onModelError}): ${reason}`
          : `model ${plan.name} version ${version} failed to load and is not served: ${reason}`,
      );
    });

    for (const plan of plans) {
      const servingSelected = plan.selected.some((v) => this.registry.engine(plan.name, v));
      for (const version of this.registry.versions(plan.name)) {
        if (plan.selected.includes(version)) continue;
        if ((how.keepUnselected ?? true) && plan.selected.length > 0 && !servingSelected) {
          this.log.warn(
            { model: plan.name, version, selected: plan.selected },
            `model ${plan.name} version ${version} keeps serving: none of the versions its policy selects (${plan.selected.join(", ")}) could be loaded`,
          );
          continue;
        }
        const engine = this.registry.remove(plan.name, version);
        if (engine) {
          this.log.info({ model: plan.name, version }, "model version unloaded; its in-flight requests are finishing");
          this.retire(engine);
        }
      }
      for (const failed of this.registry.failed()) {
        if (failed.name === plan.name && !plan.selected.includes(failed.version)) {
          this.registry.dropFailure(plan.name, failed.version);
        }
      }
      this.notify(plan.name);
    }
    return { errors };
  }

  /** Drains a version taken out of lookups, then stops it; the index says UNLOADING meanwhile. */
  private retire(engine: ModelEngine): void {
    const { name } = engine;
    const { version } = engine.definition.manifest;
    this.unloading.add(engine);
    const done = engine
      .drain(this.options.graceMs, `model ${name} version ${version} was unloaded`)
      .then(() => engine.close())
      .catch((error: unknown) =>
        this.log.error({ model: name, version, err: error }, "closing an unloaded model failed"),
      )
      .finally(() => {
        this.retiring.delete(done);
        const loaded = this.loaded.get(engine);
        this.loaded.delete(engine);
        this.unloading.delete(engine);
        if (loaded) this.occupancies.delete(loaded.instance);
        this.reportOccupancy(name);
        this.log.info({ model: name, version }, "model version stopped");
      });
    this.retiring.add(done);
  }

  private notify(model: string): void {
    for (const listener of this.listeners) listener(model);
  }

  /**
   * The observer of one engine (`instance`: a reload's engine runs beside the one it replaces): the
   * server's metrics, with a model's occupancy summed over its engines since its gauges are per model,
   * and the version's own statistics.
   */
  private observerFor(name: string, instance: number, statistics: ModelStatistics): EngineObserver {
    const base = this.observer;
    return {
      step: (model, run) => {
        base?.step(model, run);
        statistics.step(run);
      },
      occupancy: (_model, queued, active, parked) => {
        this.occupancies.set(instance, { name, values: [queued, active, parked] });
        this.reportOccupancy(name);
      },
      finished: (model, outcome, reason, ticksUsed) => {
        base?.finished(model, outcome, reason, ticksUsed);
        statistics.finished(outcome, reason, ticksUsed);
      },
      timed: (_model, timing) => statistics.request(timing),
      refused: (model, cause) => base?.refused?.(model, cause),
      load: (model, state) => base?.load?.(model, state),
      served: (model, kind, requested, served) => base?.served?.(model, kind, requested, served),
    };
  }

  private reportOccupancy(name: string): void {
    let [queued, active, parked] = [0, 0, 0];
    for (const occupancy of this.occupancies.values()) {
      if (occupancy.name !== name) continue;
      queued += occupancy.values[0];
      active += occupancy.values[1];
      parked += occupancy.values[2];
    }
    this.observer?.occupancy(name, queued, active, parked);
  }
}
