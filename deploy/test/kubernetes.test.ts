/**
 * The Kubernetes manifests against the server and the images: every CTM_* variable and flag is a
 * server option with a valid value (parsed by config.ts itself, on top of the image's own ENV), and the
 * ports, probes, drain timing, user and labels agree across Deployment, Service, autoscaler,
 * disruption budget and Dockerfile. kustomize.test.ts renders every kustomization under deploy/ and holds
 * what it renders against the schemas, the CPUs and the GPUs.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { CONFIG_OPTIONS, parseConfig, type ServerConfig } from "../../server/src/config.ts";
import { CTM_SERVICE } from "../../server/src/transport/grpc/serviceNames.ts";
import { envOf, execForm, last, parseDockerfile, stage } from "./support/dockerfile.ts";
import {
  type Container,
  containerEnv,
  type KubeObject,
  only,
  parseManifests,
  readManifests,
} from "./support/kubernetesManifests.ts";
import { kustomize, skipWithoutRenderer } from "./support/kustomizeRenderer.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BASE = join(REPO, "deploy/kubernetes/base");
const GPU = join(REPO, "deploy/kubernetes/gpu");
const VERSION = (JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string }).version;
const dockerfile = parseDockerfile(readFileSync(join(REPO, "Dockerfile"), "utf8"));
/** After the drain, server.ts gives open streams (health watchers) up to a second before closing. */
const STREAM_CLOSE_MS = 1_000;
/** How long the startup probe must allow for the models to load. */
const MIN_STARTUP_BUDGET_S = 60;

const base = readManifests(BASE);
const baseObjects = [...base.values()].flat().filter((o) => o.kind !== "Kustomization");

function theContainer(deployment: KubeObject): Container {
  const containers = deployment.spec.template.spec.containers as Container[];
  assert.equal(containers.length, 1, "one container per pod");
  return containers[0] as Container;
}

/**
 * What the server in this container is configured with: the image's ENV under the manifest's env, and
 * the manifest's args in place of the image's CMD (as Kubernetes does), parsed by config.ts.
 */
function serverConfig(container: Container, imageTarget: string): ServerConfig {
  const final = stage(dockerfile, imageTarget);
  const entrypoint = execForm(last(final, "ENTRYPOINT") as NonNullable<ReturnType<typeof last>>);
  assert.equal(container.command, undefined, "the manifest keeps the image's ENTRYPOINT");
  const cmd = last(final, "CMD");
  const args = container.args ?? (cmd ? execForm(cmd) : []);
  const known = new Set<string>(CONFIG_OPTIONS.map((o) => o.env));
  const env = containerEnv(container);
  for (const name of Object.keys(env)) {
    if (name.startsWith("CTM_")) assert.ok(known.has(name), `env ${name} is not a server option`);
  }
  for (const arg of args.filter((a) => a.startsWith("--"))) {
    assert.ok(
      CONFIG_OPTIONS.some((o) => o.flag === arg.split("=")[0]),
      `args: ${arg} is not a server flag (entrypoint ${entrypoint.join(" ")})`,
    );
  }
  const config = parseConfig(args, { ...Object.fromEntries(envOf(final)), ...env });
  assert.notEqual(config, "help");
  return config as ServerConfig;
}

