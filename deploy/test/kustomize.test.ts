/**
 * Every kustomization under deploy/ rendered by `kubectl kustomize` (or a standalone `kustomize`), and
 * what it renders held against the schemas and the server:
 *
 * - each Kubernetes object validates against its API schema (kubernetes-models), the PodMonitor against
 *   the Prometheus Operator's (@kubernetes-models/prometheus-operator), and the containers inside KServe's
 *   ServingRuntime against the Kubernetes Container schema. KServe publishes no schema package for npm;
 *   the KServe fields themselves are checked here by name (docs/deploy.md says how they were checked
 *   against KServe's own OpenAPI types);
 * - no pod runs more onnxruntime threads than it has CPUs (workers x threads, as config.ts reads them);
 * - the GPU overlay's autoscaler does not scale on CPU, and cannot ask for more pods than there are GPUs;
 * - the PodMonitor scrapes the metrics port of every ctm-serve pod, plain or KServe;
 * - the KServe runtime serves gRPC and REST v2 on the ports it declares, with probes on the health port.
 *
 * Rendering needs kubectl or kustomize on the PATH; where neither is, the test says so and is skipped
 * (it is then a local-only check: `go install sigs.k8s.io/kustomize/kustomize/v5@v5.7.1` brings one).
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { Container as ContainerModel } from "kubernetes-models/v1/Container";
import { Service } from "kubernetes-models/v1/Service";
import { CONFIG_OPTIONS, parseConfig, type ServerConfig } from "../../server/src/config.ts";
import { CTM_SERVICE } from "../../server/src/transport/grpc/serviceNames.ts";
import { envOf, parseDockerfile, stage } from "./support/dockerfile.ts";
import {
  type Container,
  containerEnv,
  cpuCores,
  type KubeObject,
  only,
  parseManifests,
} from "./support/kubernetesManifests.ts";
import { kustomize, renderer, skipWithoutRenderer } from "./support/kustomizeRenderer.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const DEPLOY = join(REPO, "deploy");
const dockerfile = parseDockerfile(readFileSync(join(REPO, "Dockerfile"), "utf8"));

/** Every folder under deploy/ with a kustomization.yaml, relative to deploy/. */
function kustomizations(dir = DEPLOY): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory() && entry.name !== "test") found.push(...kustomizations(join(dir, entry.name)));
    else if (entry.name === "kustomization.yaml") found.push(relative(DEPLOY, dir));
  }
  return found.sort();
}

function render(folder: string): KubeObject[] {
  return parseManifests(kustomize(join(DEPLOY, folder))).filter(Boolean);
}

/** The schema each kind is checked against; KServe's kinds are checked field by field below. */
const SCHEMAS: Record<string, new (data: never) => { validate(): void }> = {
  "apps/v1 Deployment": Deployment,
  "v1 Service": Service,
  "autoscaling/v2 HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "policy/v1 PodDisruptionBudget": PodDisruptionBudget,
  "monitoring.coreos.com/v1 PodMonitor": PodMonitor,
};
const KSERVE = new Set(["serving.kserve.io/v1alpha1 ServingRuntime", "serving.kserve.io/v1beta1 InferenceService"]);

function validate(object: KubeObject): void {
  const key = `${object.apiVersion} ${object.kind}`;
  if (KSERVE.has(key)) {
    for (const container of (object.spec.containers ?? []) as object[])
      new ContainerModel(container as never).validate();
    return;
  }
  const Model = SCHEMAS[key];
  assert.ok(Model, `${key} ${object.metadata.name}: no schema to check it against`);
  new Model(object as never).validate();
}

/** What the server in this container runs with: the image's ENV under the container's env and args. */
function serverConfig(container: Container, imageTarget: "cpu" | "cuda"): ServerConfig {
  const own = containerEnv(container);
  for (const name of Object.keys(own).filter((n) => n.startsWith("CTM_"))) {
    assert.ok(
      CONFIG_OPTIONS.some((o) => o.env === name),
      `${container.name}: env ${name} is not a server option`,
    );
  }
  const env = { ...Object.fromEntries(envOf(stage(dockerfile, imageTarget))), ...own };
  const config = parseConfig(container.args ?? [], env);
  assert.notEqual(config, "help");
  return config as ServerConfig;
}

/** onnxruntime's intra-op threads in all: every worker has its own sessions and thread pool. */
function assertThreadsFit(container: Container, config: ServerConfig, where: string): void {
  const cpus = Math.ceil(cpuCores(container.resources?.requests?.cpu ?? "0"));
  assert.ok(cpus >= 1, `${where}: a CPU request`);
  assert.ok(
    config.workers * config.threads <= cpus,
    `${where}: ${config.workers} workers x ${config.threads} threads on ${cpus} CPUs oversubscribes the pod`,
  );
}

