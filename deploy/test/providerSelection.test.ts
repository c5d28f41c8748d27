/**
 * Execution-provider selection on a machine without the CUDA provider binaries (the default install,
 * see .npmrc): what docs/deploy.md tells operators they will see. `auto` falls back to the CPU and logs
 * why; `cuda` refuses to start and says why; `cpu` never tries CUDA.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { discoverModelFolders, loadModelFolder } from "../../server/src/model/modelFolder.ts";
import { openSessions } from "../../server/src/runtime/executionProvider.ts";
import { freePort, ServerProcess } from "../../tools/harness/index.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const FALLBACK = "provider auto: CUDA is unavailable, falling back to CPU: ";
const REFUSAL = "provider cuda was requested but onnxruntime could not use it: ";
/** pino's numeric levels. */
const WARN = 40;
/** Why CUDA is unavailable on a CPU-only install, found without asking onnxruntime (so it prints no ERROR). */
const NOT_INSTALLED = /the CUDA provider is not installed \(no libonnxruntime_providers_\w+\.so/;
const FATAL = 60;

const ortBin = join(
  dirname(createRequire(import.meta.url).resolve("onnxruntime-node/package.json")),
  "bin/napi-v6",
  `${process.platform}/${process.arch}`,
);
const cudaInstalled = existsSync(ortBin) && readdirSync(ortBin).some((f) => f.includes("providers_cuda"));
const skip = cudaInstalled
  ? `the CUDA provider is installed in ${ortBin}; these tests are for CPU-only installs`
  : false;

test("openSessions: cpu uses the CPU, auto falls back giving the reason, cuda refuses giving it", {
  skip,
}, async () => {
  const [folder] = discoverModelFolders(join(REPO, "models"));
  assert.ok(folder, "no model folder under models/");
  const { encoderPath, tickPath } = loadModelFolder(folder);

  const cpu = await openSessions(encoderPath, tickPath, { provider: "cpu", threads: 1 });
  assert.equal(cpu.provider, "cpu");
  assert.equal(cpu.fallbackReason, undefined, "cpu never tries CUDA");

  const auto = await openSessions(encoderPath, tickPath, { provider: "auto", threads: 1 });
  assert.equal(auto.provider, "cpu");
  assert.match(auto.fallbackReason ?? "", NOT_INSTALLED);
  await Promise.all([cpu, auto].flatMap((s) => [s.encoder.release(), s.tick.release()]));

  await assert.rejects(
    openSessions(encoderPath, tickPath, { provider: "cuda", threads: 1 }),
    (error: Error) => error.message.startsWith(REFUSAL) && NOT_INSTALLED.test(error.message),
  );
});

test("the server with --provider auto logs why CUDA was unavailable and serves on the CPU; with --provider cuda it exits 1 saying why", {
  skip,
}, async (t) => {
  const start = async (provider: string) => {
    const args = ["--provider", provider, "--host", "127.0.0.1", "--port", String(await freePort())];
    const server = new ServerProcess(
      [
        process.execPath,
        "--import",
        "tsx",
        "server/src/main.ts",
        ...args,
        "--metrics-port",
        "0",
        "--http-port",
        "0",
        "--threads",
        "1",
      ],
      { cwd: REPO, env: { PATH: process.env.PATH } },
    );
    t.after(() => server.kill("SIGKILL"));
    return server;
  };

  const auto = await start("auto");
  await auto.waitForLog((line) => line.msg === "serving", 60_000);
  const fallback = auto.logs.find((line) => line.msg.startsWith(FALLBACK));
  assert.ok(fallback, `no fallback warning in:\n${auto.output}`);
  assert.equal(fallback.level, WARN);
  assert.equal(fallback.provider, "cpu");
  assert.match(String(fallback.reason), NOT_INSTALLED);
  assert.equal(fallback.msg, `${FALLBACK}${fallback.reason}`);
  const loaded = auto.logs.filter((line) => line.msg === "model loaded");
  assert.ok(loaded.length > 0 && loaded.every((line) => line.provider === "cpu"));
  // The probe looks for the provider libraries instead of asking onnxruntime, whose own logger would
  // print a red ERROR on every CPU start (issue 12).
  assert.doesNotMatch(auto.output, /\[E:onnxruntime/);
  auto.kill("SIGTERM");
  assert.deepEqual(await auto.exited, { code: 0, signal: null });

  const cuda = await start("cuda");
  assert.deepEqual(await cuda.exited, { code: 1, signal: null }, cuda.output);
  const fatal = cuda.logs.find((line) => line.level === FATAL);
  assert.ok(fatal, `no fatal log line in:\n${cuda.output}`);
  assert.equal(fatal.msg, "could not start");
  const err = fatal.err as { message: string };
  assert.match(err.message, new RegExp(`${REFUSAL}the CUDA provider is not installed`));
  assert.ok(!cuda.logs.some((line) => line.msg === "serving"));
});