/** The checks every rendering of the Deployment must pass; returns its server configuration. */
function checkDeployment(deployment: KubeObject, imageTarget: string): ServerConfig {
  const pod = deployment.spec.template;
  const container = theContainer(deployment);
  const config = serverConfig(container, imageTarget);
  assert.equal(config.host, "0.0.0.0", "the server must bind all interfaces in a pod");

  const ports = new Map((container.ports ?? []).map((p) => [p.name, p.containerPort]));
  assert.equal(ports.get("grpc"), config.port, "container port grpc is the server's CTM_PORT");
  assert.ok(config.metrics, "metrics are on");
  assert.equal(ports.get("metrics"), config.metrics.port, "container port metrics is the server's CTM_METRICS_PORT");
  assert.equal(pod.metadata.annotations?.["prometheus.io/port"], String(config.metrics.port));

  // Native gRPC probes on the server's health port (its own thread: a saturated replica still answers
  // promptly); readiness asks about the CTM service, the other two about the whole server.
  assert.ok(config.health, "the health port is on");
  assert.equal(ports.get("health"), config.health.port, "container port health is the server's CTM_HEALTH_PORT");
  const { startupProbe, readinessProbe, livenessProbe } = container;
  for (const [name, probe] of Object.entries({ startupProbe, readinessProbe, livenessProbe })) {
    assert.ok(probe?.grpc, `${name} must be a native gRPC probe`);
    assert.equal(probe.grpc.port, config.health.port, `${name} must call the server's health port`);
  }
  assert.equal(readinessProbe?.grpc?.service, CTM_SERVICE);
  assert.equal(livenessProbe?.grpc?.service ?? "", "");
  assert.equal(startupProbe?.grpc?.service ?? "", "");
  const startupBudget = (startupProbe?.periodSeconds ?? 10) * (startupProbe?.failureThreshold ?? 3);
  assert.ok(startupBudget >= MIN_STARTUP_BUDGET_S, `the startup probe allows only ${startupBudget} s to load models`);

  // SIGTERM comes after preStop; the drain and stream closing must end before the kubelet's SIGKILL.
  const preStop = container.lifecycle?.preStop;
  const sleepS = preStop?.sleep?.seconds ?? Number(preStop?.exec?.command.at(-1) ?? 0);
  const neededMs = sleepS * 1000 + config.graceMs + STREAM_CLOSE_MS;
  const graceS = pod.spec.terminationGracePeriodSeconds ?? 30;
  assert.ok(graceS * 1000 > neededMs, `terminationGracePeriodSeconds ${graceS} s < preStop + drain (${neededMs} ms)`);

  for (const kind of ["requests", "limits"] as const) {
    for (const resource of ["cpu", "memory"]) {
      assert.ok(container.resources?.[kind]?.[resource], `resources.${kind}.${resource} must be set`);
    }
  }

  // The pod runs as the image's USER, which it must state for runAsNonRoot to be checkable.
  const [uid, gid] = (last(stage(dockerfile, imageTarget), "USER")?.args ?? "").split(":").map(Number);
  assert.equal(pod.spec.securityContext?.runAsNonRoot, true);
  assert.equal(pod.spec.securityContext?.runAsUser, uid);
  assert.equal(pod.spec.securityContext?.runAsGroup, gid);
  return config;
}

test("every base manifest is listed in the kustomization and the kustomization's image tag is the package version", () => {
  const [kustomization] = base.get("kustomization.yaml") ?? [];
  assert.ok(kustomization);
  const files = [...base.keys()].filter((f) => f !== "kustomization.yaml");
  assert.deepEqual([...(kustomization.resources as string[])].sort(), files);
  assert.deepEqual(kustomization.images, [{ name: "ctm-serve", newTag: VERSION }]);
  const [gpu] = readManifests(GPU).get("kustomization.yaml") ?? [];
  assert.ok(gpu);
  assert.deepEqual(gpu.images, [{ name: "ctm-serve", newTag: `${VERSION}-cuda` }]);
  for (const patch of gpu.patches as { path: string }[]) assert.ok(existsSync(join(GPU, patch.path)), patch.path);
});

test("the Deployment's env, flags, ports, probes, drain timing and user agree with the server and the CPU image", () => {
  const deployment = only(baseObjects, "Deployment");
  const config = checkDeployment(deployment, "cpu");
  assert.equal(config.provider, "cpu", "the base runs the CPU image");
  assert.equal(theContainer(deployment).image, "ctm-serve");
  assert.equal(deployment.spec.strategy?.rollingUpdate?.maxUnavailable, 0, "rollouts keep the serving capacity");
});

test("the Service is headless over the Deployment's pods on the grpc port, for client-side round-robin", () => {
  const deployment = only(baseObjects, "Deployment");
  const podLabels = deployment.spec.template.metadata.labels as Record<string, string>;
  const service = only(baseObjects, "Service");
  assert.equal(service.spec.clusterIP, "None", "headless: DNS lists every ready pod");
  for (const [key, value] of Object.entries(service.spec.selector as Record<string, string>)) {
    assert.equal(podLabels[key], value, `the Service selects ${key}=${value}, which the pods lack`);
  }
  const config = serverConfig(theContainer(deployment), "cpu");
  const [port] = service.spec.ports as { name: string; port: number; targetPort: string; appProtocol?: string }[];
  assert.ok(port);
  assert.equal(port.targetPort, "grpc");
  assert.equal(port.port, config.port, "clients dial the same port the pods listen on (no virtual IP remaps it)");
  assert.equal(port.appProtocol, "grpc");
  // Long-lived clients learn of pods added since they connected only when they reconnect.
  assert.ok(config.maxConnectionAgeMs > 0, "the server must close old connections so clients re-resolve");
  assert.ok(
    config.maxConnectionAgeMs >= 60_000,
    `a connection age of ${config.maxConnectionAgeMs} ms would reconnect every client far too often`,
  );
});

