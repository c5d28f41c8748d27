/**
 * Which versions of a model are served, as Triton's version_policy: the latest N, all, or specific
 * ones. Written as text in one syntax wherever it is given (--version-policy, a load request):
 *
 *   latest        the highest version (latest:1, the default)
 *   latest:N      the N highest versions
 *   all           every version
 *   specific:1,3  exactly these versions (those present on disk)
 *
 * --version-policy holds a default and per-model entries, separated by ";": "latest:2; maze-ctm=all".
 * The policy is the operator's, not the model's: a version folder's manifest describes one export and
 * cannot know its siblings, so it is declared beside the server, not inside a version.
 */
import { invalidArgument } from "./serverError.ts";

export type VersionPolicy =
  | { kind: "latest"; count: number }
  | { kind: "all" }
  | { kind: "specific"; versions: readonly number[] };

/** A default for every model and the models that have a policy of their own. */
export interface VersionPolicies {
  fallback: VersionPolicy;
  models: ReadonlyMap<string, VersionPolicy>;
}

export const DEFAULT_VERSION_POLICY: VersionPolicy = { kind: "latest", count: 1 };

const SYNTAX = `latest, latest:N, all or specific:V[,V...]`;
/** More versions than any repository holds; keeps a policy's numbers small. */
const MAX_VERSION = 999_999_999;

/** One policy; `field` names where it came from in the error (INVALID_ARGUMENT). */
export function parseVersionPolicy(text: string, field: string): VersionPolicy {
  const value = text.trim();
  const bad = (why: string) =>
    invalidArgument(`${field} must be ${SYNTAX}${why ? ` (${why})` : ""}, got ${JSON.stringify(text)}`);
  if (value === "all") return { kind: "all" };
  if (value === "latest") return DEFAULT_VERSION_POLICY;
  const [kind, rest] = [value.slice(0, value.indexOf(":")), value.slice(value.indexOf(":") + 1)];
  if (kind === "latest") {
    if (!/^[1-9][0-9]{0,5}$/.test(rest.trim())) throw bad("N is a whole number of at least 1");
    return { kind: "latest", count: Number(rest) };
  }
  if (kind === "specific") {
    const versions = rest.split(",").map((v) => v.trim());
    if (versions.some((v) => !/^[1-9][0-9]{0,8}$/.test(v) || Number(v) > MAX_VERSION)) {
      throw bad("versions are whole numbers of at least 1, separated by commas");
    }
    return { kind: "specific", versions: [...new Set(versions.map(Number))].sort((a, b) => b - a) };
  }
  throw bad("");
}

/** --version-policy: "[model=]policy" entries separated by ";"; the one without a model is the default. */
export function parseVersionPolicies(text: string, field: string): VersionPolicies {
  let fallback: VersionPolicy | undefined;
  const models = new Map<string, VersionPolicy>();
  for (const entry of text
    .split(";")
    .map((e) => e.trim())
    .filter(Boolean)) {
    const at = entry.indexOf("=");
    if (at < 0) {
      if (fallback) throw invalidArgument(`${field} sets the default policy twice ("${entry}")`);
      fallback = parseVersionPolicy(entry, field);
      continue;
    }
    const model = entry.slice(0, at).trim();
    if (!model) throw invalidArgument(`${field}: "${entry}" names no model before "="`);
    if (models.has(model)) throw invalidArgument(`${field} sets the policy of model ${model} twice`);
    models.set(model, parseVersionPolicy(entry.slice(at + 1), `${field} (model ${model})`));
  }
  return { fallback: fallback ?? DEFAULT_VERSION_POLICY, models };
}

/**
 * Triton's model configuration override, as tritonclient's load_model(config=...) sends it: a JSON
 * object of which only `version_policy` is read ({"latest": {"num_versions": 2}}, {"all": {}} or
 * {"specific": {"versions": [1, 3]}}); any other key is refused, since it would be silently ignored.
 */
export function versionPolicyFromConfig(json: string, field: string): VersionPolicy {
  let config: unknown;
  try {
    config = JSON.parse(json);
  } catch (error) {
    throw invalidArgument(`${field} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw invalidArgument(`${field} must be a JSON object (Triton's model configuration)`);
  }
  const keys = Object.keys(config);
  const other = keys.find((k) => k !== "version_policy" && k !== "name");
  if (other !== undefined) {
    throw invalidArgument(
      `${field}.${other} is not read by this server: a model's configuration comes from its manifest; only version_policy may be overridden`,
    );
  }
  const policy = (config as { version_policy?: unknown }).version_policy;
  if (policy === undefined) throw invalidArgument(`${field} must set version_policy`);
  const at = `${field}.version_policy`;
  if (typeof policy !== "object" || policy === null || Object.keys(policy).length !== 1) {
    throw invalidArgument(`${at} must hold exactly one of latest, all, specific`);
  }
  const [[kind, body]] = Object.entries(policy) as [[string, unknown]];
  const object = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  if (kind === "all") return { kind: "all" };
  if (kind === "latest") {
    const count = object.num_versions ?? 1;
    if (!Number.isInteger(count) || (count as number) < 1) {
      throw invalidArgument(
        `${at}.latest.num_versions must be a whole number of at least 1, got ${JSON.stringify(count)}`,
      );
    }
    return { kind: "latest", count: count as number };
  }
  if (kind === "specific") {
    const versions = object.versions;
    if (
      !Array.isArray(versions) ||
      versions.length === 0 ||
      versions.some((v) => !Number.isInteger(Number(v)) || Number(v) < 1 || Number(v) > MAX_VERSION)
    ) {
      throw invalidArgument(
        `${at}.specific.versions must list whole numbers of at least 1, got ${JSON.stringify(versions)}`,
      );
    }
    return { kind: "specific", versions: [...new Set(versions.map(Number))].sort((a, b) => b - a) };
  }
  throw invalidArgument(`${at} must hold exactly one of latest, all, specific; got ${JSON.stringify(kind)}`);
}

/** The policy of `model`. */
export function policyOf(policies: VersionPolicies, model: string): VersionPolicy {
  return policies.models.get(model) ?? policies.fallback;
}

/** The versions `policy` selects among `available`, highest first. */
export function selectVersions(policy: VersionPolicy, available: readonly number[]): number[] {
  const sorted = [...new Set(available)].sort((a, b) => b - a);
  if (policy.kind === "all") return sorted;
  if (policy.kind === "latest") return sorted.slice(0, policy.count);
  return sorted.filter((v) => policy.versions.includes(v));
}

/** The policy in the syntax it is written in. */
export function describeVersionPolicy(policy: VersionPolicy): string {
  if (policy.kind === "all") return "all";
  if (policy.kind === "latest") return `latest:${policy.count}`;
  return `specific:${[...policy.versions].sort((a, b) => a - b).join(",")}`;
}
