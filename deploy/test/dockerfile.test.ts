/**
 * The Dockerfile against the server it packages. The static tests read it and hold its ENV, ports,
 * command, user and health check against config.ts; the last test builds the CPU target as a script
 * (support/scriptedBuild.ts says what that can and cannot reproduce) and runs the result the way
 * `docker run` would.
 */
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { checkHealth } from "../../server/src/cli/healthProbe.ts";
import { CONFIG_OPTIONS, parseConfig, type ServerConfig } from "../../server/src/config.ts";
import { CTM_SERVICE } from "../../server/src/transport/grpc/serviceNames.ts";
import { freePort, ServerProcess } from "../../tools/harness/index.ts";
import { classifyImage, runToCompletion } from "./support/containerCalls.ts";
import { copyPaths, envOf, execForm, instructions, last, parseDockerfile, stage } from "./support/dockerfile.ts";
import { copyBuildContext } from "./support/dockerignore.ts";
import { buildAsScript } from "./support/scriptedBuild.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const dockerfile = parseDockerfile(readFileSync(join(REPO, "Dockerfile"), "utf8"));
const TARGETS = { cpu: "cpu", cuda: "cuda" } as const;
/** `docker stop` waits this long before SIGKILL unless told otherwise. */
const DOCKER_STOP_TIMEOUT_MS = 10_000;
/** After the drain, server.ts gives open streams (health watchers) up to a second before closing. */
const STREAM_CLOSE_MS = 1_000;

/** The server's configuration as a container of this target would start it, with no -e or flags added. */
function imageConfig(target: string): { config: ServerConfig; command: string[]; env: Map<string, string> } {
  const final = stage(dockerfile, target);
  const entrypoint = last(final, "ENTRYPOINT");
  const cmd = last(final, "CMD");
  const command = [...(entrypoint ? execForm(entrypoint) : []), ...(cmd ? execForm(cmd) : [])];
  const main = command.indexOf("server/src/main.ts");
  assert.ok(main > 0, `${target}: the command ${JSON.stringify(command)} does not run server/src/main.ts`);
  const env = envOf(final);
  const config = parseConfig(command.slice(main + 1), Object.fromEntries(env));
  assert.notEqual(config, "help");
  return { config: config as ServerConfig, command, env };
}

test("each image's ENV, flags, ports, user and stop signal agree with the server's configuration", () => {
  const known = new Set<string>(CONFIG_OPTIONS.map((o) => o.env));
  for (const target of Object.values(TARGETS)) {
    const final = stage(dockerfile, target);
    const { config, command, env } = imageConfig(target);
    for (const key of env.keys()) {
      if (key.startsWith("CTM_")) assert.ok(known.has(key), `${target}: ENV ${key} is not a server option`);
    }
    assert.equal(command[0], "node", `${target}: node must be PID 1 so that it receives SIGTERM itself`);
    assert.deepEqual(command.slice(1, 3), ["--import", "tsx"], `${target}: the server runs through tsx`);
    assert.equal(config.host, "0.0.0.0", `${target}: a container must bind all interfaces`);
    const exposed = instructions(final, "EXPOSE").flatMap((i) => i.args.split(/\s+/).map(Number));
    assert.ok(exposed.includes(config.port), `${target}: EXPOSE ${exposed} lacks the gRPC port ${config.port}`);
    assert.ok(config.metrics, `${target}: metrics are on in the image`);
    assert.ok(exposed.includes(config.metrics.port), `${target}: EXPOSE ${exposed} lacks the metrics port`);
    const user = last(final, "USER")?.args ?? "";
    assert.match(user, /^[1-9]\d*:[1-9]\d*$/, `${target}: USER must be a numeric non-root uid:gid, got ${user}`);
    assert.equal(last(final, "STOPSIGNAL")?.args ?? "SIGTERM", "SIGTERM", `${target}: main.ts drains on SIGTERM`);
    assert.ok(
      config.graceMs + STREAM_CLOSE_MS < DOCKER_STOP_TIMEOUT_MS,
      `${target}: CTM_GRACE_MS ${config.graceMs} does not fit docker stop's ${DOCKER_STOP_TIMEOUT_MS} ms`,
    );
    const healthcheck = last(final, "HEALTHCHECK");
    assert.ok(healthcheck, `${target}: no HEALTHCHECK`);
    const probe = execForm(healthcheck);
    assert.deepEqual(probe, ["node", "--import", "tsx", "server/src/cli/healthProbe.ts"]);
    assert.ok(existsSync(join(REPO, probe[3] as string)));
  }
  assert.equal(imageConfig(TARGETS.cpu).config.provider, "cpu");
  assert.equal(imageConfig(TARGETS.cuda).config.provider, "cuda");
});