describe("kustomize renders every kustomization under deploy/", { skip: skipWithoutRenderer }, () => {
  const folders = kustomizations();
  const rendered = new Map(renderer ? folders.map((folder) => [folder, render(folder)]) : []);
  const get = (folder: string) => {
    const objects = rendered.get(folder);
    assert.ok(objects, `deploy/${folder} has no kustomization.yaml`);
    return objects;
  };

  it("finds the base, the gpu overlay, monitoring and KServe", () => {
    assert.deepEqual(folders, ["kserve", "kubernetes/base", "kubernetes/gpu", "kubernetes/monitoring"]);
  });

  it("renders each one into objects that validate against their schemas", () => {
    for (const [folder, objects] of rendered) {
      assert.ok(objects.length > 0, `deploy/${folder} renders nothing`);
      for (const object of objects) {
        try {
          validate(object);
        } catch (error) {
          assert.fail(`deploy/${folder}: ${object.kind} ${object.metadata.name}: ${(error as Error).message}`);
        }
      }
    }
  });

  it("the schemas catch a wrong field type (so that the check above can fail)", () => {
    const deployment = structuredClone(only(get("kubernetes/base"), "Deployment"));
    deployment.spec.template.spec.containers[0].ports[0].containerPort = "50051";
    assert.throws(() => validate(deployment), /containerPort must be integer/);
    const monitor = structuredClone(only(get("kubernetes/monitoring"), "PodMonitor"));
    monitor.spec.podMetricsEndpoints = "metrics";
    assert.throws(() => validate(monitor), /podMetricsEndpoints must be array/);
  });

  it("no pod runs more onnxruntime threads than it has CPUs", () => {
    const cpu = theContainer(only(get("kubernetes/base"), "Deployment"));
    assertThreadsFit(cpu, serverConfig(cpu, "cpu"), "base");
    const gpu = theContainer(only(get("kubernetes/gpu"), "Deployment"));
    const gpuConfig = serverConfig(gpu, "cuda");
    assert.equal(gpuConfig.workers, 2, "the gpu overlay keeps its two workers");
    assertThreadsFit(gpu, gpuConfig, "gpu overlay");
    const runtime = kserveContainer(get("kserve"));
    assertThreadsFit(runtime, serverConfig(runtime, "cpu"), "KServe runtime");
  });

  it("the gpu overlay's autoscaler scales on the queue, not on CPU, and to no more pods than GPUs", () => {
    const hpa = only(get("kubernetes/gpu"), "HorizontalPodAutoscaler");
    const metrics = hpa.spec.metrics as {
      type: string;
      resource?: { name: string };
      pods?: { metric: { name: string } };
    }[];
    assert.ok(metrics.length > 0);
    assert.ok(!metrics.some((m) => m.type === "Resource" && m.resource?.name === "cpu"), "no CPU metric on GPU nodes");
    assert.deepEqual(
      metrics.map((m) => m.pods?.metric.name),
      ["ctm_queue_depth"],
    );
    const gpus = Number(hpa.metadata.annotations?.["ctm-serve/gpus-in-pool"]);
    assert.ok(Number.isInteger(gpus) && gpus > 0, "the overlay states the GPUs its pods may have");
    const perPod = Number(
      theContainer(only(get("kubernetes/gpu"), "Deployment")).resources?.limits?.["nvidia.com/gpu"],
    );
    assert.ok(
      hpa.spec.maxReplicas * perPod <= gpus,
      `maxReplicas ${hpa.spec.maxReplicas} x ${perPod} GPU > ${gpus} GPUs`,
    );
    assert.ok(hpa.spec.minReplicas <= hpa.spec.maxReplicas);
    // The base keeps scaling on CPU, where CPU is the work.
    const base = only(get("kubernetes/base"), "HorizontalPodAutoscaler").spec.metrics as { type: string }[];
    assert.deepEqual(
      base.map((m) => m.type),
      ["Resource"],
    );
  });

  it("the PodMonitor scrapes the metrics port of the plain and the KServe pods, where the annotations point", () => {
    const monitor = only(get("kubernetes/monitoring"), "PodMonitor");
    const selector = monitor.spec.selector.matchLabels as Record<string, string>;
    const endpoint = (monitor.spec.podMetricsEndpoints as { port: string; path: string }[])[0] as {
      port: string;
      path: string;
    };
    assert.ok(endpoint);
    const selects = (labels: Record<string, string> | undefined) =>
      Object.entries(selector).every(([k, v]) => labels?.[k] === v);
    for (const folder of ["kubernetes/base", "kubernetes/gpu"]) {
      const deployment = only(get(folder), "Deployment");
      assert.ok(selects(deployment.spec.template.metadata.labels), `${folder}'s pods`);
      const container = theContainer(deployment);
      const config = serverConfig(container, folder === "kubernetes/gpu" ? "cuda" : "cpu");
      const port = container.ports?.find((p) => p.name === endpoint.port);
      assert.equal(port?.containerPort, config.metrics?.port, `${folder}: port ${endpoint.port} is the metrics port`);
      const annotations = deployment.spec.template.metadata.annotations as Record<string, string>;
      assert.equal(annotations["prometheus.io/port"], String(config.metrics?.port));
      assert.equal(annotations["prometheus.io/path"], endpoint.path);
    }
    const isvc = only(get("kserve"), "InferenceService");
    assert.ok(selects(isvc.spec.predictor.labels), "the InferenceService's pods");
    const runtime = only(get("kserve"), "ServingRuntime");
    const container = kserveContainer(get("kserve"));
    const config = serverConfig(container, "cpu");
    assert.equal(container.ports?.find((p) => p.name === endpoint.port)?.containerPort, config.metrics?.port);
    assert.equal(runtime.spec.annotations["prometheus.kserve.io/port"], String(config.metrics?.port));
    assert.equal(runtime.spec.annotations["prometheus.kserve.io/path"], endpoint.path);
  });

  it("KServe: the runtime serves gRPC and REST v2 on the ports it declares, probed on the health port", () => {
    const objects = get("kserve");
    const runtime = only(objects, "ServingRuntime");
    const isvc = only(objects, "InferenceService");
    assert.deepEqual([...(runtime.spec.protocolVersions as string[])].sort(), ["grpc-v2", "v2"]);
    const container = kserveContainer(objects);
    assert.equal(container.name, "kserve-container", "KServe merges the predictor into the container of this name");
    const config = serverConfig(container, "cpu");
    assert.equal(config.host, "0.0.0.0");
    const [first, ...others] = container.ports ?? [];
    // KServe's Service puts the first port on 80: the HTTP port, where REST v2 is.
    assert.equal(first?.containerPort, config.http?.port, "the first port is the HTTP port");
    assert.equal(others.find((p) => p.name === "h2c")?.containerPort, config.port, "h2c is the gRPC port");
    assert.ok(config.health, "the health port is on");
    for (const name of ["startupProbe", "readinessProbe", "livenessProbe"] as const) {
      assert.equal(container[name]?.grpc?.port, config.health.port, `${name} calls the health port`);
    }
    assert.equal(container.readinessProbe?.grpc?.service, CTM_SERVICE);
    assert.equal(container.image, `ctm-serve:${VERSION}`);

    const model = isvc.spec.predictor.model;
    assert.equal(model.protocolVersion, "v2");
    assert.equal(model.runtime, runtime.metadata.name);
    const formats = runtime.spec.supportedModelFormats as { name: string; version: string }[];
    assert.ok(formats.some((f) => f.name === model.modelFormat.name && f.version === model.modelFormat.version));
    // Two ports need KServe's RawDeployment mode (Knative serves one).
    assert.equal(isvc.metadata.annotations?.["serving.kserve.io/deploymentMode"], "RawDeployment");
    // The CPU image scales on CPU, as deploy/kubernetes/base does.
    assert.equal(isvc.spec.predictor.scaleMetric, "cpu");
    assert.ok(isvc.spec.predictor.minReplicas >= 2);
    // Draining fits in the grace period: preStop + CTM_GRACE_MS + a second to close streams.
    const sleepS = Number(container.lifecycle?.preStop?.exec?.command.at(-1) ?? 0);
    assert.ok(isvc.spec.predictor.terminationGracePeriodSeconds * 1000 > sleepS * 1000 + config.graceMs + 1000);
  });
});

const VERSION = (JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string }).version;

function theContainer(deployment: KubeObject): Container {
  const containers = deployment.spec.template.spec.containers as Container[];
  assert.equal(containers.length, 1);
  return containers[0] as Container;
}

function kserveContainer(objects: KubeObject[]): Container {
  const containers = only(objects, "ServingRuntime").spec.containers as Container[];
  assert.equal(containers.length, 1);
  return containers[0] as Container;
}