test("the HorizontalPodAutoscaler scales the Deployment on CPU against its request, and the PodDisruptionBudget covers its pods", () => {
  const deployment = only(baseObjects, "Deployment");
  const podLabels = deployment.spec.template.metadata.labels as Record<string, string>;
  const hpa = only(baseObjects, "HorizontalPodAutoscaler");
  assert.equal(hpa.apiVersion, "autoscaling/v2");
  assert.deepEqual(hpa.spec.scaleTargetRef, {
    apiVersion: "apps/v1",
    kind: "Deployment",
    name: deployment.metadata.name,
  });
  assert.ok(hpa.spec.minReplicas >= 2, "at least two replicas, so that one pod's restart is not an outage");
  assert.ok(hpa.spec.maxReplicas > hpa.spec.minReplicas);
  const [metric] = hpa.spec.metrics as { type: string; resource: { name: string; target: { type: string } } }[];
  assert.equal(metric?.type, "Resource");
  assert.equal(metric.resource.name, "cpu");
  assert.equal(metric.resource.target.type, "Utilization");
  assert.ok(theContainer(deployment).resources?.requests?.cpu, "CPU utilisation is measured against the request");

  const pdb = only(baseObjects, "PodDisruptionBudget");
  assert.equal(pdb.apiVersion, "policy/v1");
  for (const [key, value] of Object.entries(pdb.spec.selector.matchLabels as Record<string, string>)) {
    assert.equal(podLabels[key], value, `the PodDisruptionBudget selects ${key}=${value}, which the pods lack`);
  }
  const allowsDrain =
    (pdb.spec.maxUnavailable ?? 0) >= 1 ||
    (pdb.spec.minAvailable !== undefined && pdb.spec.minAvailable < hpa.spec.minReplicas);
  assert.ok(allowsDrain, "the budget must let a node drain proceed");
});

test("the gpu patch asks for a GPU on GPU nodes and starts the server with --provider cuda", () => {
  const [patch] = readManifests(GPU).get("deployment-gpu.yaml") ?? [];
  assert.ok(patch);
  const container = theContainer(patch);
  assert.deepEqual(container.args, ["--provider", "cuda"]);
  assert.equal(container.resources?.limits?.["nvidia.com/gpu"], "1");
  assert.ok(Object.keys(patch.spec.template.spec.nodeSelector ?? {}).length > 0, "a GPU node selector");
  for (const variable of container.env ?? []) {
    assert.ok(
      CONFIG_OPTIONS.some((o) => o.env === variable.name),
      `env ${variable.name} is not a server option`,
    );
  }
});

test("kustomize renders both variants, and the rendered Deployments pass the same checks", {
  skip: skipWithoutRenderer,
}, () => {
  const render = (dir: string) => parseManifests(kustomize(dir));
  const cpu = render(BASE);
  assert.equal(theContainer(only(cpu, "Deployment")).image, `ctm-serve:${VERSION}`);
  assert.equal(checkDeployment(only(cpu, "Deployment"), "cpu").provider, "cpu");

  const gpu = render(GPU);
  const deployment = only(gpu, "Deployment");
  assert.equal(theContainer(deployment).image, `ctm-serve:${VERSION}-cuda`);
  assert.equal(checkDeployment(deployment, "cuda").provider, "cuda");
  assert.equal(theContainer(deployment).resources?.requests?.["nvidia.com/gpu"], "1");
  assert.equal(theContainer(deployment).env?.find((e) => e.name === "CTM_THREADS")?.value, "1");
  assert.deepEqual(gpu.map((o) => o.kind).sort(), [
    "Deployment",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "Service",
  ]);
});