test("the cuda target installs the CUDA provider that the pinned onnxruntime-node offers, on CUDA 12 + cuDNN 9", () => {
  const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { dependencies: Record<string, string> };
  // The CUDA and cuDNN majors in the Dockerfile and docs/deploy.md are those of this release.
  assert.equal(
    pkg.dependencies["onnxruntime-node"],
    "1.30.0",
    "onnxruntime-node changed: check which CUDA and cuDNN majors it needs, then update CUDA_IMAGE, docs/deploy.md and this test",
  );
  const cudaImage = dockerfile.globalArgs.get("CUDA_IMAGE") ?? "";
  // nvidia/cuda tags of the form <12.x.y>-cudnn-runtime-* carry cuDNN 9 (older ones said cudnn8).
  assert.match(cudaImage, /^nvidia\/cuda:12\.\d+\.\d+-cudnn-runtime-/);
  assert.equal(stage(dockerfile, TARGETS.cuda).base, cudaImage);

  const install = instructions(stage(dockerfile, "deps-cuda"), "RUN")
    .map((i) => /--onnxruntime-node-install=(\S+)/.exec(i.args)?.[1])
    .find((flag) => flag !== undefined);
  assert.ok(install, "deps-cuda must run onnxruntime-node's install script with --onnxruntime-node-install=...");
  const require = createRequire(import.meta.url);
  const metadata = require(join(REPO, "node_modules/onnxruntime-node/script/install-metadata.js")) as {
    requirements: Record<string, string[]>;
  };
  assert.ok(
    metadata.requirements["linux/x64"]?.includes(install),
    `onnxruntime-node offers ${metadata.requirements["linux/x64"]} for linux/x64, not ${install}`,
  );
  // The cuda image's node_modules come from deps-cuda, not from the CPU-only deps stage.
  const copies = instructions(stage(dockerfile, TARGETS.cuda), "COPY").filter((i) => i.flags.has("from"));
  assert.ok(copies.some((i) => i.flags.get("from") === "deps-cuda" && copyPaths(i).sources[0] === "/app/node_modules"));
});

test(".dockerignore sends only what the images copy: no node_modules, Python environment or checkpoints", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "ctm-context-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const files = copyBuildContext(REPO, dir);
  for (const prefix of ["node_modules/", ".venv/", "checkpoints/", "training/", ".git/", "server/test/"]) {
    assert.ok(!files.some((f) => f.startsWith(prefix)), `the build context includes ${prefix}`);
  }
  assert.ok(!files.some((f) => f.endsWith(".pt")), "the build context includes PyTorch checkpoints");
  for (const s of dockerfile.stages) {
    for (const copy of instructions(s, "COPY").filter((i) => !i.flags.has("from"))) {
      for (const source of copyPaths(copy).sources) {
        assert.ok(existsSync(join(dir, source)), `stage ${s.name} copies ${source}, which the context lacks`);
      }
    }
  }
  assert.ok(
    files.some((f) => /^models\/[^/]+\/\d+\/manifest\.json$/.test(f)),
    "the build context has no model folder (models/<name>/<version>/manifest.json)",
  );
});

