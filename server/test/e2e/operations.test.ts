/**
 * Running the server: execution-provider choice, the metrics endpoint, start-up failures that name
 * their cause, and `npm start`'s entry point honouring its flags.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import * as ort from "onnxruntime-node";
import { ServerProcess } from "../../../tools/harness/index.ts";
import {
  MODEL_NAME,
  metricValue,
  modelDir,
  REPO,
  samples,
  startTestServer,
  testConfig,
} from "../../../tools/harness/testServer.ts";
import { createLogger } from "../../src/logger.ts";
import { startServer } from "../../src/server.ts";

/** Whether this machine can run the CUDA provider, asked of onnxruntime directly. */
async function cudaWorks(): Promise<boolean> {
  try {
    const session = await ort.InferenceSession.create(join(modelDir(), "tick.onnx"), { executionProviders: ["cuda"] });
    await session.release();
    return true;
  } catch {
    return false;
  }
}

describe("execution provider", () => {
  it("auto uses CUDA when it loads and otherwise falls back to the CPU, saying why", async () => {
    const t = await startTestServer({ provider: "auto" });
    try {
      const { provider } = await t.client.getModel(MODEL_NAME);
      const fallback = t.logs.find((line) =>
        line.msg.startsWith("provider auto: CUDA is unavailable, falling back to CPU"),
      );
      if (await cudaWorks()) {
        assert.equal(provider, "cuda");
        assert.equal(fallback, undefined);
      } else {
        assert.equal(provider, "cpu");
        assert.ok(fallback, "a log line reports the fallback");
        assert.equal(fallback.level, 40);
        assert.equal(typeof fallback.reason, "string");
        assert.ok((fallback.reason as string).length > 0, "the log line says why");
      }
      const response = await t.client.classify({
        model: MODEL_NAME,
        image: { data: (samples()[0] as { png: Buffer }).png },
      });
      assert.ok(response.ticks_used >= 1);
    } finally {
      await t.close();
    }
  });

  it("cuda, when CUDA cannot be used, refuses to start and says why", async (context) => {
    if (await cudaWorks()) return context.skip("CUDA works on this machine");
    await assert.rejects(
      startServer(testConfig({ provider: "cuda", metrics: null }), { logger: createLogger("silent") }),
      /provider cuda was requested but onnxruntime could not use it: .+/,
    );
  });
});

describe("metrics", () => {
  it("serves every metric on /metrics and nothing else", async () => {
    const t = await startTestServer();
    try {
      const image = { data: (samples()[0] as { png: Buffer }).png };
      await t.client.classify({ model: MODEL_NAME, image });
      await t.client.classify({ model: "nope", image }).catch(() => undefined);
      const text = await t.metrics();
      for (const name of [
        "ctm_requests_total",
        "ctm_request_duration_seconds_bucket",
        "ctm_ticks_used_bucket",
        "ctm_halts_total",
        "ctm_tick_rows_total",
        "ctm_batch_size_bucket",
        "ctm_queue_depth",
        "ctm_active_requests",
        "ctm_tick_run_seconds_bucket",
        "ctm_encoder_run_seconds_bucket",
      ]) {
        assert.match(text, new RegExp(`^${name}`, "m"), name);
      }
      assert.equal(metricValue(text, "ctm_requests_total", { model: MODEL_NAME, method: "Classify", status: "OK" }), 1);
      assert.equal(
        // A name no model has is not a label (each would be a series of its own): it counts as (unknown).
        metricValue(text, "ctm_requests_total", { model: "(unknown)", method: "Classify", status: "NOT_FOUND" }),
        1,
      );
      const other = await fetch(`http://127.0.0.1:${t.server.metricsPort}/other`);
      assert.equal(other.status, 404);
    } finally {
      await t.close();
    }
  });
});

describe("start-up", () => {
  it("fails with a message naming the broken model file and field", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ctm-broken-"));
    mkdirSync(join(dir, "broken", "1"), { recursive: true });
    writeFileSync(
      join(dir, "broken", "1", "manifest.json"),
      JSON.stringify({ schema_version: 1, name: "broken", version: 1 }),
    );
    await assert.rejects(
      startServer(testConfig({ modelsDir: dir, metrics: null }), { logger: createLogger("silent") }),
      /broken\/1\/manifest\.json: input must be an object, got nothing/,
    );
    await assert.rejects(
      startServer(testConfig({ modelsDir: join(dir, "none"), metrics: null }), { logger: createLogger("silent") }),
      /models dir .*none does not exist/,
    );
  });

  it("npm start's entry point serves on the flags' port, logs JSON and stops cleanly on SIGTERM", async () => {
    const child = new ServerProcess(
      [
        process.execPath,
        "--import",
        "tsx",
        "server/src/main.ts",
        "--port",
        "0",
        "--metrics-port",
        "0",
        "--http-port",
        "0",
        "--provider",
        "cpu",
        "--threads",
        "1",
      ],
      { cwd: REPO, env: { ...process.env, CTM_MODELS_DIR: testConfig().modelsDir } },
    );
    await child.waitForLog((line) => line.msg === "serving", 120_000);
    await child.stop();
    assert.equal((await child.exited).code, 0, child.output);
    // Every stdout line is a JSON log line.
    const lines = child.logs;
    assert.equal(lines.length, child.stdout.split("\n").filter((line) => line.trim() !== "").length, child.stdout);
    const messages = lines.map((line) => line.msg);
    for (const message of [
      "starting",
      "gRPC listening; loading models",
      "model loaded",
      "serving",
      "signal received",
      "stopped",
    ]) {
      assert.ok(messages.includes(message), `logged "${message}"`);
    }
    assert.ok(lines.every((line) => typeof line.level === "number" && typeof line.time === "number"));
  });

  it("npm start's entry point rejects a bad flag, naming it", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "server/src/main.ts", "--max-batch", "zero"], {
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    assert.equal(code, 2);
    assert.match(stderr, /--max-batch must be an integer in \[1, 4096\], got "zero"/);
  });
});
