/**
 * The Kubernetes manifests under deploy/kubernetes, parsed, with the few shapes the tests read.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: manifests are read field by field and asserted on
  spec: any;
  [field: string]: unknown;
}

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { resourceFieldRef?: { containerName?: string; resource: string; divisor?: string } };
}

export interface GrpcProbe {
  grpc?: { port: number; service?: string };
  periodSeconds?: number;
  failureThreshold?: number;
  timeoutSeconds?: number;
}

export interface Container {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  env?: EnvVar[];
  ports?: { name: string; containerPort: number }[];
  startupProbe?: GrpcProbe;
  readinessProbe?: GrpcProbe;
  livenessProbe?: GrpcProbe;
  lifecycle?: { preStop?: { exec?: { command: string[] }; sleep?: { seconds: number } } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
}

/** Every document of every .yaml file in a folder, by file name. */
export function readManifests(dir: string): Map<string, KubeObject[]> {
  const files = new Map<string, KubeObject[]>();
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .sort()) {
    const documents = parseAllDocuments(readFileSync(join(dir, file), "utf8"));
    files.set(
      file,
      documents.map((document) => {
        if (document.errors.length > 0) throw new Error(`${file}: ${document.errors[0]?.message}`);
        return document.toJS() as KubeObject;
      }),
    );
  }
  return files;
}

/** Parses rendered multi-document YAML (kubectl kustomize output). */
export function parseManifests(text: string): KubeObject[] {
  return parseAllDocuments(text).map((document) => document.toJS() as KubeObject);
}

export function only(objects: readonly KubeObject[], kind: string, name?: string): KubeObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ""}, found ${found.length}`);
  return found[0] as KubeObject;
}

/** Kubernetes CPU quantity ("2", "1500m") in cores. */
export function cpuCores(quantity: string): number {
  return quantity.endsWith("m") ? Number(quantity.slice(0, -1)) / 1000 : Number(quantity);
}

/**
 * The container's environment as the kubelet hands it over: plain values, and requests/limits
 * resource references resolved against the container's resources (rounded up by the divisor, as
 * Kubernetes does).
 */
export function containerEnv(container: Container): Record<string, string> {
  const env: Record<string, string> = {};
  for (const variable of container.env ?? []) {
    const ref = variable.valueFrom?.resourceFieldRef;
    if (variable.value !== undefined) env[variable.name] = variable.value;
    else if (ref) {
      const [kind, resource] = ref.resource.split(".") as ["requests" | "limits", string];
      const quantity = container.resources?.[kind]?.[resource];
      if (quantity === undefined) throw new Error(`${variable.name} refers to ${ref.resource}, which is not set`);
      if (resource !== "cpu") throw new Error(`${variable.name}: only cpu references are resolved here`);
      env[variable.name] = String(Math.ceil(cpuCores(quantity) / cpuCores(ref.divisor ?? "1")));
    } else throw new Error(`${variable.name} has neither a value nor a resource reference`);
  }
  return env;
}