test("the cpu target built as a script in a copy of the build context serves gRPC, passes its HEALTHCHECK and drains on SIGTERM", async (t) => {
  const started = Date.now();
  const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
  const work = mkdtempSync(join(tmpdir(), "ctm-image-"));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  // mkdtemp makes the folder private to root; the image's user must be able to read the tree.
  chmodSync(work, 0o755);

  const nodeImage = dockerfile.globalArgs.get("NODE_IMAGE") ?? "";
  assert.equal(
    /^node:(\d+)/.exec(nodeImage)?.[1],
    process.versions.node.split(".")[0],
    `this machine's Node ${process.version} stands in for ${nodeImage}`,
  );
  const context = join(work, "context");
  copyBuildContext(REPO, context);
  const image = buildAsScript(dockerfile, TARGETS.cpu, context, work);
  t.diagnostic(`built in ${elapsed()}: ${image.steps.join(" | ")}`);
  // Production dependencies only, and onnxruntime's library for this platform only.
  for (const devOnly of ["typescript", "@biomejs/biome", "yaml"]) {
    assert.ok(!existsSync(join(image.hostWorkdir, "node_modules", devOnly)), `the image has ${devOnly}`);
  }
  const ortBin = join(image.hostWorkdir, "node_modules/onnxruntime-node/bin/napi-v6");
  const platforms = readdirSync(ortBin).flatMap((os) => readdirSync(join(ortBin, os)).map((cpu) => `${os}/${cpu}`));
  assert.deepEqual(platforms, [`linux/${process.arch}`]);

  // As `docker run -e CTM_PORT=... -e CTM_METRICS_PORT=...`: the image's ENV with two free ports.
  const port = await freePort();
  const metricsPort = await freePort();
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    ...Object.fromEntries(image.env),
    CTM_PORT: String(port),
    CTM_METRICS_PORT: String(metricsPort),
  };
  const asImageUser = (command: string[]): string[] => {
    const resolved = command[0] === "node" ? [process.execPath, ...command.slice(1)] : command;
    // Run as the image's USER where this machine allows it (root with util-linux's setpriv).
    const [uid, gid] = (image.user ?? "0:0").split(":");
    if (process.getuid?.() !== 0 || uid === "0" || !existsSync("/usr/bin/setpriv")) return resolved;
    return ["/usr/bin/setpriv", `--reuid=${uid}`, `--regid=${gid ?? uid}`, "--clear-groups", ...resolved];
  };
  t.diagnostic(`running ${JSON.stringify(asImageUser(image.command))} in ${image.workdir}`);

  const server = new ServerProcess(asImageUser(image.command), { cwd: image.hostWorkdir, env });
  t.after(() => server.kill("SIGKILL"));
  await server.waitForLog((line) => line.msg === "serving", 60_000);
  t.diagnostic(`serving after ${elapsed()}`);
  const address = `127.0.0.1:${port}`;
  assert.equal(await checkHealth(address, "", 3000), "SERVING");
  assert.equal(await checkHealth(address, CTM_SERVICE, 3000), "SERVING");

  assert.ok(image.healthcheck);
  const health = runToCompletion(asImageUser(image.healthcheck), { cwd: image.hostWorkdir, env, timeoutMs: 20_000 });
  assert.equal(health.status, 0, `HEALTHCHECK failed: ${health.output}`);
  assert.match(health.output, /SERVING/);

  const sample = findSample(join(image.hostWorkdir, "models"));
  const answer = await classifyImage(address, readFileSync(sample));
  // A classifier answers with classes, a multi-position model (the maze's route) with one per position.
  assert.ok(answer.top_k.length > 0 || answer.positions.length > 0, "Classify returned no answer");
  assert.ok(answer.ticks_used >= 1);
  const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(await metrics.text(), /ctm_requests_total\{[^}]*method="Classify"/);

  // `docker stop`: SIGTERM, then the server drains and exits 0 before the grace period runs out.
  server.kill("SIGTERM");
  const graceMs = Number(image.env.get("CTM_GRACE_MS") ?? 10_000);
  const exit = await Promise.race([
    server.exited,
    new Promise<"timeout">((done) => setTimeout(() => done("timeout"), graceMs + STREAM_CLOSE_MS + 2000)),
  ]);
  assert.deepEqual(exit, { code: 0, signal: null }, `after SIGTERM: ${server.output}`);
  assert.ok(server.logs.some((line) => line.msg === "stopped"));
  t.diagnostic(`done in ${elapsed()}`);
});

/** An image from a model folder's samples/, for the Classify call. */
function findSample(modelsDir: string): string {
  for (const name of readdirSync(modelsDir).sort()) {
    for (const version of readdirSync(join(modelsDir, name)).sort()) {
      const samples = join(modelsDir, name, version, "samples");
      const png = existsSync(samples) ? readdirSync(samples).find((f) => f.endsWith(".png")) : undefined;
      if (png) return join(samples, png);
    }
  }
  throw new Error(`no samples/*.png under ${modelsDir}`);
}
